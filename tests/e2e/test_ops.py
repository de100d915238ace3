"""Operations: live YAML reload, bad edits that change nothing, the admin API, the request log, binary upgrade
under a live stream, and the account CLI (`levitate accounts login --no-browser` against the simulator).

Every test talks to the real binaries over loopback; the admin API is plain HTTP on the admin listener.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from conftest import (API_KEY, Account, Gateway, levitate_bin, pro_account, wait_until, write_yaml)

SECRETS = (API_KEY, "levitate-e2e-secret", "1//e2e-", "admin-secret-key")


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def admin(gateway: Gateway, method: str, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, gateway.admin_url + path, headers=headers, timeout=30.0)


def health(gateway: Gateway) -> dict:
    r = admin(gateway, "GET", "/admin/health")
    assert r.status_code == 200, r.text
    return r.json()


def save_by_rename(path: Path, text: str) -> None:
    """How vim, VS Code and `sed -i` save: write a temp file beside it, then rename it over the original."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_generation(gateway: Gateway, above: int, timeout: float = 15.0) -> dict:
    return wait_until(f"config generation above {above}",
                      lambda: (h := health(gateway))["config"]["generation"] > above and h, timeout)


# ---------------------------------------------------------------------------------------------------------------
# Reload


def test_a_routes_edit_saved_by_rename_is_live_without_a_restart(gateway: Gateway):
    assert gateway.chat("hi [sim:text]", model="my-new-alias").status_code == 200
    assert gateway.stats()["recent"][-1]["model"] == "gemini-3-flash", "the default route, before the edit"
    before = health(gateway)["config"]["generation"]
    pid = gateway.process.popen.pid

    routes = gateway.config_dir / "routes.yaml"
    text = routes.read_text()
    assert "\naliases:\n" in text
    save_by_rename(routes, text.replace("\naliases:\n", "\naliases:\n  my-new-alias: gemini-3-pro-high\n", 1))

    h = wait_generation(gateway, before)
    assert h["config"]["last_reload"]["ok"] is True and h["config"]["last_reload"]["trigger"] == "watch"
    r = gateway.chat("hi [sim:text]", model="my-new-alias")
    assert r.status_code == 200, r.text
    assert gateway.stats()["recent"][-1]["model"] == "gemini-3-pro-high"
    assert gateway.process.popen.pid == pid and gateway.process.alive()


def test_a_busy_log_file_beside_the_configuration_does_not_hold_back_a_reload(gateway: Gateway):
    stop = threading.Event()

    def write_log() -> None:
        with open(gateway.config_dir / "levitate.log", "a") as log:
            while not stop.is_set():
                log.write("a log line\n")
                log.flush()
                time.sleep(0.02)

    writer = threading.Thread(target=write_log)
    writer.start()
    try:
        before = health(gateway)["config"]["generation"]
        routes = gateway.config_dir / "routes.yaml"
        save_by_rename(routes, routes.read_text() + "\n# edited while a log is written\n")
        wait_generation(gateway, before, timeout=10.0)
    finally:
        stop.set()
        writer.join()


def test_sighup_and_admin_reload_bump_the_generation_and_are_counted(gateway: Gateway):
    g0 = health(gateway)["config"]["generation"]
    gateway.process.popen.send_signal(signal.SIGHUP)
    h = wait_generation(gateway, g0)
    assert h["config"]["last_reload"]["trigger"] == "signal"
    assert gateway.process.alive(), "SIGHUP must reload, not kill (Pingora does not handle it)"

    r = admin(gateway, "POST", "/admin/reload")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["generation"] == h["config"]["generation"] + 1

    text = gateway.metrics()
    assert metric(text, "levitate_config_reloads_total", trigger="signal", result="ok") >= 1
    assert metric(text, "levitate_config_reloads_total", trigger="admin", result="ok") >= 1
    assert metric(text, "levitate_config_generation") == r.json()["generation"]
    gateway.assert_serves()


def edit_main(change):
    """An edit of the harness's levitate.yaml (a comment line, then JSON)."""
    def edit(text: str) -> str:
        header, body = text.split("\n", 1)
        document = json.loads(body)
        change(document)
        return header + "\n" + json.dumps(document, indent=2) + "\n"
    return edit


