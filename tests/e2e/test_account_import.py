"""Moving to Levitate from another gateway: `levitate accounts import` reads one sample export per tool
(proxy/tests/fixtures/import/, written from each tool's public source), tries every token with one refresh at
the simulator's OAuth endpoint (a revoked one is reported and left out), writes accounts.yaml and the tokens,
and the gateway started on the result serves a request from an imported account."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, Gateway, levitate_bin, main_config, write_yaml

FIXTURES = REPO / "proxy" / "tests" / "fixtures" / "import"

# The accounts the sim knows, by the refresh tokens in the fixtures. `1//import-am-revoked` is not among them:
# the sim answers its refresh with invalid_grant, as Google does for a revoked token.
SIM_ACCOUNTS = [
    {"email": "am.export@sim.local", "refresh_token": "1//import-am-export", "project_id": "am-export-project"},
    {"email": "cpa.one@sim.local", "refresh_token": "1//import-cpa-one", "project_id": "cpa-project-1"},
    {"email": "cpa.off@sim.local", "refresh_token": "1//import-cpa-off", "project_id": "cpa-project-off"},
    {"email": "acp.one@sim.local", "refresh_token": "1//import-acp-one", "project_id": "acp-managed-1"},
    {"email": "acp.two@sim.local", "refresh_token": "1//import-acp-two", "project_id": "acp-legacy-2"},
]


@pytest.fixture
def sim(start_sim):
    return start_sim({"accounts": [dict(a, tier="g1-pro-tier", onboarded=True) for a in SIM_ACCOUNTS]})


def config_folder(tmp_path: Path, sim) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    write_yaml(folder / "levitate.yaml", main_config(sim))
    (folder / "accounts.yaml").write_text("# imported accounts follow\naccounts: []\n")
    (folder / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    return folder


def run_import(folder: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [str(levitate_bin()), "accounts", "import", "-c", str(folder / "levitate.yaml"), *args]
    env = dict(os.environ, NO_COLOR="1", LEVITATE_LOG="warn")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=folder)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_file_vars(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def serve_and_ask(tmp_path: Path, folder: Path, sim) -> None:
    """Starts the gateway on the imported configuration and sends one chat request through it."""
    gateway = Gateway(folder, sim, [], tmp_path / "logs")
    try:
        gateway.start(main_config(sim))
        r = gateway.chat("hello [sim:text]")
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{gateway.logs()}"
    finally:
        gateway.stop()


def test_an_antigravity_manager_export_with_a_revoked_token(tmp_path, sim, monkeypatch):
    folder = config_folder(tmp_path, sim)

    done = run_import(folder, "--from", "antigravity-manager", str(FIXTURES / "antigravity-manager-export.json"))

    assert done.returncode == 1, "a token that failed validation makes the command fail"
    assert "imported am.export@sim.local" in done.stdout, done.stdout + done.stderr
    assert "not imported" in done.stdout and "invalid_grant" in done.stdout, done.stdout
    assert "1 imported, 0 skipped, 1 not imported" in done.stdout, done.stdout
    assert "1//import" not in done.stdout + done.stderr, "tokens are never printed"
    assert sim.account_stats("am.export@sim.local").get("token_refreshes") == 1, "validated with one refresh"
    accounts = (folder / "accounts.yaml").read_text()
    assert "am.revoked" not in accounts and "1//import" not in accounts, accounts
    assert "refresh_token_env: LEVITATE_REFRESH_TOKEN_AM_EXPORT_SIM_LOCAL" in accounts, accounts
    env_file = folder / "accounts.env"
    assert mode(env_file) == 0o600
    variables = env_file_vars(env_file)
    assert variables == {"LEVITATE_REFRESH_TOKEN_AM_EXPORT_SIM_LOCAL": "1//import-am-export"}

    # Again: the account is already there, so nothing changes.
    again = run_import(folder, "--from", "antigravity-manager", str(FIXTURES / "antigravity-manager-export.json"))
    assert "skipped am.export@sim.local: already in accounts.yaml" in again.stdout, again.stdout
    assert "0 imported, 1 skipped, 1 not imported" in again.stdout, again.stdout
    assert sim.account_stats("am.export@sim.local").get("token_refreshes") == 1, "a skipped token is not tried"
    assert (folder / "accounts.yaml").read_text().count("am.export@sim.local") == 1

    # The service reads the env file into its environment (systemd's EnvironmentFile=).
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    serve_and_ask(tmp_path, folder, sim)
    stats = sim.account_stats("am.export@sim.local")
    assert stats["requests"] == 1, stats
    assert stats.get("load_code_assist", 0) >= 1, "the export has no project: discovered on first use"


def test_a_cliproxyapi_auth_folder_inline(tmp_path, sim):
    folder = config_folder(tmp_path, sim)
    accounts_path = folder / "accounts.yaml"
    accounts_path.chmod(0o644)

    done = run_import(folder, "--from", "cliproxyapi", "--tokens", "inline", str(FIXTURES / "cliproxyapi"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported cpa.one@sim.local (project cpa-project-1)" in done.stdout, done.stdout
    assert "imported cpa.off@sim.local" in done.stdout and "disabled as in the export" in done.stdout
    assert "warning:" in done.stdout and "unknown fields, not imported: favourite_colour" in done.stdout
    assert "passed over: an auth file of type gemini" in done.stdout, done.stdout
    assert mode(accounts_path) == 0o600, "inline tokens make accounts.yaml private"
    assert not (folder / "accounts.env").exists()
    text = accounts_path.read_text()
    assert "refresh_token: 1//import-cpa-one" in text and "enabled: false" in text, text

    serve_and_ask(tmp_path, folder, sim)
    assert sim.account_stats("cpa.one@sim.local")["requests"] == 1
    assert sim.account_stats("cpa.off@sim.local").get("requests", 0) == 0, "the disabled account stays out"
    assert sim.stats()["recent"][-1]["project"] == "cpa-project-1"


def test_an_antigravity_claude_proxy_accounts_json(tmp_path, sim, monkeypatch):
    folder = config_folder(tmp_path, sim)
    env_file = tmp_path / "secrets" / "levitate-accounts.env"
    env_file.parent.mkdir()

    done = run_import(folder, "--from", "antigravity-claude-proxy", "--env-file", str(env_file),
                      str(FIXTURES / "antigravity-claude-proxy-accounts.json"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported acp.one@sim.local (project acp-managed-1)" in done.stdout, done.stdout
    assert "passed over default@antigravity: a database account has no refresh token" in done.stdout
    assert mode(env_file) == 0o600
    variables = env_file_vars(env_file)
    assert variables["LEVITATE_REFRESH_TOKEN_ACP_ONE_SIM_LOCAL"] == "1//import-acp-one", \
        "the projects after '|' are not part of the token"

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    serve_and_ask(tmp_path, folder, sim)
    assert sim.account_stats("acp.one@sim.local")["requests"] == 1
    assert sim.stats()["recent"][-1]["project"] == "acp-managed-1"


def test_a_malformed_export_writes_nothing(tmp_path, sim):
    folder = config_folder(tmp_path, sim)
    export = tmp_path / "broken.json"
    export.write_text('[{"email": "a@sim.local", "refresh_token": "1//a"}, {"refresh_token": "1//b"}]')

    done = run_import(folder, "--from", "antigravity-manager", str(export))

    assert done.returncode == 1
    assert f"{export}#1: no email" in done.stderr, done.stderr
    assert (folder / "accounts.yaml").read_text() == "# imported accounts follow\naccounts: []\n"
    assert not (folder / "accounts.env").exists()
    assert sim.stats().get("accounts", {}) == {} or all(
        not s.get("token_refreshes") for s in sim.stats()["accounts"].values()), "no token was even tried"