BAD_EDITS = [
    ("routes.yaml", lambda t: t.replace("\naliases:\n", "\naliases:\n  broken: [unclosed\n", 1), "routes.yaml:"),
    ("levitate.yaml", edit_main(lambda d: d.update(routes_file="nowhere.yaml")), "nowhere.yaml"),
    ("accounts.yaml", lambda t: json.dumps({"accounts": json.loads(t)["accounts"] * 2}), "duplicate email"),
    ("accounts.yaml", lambda t: t.replace("g1-pro-tier", "platinum-tier"), "unknown tier"),
    ("routes.yaml", lambda t: json.dumps({"aliases": {"a": "b", "b": "c", "c": "a"}}), "cycle"),
    ("levitate.yaml", edit_main(lambda d: d["admin"].update(listen="0.0.0.0:19999")), "admin.key"),
    ("levitate.yaml", edit_main(lambda d: d.update(stroe=d.pop("store"))), "unknown field `stroe`"),
]


@pytest.mark.parametrize("file, edit, expected", BAD_EDITS,
                         ids=["broken-yaml", "missing-file", "duplicate-email", "unknown-tier", "alias-cycle",
                              "public-admin-without-key", "unknown-key"])
def test_a_bad_edit_changes_nothing_and_says_where(gateway: Gateway, file: str, edit, expected: str):
    path = gateway.config_dir / file
    good = path.read_text()
    before = health(gateway)["config"]["generation"]
    failures = metric(gateway.metrics(), "levitate_config_reloads_total", result="failed")

    bad = edit(good)
    assert bad != good, "the edit must change the file"
    save_by_rename(path, bad)

    def refused() -> dict | None:
        h = health(gateway)
        last = h["config"]["last_reload"]
        return h if last and last["ok"] is False else None

    h = wait_until("the watcher to refuse the edit", refused, 15.0)
    assert expected in h["config"]["last_reload"]["error"], h
    assert h["config"]["generation"] == before and h["status"] == "degraded"
    r = admin(gateway, "POST", "/admin/reload")
    assert r.status_code == 422 and expected in r.json()["error"], r.text
    assert metric(gateway.metrics(), "levitate_config_reloads_total", result="failed") >= failures + 2
    gateway.assert_serves()

    save_by_rename(path, good)
    h = wait_generation(gateway, before)
    assert h["status"] == "ok"


def test_a_listen_change_is_reported_as_needing_an_upgrade(gateway: Gateway):
    config = json.loads(gateway.config_path.read_text().split("\n", 1)[1])
    old_listen = config["listen"]
    config["listen"] = "127.0.0.1:1"
    save_by_rename(gateway.config_path, json.dumps(config))

    h = wait_until("the reload", lambda: (x := health(gateway))["config"]["needs_upgrade"] and x, 15.0)
    assert h["config"]["needs_upgrade"] == ["listen"]
    assert h["listen"] == old_listen, "the running listener is what health reports"
    assert metric(gateway.metrics(), "levitate_config_pending_upgrade_settings") == 1
    gateway.assert_serves()


# ---------------------------------------------------------------------------------------------------------------
# Admin API


def test_the_admin_api_shows_state_and_never_a_secret(start_gateway):
    gateway = start_gateway(accounts=[pro_account("one"), pro_account("two")])
    assert gateway.chat("log me [sim:text] SECRET-PROMPT-TEXT").status_code == 200

    bodies = {}
    for path in ("/admin/health", "/admin/accounts", "/admin/circuits", "/admin/config", "/admin/requests",
                 "/metrics"):
        r = admin(gateway, "GET", path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        bodies[path] = r.text
        for secret in SECRETS:
            assert secret not in r.text, f"{path} leaks {secret!r}"

    accounts = json.loads(bodies["/admin/accounts"])["accounts"]
    assert {a["email"] for a in accounts} == {"one@e2e.levitate", "two@e2e.levitate"}
    for a in accounts:
        for field in ("tier", "project", "state", "in_flight", "lockouts", "quotas", "forbidden"):
            assert field in a, f"{field} missing from {a}"
    assert json.loads(bodies["/admin/circuits"])["circuits"][0]["breaker"]
    config = json.loads(bodies["/admin/config"])
    assert config["auth"]["api_keys"] == [{"name": "e2e", "key": "<set>"}]
    assert config["upstream"]["oauth_client_secret"] == "<set>"

    requests = wait_until("the request log entry", lambda: json.loads(
        admin(gateway, "GET", "/admin/requests?limit=10").text)["requests"], 10.0)
    entry = requests[0]
    assert entry["key_name"] == "e2e" and entry["status"] == 200 and entry["route"] == "chat_completions"
    assert entry["client_model"] == "gpt-4o" and entry["upstream_model"] and entry["account"]
    assert entry["latency_ms"] >= 0 and entry["ttfb_ms"] is not None and entry["attempts"] == 1
    assert entry["tokens_in"] > 0 and entry["tokens_out"] > 0, f"usage not recorded: {entry}"
    assert metric(gateway.metrics(), "levitate_tokens_total", kind="out") == entry["tokens_out"]
    assert all(r["route"] != "health" for r in requests), "health probes stay out of the request log"
    assert "SECRET-PROMPT-TEXT" not in json.dumps(requests), "the request log must hold metadata only"

    assert admin(gateway, "GET", "/admin/nothing").status_code == 404
    assert admin(gateway, "GET", "/admin/reload").status_code == 405
    assert httpx.get(gateway.base_url + "/admin/health", timeout=10).status_code in (401, 404)


def test_disabling_an_account_takes_it_out_of_rotation_and_persists(gateway: Gateway):
    email = gateway.accounts[0].email
    r = admin(gateway, "POST", f"/admin/accounts/{urllib.parse.quote(email)}/disable")
    assert r.status_code == 200 and r.json()["persisted"] is True, r.text
    assert re.search(r'"?enabled"?:\s*false', gateway.config_dir.joinpath("accounts.yaml").read_text())
    state = {a["email"]: a for a in admin(gateway, "GET", "/admin/accounts").json()["accounts"]}
    assert state[email]["enabled"] is False
    assert gateway.chat("anyone? [sim:text]").status_code == 503

    r = admin(gateway, "POST", f"/admin/accounts/{email}/enable")
    assert r.status_code == 200
    gateway.assert_serves()
    assert admin(gateway, "POST", "/admin/accounts/nobody@x/disable").status_code == 404


def test_the_admin_key_is_required_when_set(start_sim, tmp_path: Path):
    account = pro_account()
    sim = start_sim({"accounts": [account.sim_entry()]})
    gateway = start_ops_gateway(tmp_path, sim, [account], admin={"key": "admin-secret-key"})
    try:
        assert admin(gateway, "GET", "/admin/health").status_code == 401
        assert admin(gateway, "GET", "/metrics", key="wrong").status_code == 401
        assert admin(gateway, "GET", "/admin/health", key="admin-secret-key").status_code == 200
        assert admin(gateway, "GET", "/metrics", key="admin-secret-key").status_code == 200
    finally:
        gateway.stop()


# ---------------------------------------------------------------------------------------------------------------
# Binary upgrade


def start_ops_gateway(tmp_path: Path, sim, accounts: list[Account], **overrides) -> Gateway:
    """A gateway whose pid file and upgrade socket live in tmp_path (the defaults are under /run/levitate)."""
    from conftest import main_config

    config_dir = tmp_path / f"ops-{time.monotonic_ns()}"
    config_dir.mkdir(parents=True)
    write_yaml(config_dir / "accounts.yaml", {"accounts": [a.gateway_entry() for a in accounts]})
    (config_dir / "routes.yaml").write_text((Path(__file__).resolve().parents[2] / "conf/routes.yaml").read_text())
    config = main_config(sim, **overrides)
    config["server"].update({"grace_period": "20s", "pid_file": str(config_dir / "levitate.pid"),
                             "upgrade_sock": str(config_dir / "upgrade.sock")})
    return Gateway(config_dir, sim, accounts, tmp_path / "logs").start(config)


def read_pid(gateway: Gateway) -> int | None:
    try:
        return int((gateway.config_dir / "levitate.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pid(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_an_upgrade_under_a_live_stream_cuts_nothing(start_sim, tmp_path: Path):
    account = pro_account()
    sim = start_sim({"accounts": [account.sim_entry()], "latency": {"inter_chunk_ms": 60}})
    gateway = start_ops_gateway(tmp_path, sim, [account])
    old_pid = gateway.process.popen.pid
    new_pid = None
    try:
        assert wait_until("the pid file", lambda: read_pid(gateway) == old_pid, 10.0)
        events: list[str] = []
        started = threading.Event()

        def stream() -> None:
            with httpx.Client(timeout=60.0) as client:
                with client.stream("POST", gateway.base_url + "/v1/chat/completions",
                                   headers={"Authorization": f"Bearer {API_KEY}"},
                                   json={"model": "gpt-4o", "stream": True, "messages": [
                                       {"role": "user", "content": "long [sim:text] [sim:words=120]"}]}) as r:
                    assert r.status_code == 200
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            events.append(line)
                            started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(30)

        upgrade_at_ms = time.time() * 1000
        result = subprocess.run([str(levitate_bin()), "upgrade", "-c", str(gateway.config_path), "--wait", "60s"],
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        new_pid = read_pid(gateway)
        assert new_pid and new_pid != old_pid

        # New requests are served by the new process while the old one finishes the stream.
        for _ in range(5):
            r = httpx.post(gateway.base_url + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {API_KEY}"},
                           json={"model": "gpt-4o", "messages": [{"role": "user", "content": "during [sim:text]"}]})
            assert r.status_code == 200, r.text
        wait_until("the new process to answer health", lambda: health(gateway)["pid"] == new_pid, 20.0)

        reader.join(60)
        assert not reader.is_alive()
        assert events[-1] == "data: [DONE]", f"the stream was cut: {events[-3:]}"
        gateway.process.popen.wait(timeout=30)  # the old process exits once its stream is done
        assert gateway.process.popen.returncode == 0
        gateway.assert_serves()

        # The stream ended in the old process after it had handed the store over; its request-log entry still
        # reaches the new process's log.
        def the_long_stream_is_logged() -> bool:
            records = json.loads(admin(gateway, "GET", "/admin/requests?limit=100").text)["requests"]
            return any(r["at_ms"] < upgrade_at_ms and r["client_model"] == "gpt-4o" and r["status"] == 200
                       for r in records)

        wait_until("the old process's late request-log entry in the new process", the_long_stream_is_logged, 15.0)
        assert not list((gateway.config_dir / "data" / "handover").glob("*")), "taken-in files are removed"

        # `levitate reload` finds the new process through the pid file.
        generation = health(gateway)["config"]["generation"]
        reload = subprocess.run([str(levitate_bin()), "reload", "-c", str(gateway.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert reload.returncode == 0, reload.stderr
        assert wait_generation(gateway, generation)["pid"] == new_pid
    finally:
        gateway.stop()
        stop_pid(new_pid)


# ---------------------------------------------------------------------------------------------------------------
# Account CLI


def cli(gateway: Gateway, *args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([str(levitate_bin()), *args, "-c", str(gateway.config_path)], input=stdin,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_accounts_login_without_a_browser_adds_the_account_and_the_service_picks_it_up(start_sim, start_gateway):
    newcomer = Account(email="newcomer@e2e.levitate", tier="g1-ultra-tier", project_id=None, declare_tier=False)
    first = pro_account()
    sim = start_sim({"accounts": [first.sim_entry(), newcomer.sim_entry()]})
    gateway = start_gateway(accounts=[first], sim=sim)
    config = json.loads(gateway.config_path.read_text().split("\n", 1)[1])
    config["upstream"]["oauth_userinfo_url"] = gateway.sim.url + "/oauth2/v2/userinfo"
    config["upstream"]["oauth_authorize_url"] = "https://accounts.example.test/o/oauth2/v2/auth"
    save_by_rename(gateway.config_path, json.dumps(config))
    g = wait_generation(gateway, 1)["config"]["generation"]

    process = subprocess.Popen([str(levitate_bin()), "accounts", "login", "--no-browser", "-c",
                                str(gateway.config_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = None
        lines = []
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("https://accounts.example.test/"):
                url = line.strip()
        assert url, "no authorize URL printed:\n" + "".join(lines)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["access_type"] == "offline" and query["response_type"] == "code"
        assert query["client_id"] == "levitate-e2e" and "cloud-platform" in query["scope"]
        redirect = query["redirect_uri"]
        assert re.fullmatch(r"http://localhost:\d+/oauth-callback", redirect), redirect
        pasted = f"{redirect}?state={query['state']}&code=sim-code-{newcomer.email}&scope=x\n"
        out, err = process.communicate(pasted, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert newcomer.email in out and newcomer.sim_project in out
    assert newcomer.refresh_token not in out + err and "ya29." not in out + err, "a token was printed"

    written = gateway.config_dir.joinpath("accounts.yaml").read_text()
    assert newcomer.refresh_token in written and newcomer.sim_project in written
    h = wait_generation(gateway, g)
    assert h["accounts"] == 2
    emails = {a["email"] for a in admin(gateway, "GET", "/admin/accounts").json()["accounts"]}
    assert newcomer.email in emails

    listed = cli(gateway, "accounts", "list")
    assert listed.returncode == 0 and newcomer.email in listed.stdout and "1//" not in listed.stdout
    quota = cli(gateway, "quota")
    assert quota.returncode == 0, quota.stdout + quota.stderr
    assert re.search(rf"{re.escape(newcomer.email)}\s+gemini-\S+\s+\d+%", quota.stdout), quota.stdout

    wrong_state = subprocess.run([str(levitate_bin()), "accounts", "login", "--no-browser", "-c",
                                  str(gateway.config_path)], input=f"{redirect}?state=forged&code=sim-code-x\n",
                                 capture_output=True, text=True, timeout=60)
    assert wrong_state.returncode != 0 and "state" in wrong_state.stderr

    g = health(gateway)["config"]["generation"]
    assert cli(gateway, "accounts", "disable", newcomer.email).returncode == 0
    wait_generation(gateway, g)
    state = {a["email"]: a for a in admin(gateway, "GET", "/admin/accounts").json()["accounts"]}
    assert state[newcomer.email]["enabled"] is False
    g = health(gateway)["config"]["generation"]
    assert cli(gateway, "accounts", "remove", newcomer.email).returncode == 0
    assert wait_generation(gateway, g)["accounts"] == 1
    assert cli(gateway, "accounts", "remove", newcomer.email).returncode != 0
    gateway.assert_serves()


def test_accounts_login_with_a_browser_takes_the_code_on_the_loopback_callback(start_sim, start_gateway):
    newcomer = Account(email="browser@e2e.levitate", tier="free-tier", project_id=None, declare_tier=False)
    first = pro_account()
    sim = start_sim({"accounts": [first.sim_entry(), newcomer.sim_entry()]})
    gateway = start_gateway(accounts=[first], sim=sim)
    config = json.loads(gateway.config_path.read_text().split("\n", 1)[1])
    config["upstream"]["oauth_userinfo_url"] = sim.url + "/userinfo"
    save_by_rename(gateway.config_path, json.dumps(config))

    # No browser can open here (no xdg-open): the URL is printed, and the test plays the browser.
    process = subprocess.Popen([str(levitate_bin()), "accounts", "login", "-c", str(gateway.config_path)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PATH": "/nonexistent"})
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("https://accounts.google.com/o/oauth2/v2/auth?"):
                url = line.strip()
        assert url, "no authorize URL printed"
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        callback = query["redirect_uri"].replace("localhost", "127.0.0.1")
        stray = httpx.get(callback.replace("/oauth-callback", "/favicon.ico"), timeout=10)
        assert stray.status_code == 404, "a stray browser request must not end the login"
        r = httpx.get(callback, params={"state": query["state"], "code": f"sim-code-{newcomer.email}"}, timeout=30)
        assert r.status_code == 200 and "signed in" in r.text
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert newcomer.email in out and newcomer.refresh_token not in out + err
    assert newcomer.refresh_token in gateway.config_dir.joinpath("accounts.yaml").read_text()


def test_the_per_request_line_is_plain_structured_text_when_stdout_is_a_file(start_gateway, monkeypatch):
    """Issue 13: stdout here is a file (as under the journal): no colour codes, one `request` line per request
    with its fields as key=value. NO_COLOR (which the harness sets) is emptied, so only the file decides."""
    monkeypatch.setenv("NO_COLOR", "")
    gateway = start_gateway()
    assert gateway.chat("plain log line [sim:text]").status_code == 200

    def request_line() -> str | None:
        return next((line for line in gateway.process.stdout().splitlines()
                     if " request " in line and 'operation="chat_completions"' in line), None)

    line = wait_until("the request's log line", request_line, 5.0)
    assert "\x1b[" not in gateway.process.stdout(), "colour codes in a log written to a file"
    assert "INFO" in line and "status=200" in line and 'protocol="openai"' in line, line
