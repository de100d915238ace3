"""Real CLI clients, headless, against Levitate: Claude Code and Gemini CLI as their users run them.

They are installed by scripts/test-all.sh into tests/e2e/clients/node (versions pinned in its package.json) and
run with a throw-away HOME, no update checks, no telemetry, and the gateway (through a recording proxy, see
clients/recorder.py) as their only server. Each test says what the client called; a failure prints every
request it made with the gateway's answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clients.recorder import Recorder
from conftest import API_KEY, Gateway

NODE_BIN = Path(__file__).resolve().parent / "clients" / "node" / "node_modules" / ".bin"
RUN_TIMEOUT = 180.0  # one headless prompt; a debug gateway and a cold node start fit well within it


def cli(name: str) -> Path:
    path = NODE_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed at {path}: run scripts/test-all.sh "
                    "(or `npm install --prefix tests/e2e/clients/node`)")
    if shutil.which("node") is None:
        pytest.skip(f"{name} needs node on PATH")
    return path


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what the client needs: PATH for node, a private HOME, and the variables that keep it offline."""
    node_dir = str(Path(shutil.which("node") or "/usr/bin/node").parent)
    env = {"PATH": f"{node_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
           "NO_COLOR": "1", "CI": "1"}
    env.update(extra)
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path, recorder: Recorder) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{argv[0]} did not finish in {RUN_TIMEOUT:.0f}s\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}\n"
                    f"requests:\n{recorder.report()}")


def explain(proc: subprocess.CompletedProcess, recorder: Recorder) -> str:
    return (f"exit {proc.returncode}\n----- stdout\n{proc.stdout[-4000:]}\n----- stderr\n{proc.stderr[-4000:]}\n"
            f"----- requests the client made\n{recorder.report()}")


def output_json(proc: subprocess.CompletedProcess, recorder: Recorder) -> dict:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"--output-format json printed no JSON\n{explain(proc, recorder)}")


def api_exchanges(recorder: Recorder, marker: str) -> list:
    return [e for e in recorder.exchanges if marker in e.path]


# ---------------------------------------------------------------------------------------------------------------
# Claude Code


def claude_code(gateway: Gateway, tmp_path: Path, prompt: str, *args: str) -> tuple[dict, Recorder,
                                                                                     subprocess.CompletedProcess]:
    binary = cli("claude")
    home, work = tmp_path / "claude-home", tmp_path / "claude-work"
    home.mkdir()
    work.mkdir()
    with Recorder(gateway.base_url) as recorder:
        env = isolated_env(
            home,
            ANTHROPIC_BASE_URL=recorder.url,
            ANTHROPIC_API_KEY=API_KEY,
            DISABLE_AUTOUPDATER="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_ERROR_REPORTING="1",
            DISABLE_BUG_COMMAND="1",
        )
        proc = run([str(binary), "-p", prompt, "--output-format", "json", *args], env, work, recorder)
    result = output_json(proc, recorder)
    assert proc.returncode == 0 and result.get("is_error") is False and result.get("subtype") == "success", \
        explain(proc, recorder)
    return result, recorder, proc


@pytest.mark.parametrize("model", [None, "claude-sonnet-4-5-20250929"], ids=["default-model", "dated-id"])
def test_claude_code_says_hi(gateway: Gateway, tmp_path: Path, model: str | None):
    args = ["--model", model] if model else []
    result, recorder, proc = claude_code(gateway, tmp_path, "say hi [sim:text]", *args)

    assert "Echo:" in result["result"], explain(proc, recorder)
    messages = api_exchanges(recorder, "/v1/messages")
    assert messages, explain(proc, recorder)
    assert all(e.status == 200 for e in messages), explain(proc, recorder)
    first = messages[0]
    assert first.path == "/v1/messages?beta=true", explain(proc, recorder)
    assert first.headers.get("x-claude-code-session-id"), first.headers
    assert first.headers.get("x-api-key") == "<redacted>", "Claude Code authenticates with x-api-key"
    assert first.body_summary.get("stream") is True
    # PROTOCOL.md §13: its requests are larger than Pingora's 64 KiB replay buffer.
    assert first.body_bytes > 64 * 1024, first.line()
    if model:
        assert first.body_summary.get("model") == model
    assert gateway.stats()["models"]["claude-sonnet-4-6"]["by_status"].get("200"), gateway.stats()["models"]


def test_claude_code_runs_a_tool_and_answers_with_thinking_in_the_history(gateway: Gateway, tmp_path: Path):
    """No marker: the simulated model calls Claude Code's first tool; Claude Code runs it (or records the
    permission denial) and sends the whole history back, thinking blocks and signatures included. Claude rejects
    a history it did not sign, so every turn succeeding means the round trip held."""
    result, recorder, proc = claude_code(gateway, tmp_path, "What files are in this folder?", "--max-turns", "4")

    messages = api_exchanges(recorder, "/v1/messages")
    assert len(messages) >= 2, explain(proc, recorder)
    assert all(e.status == 200 for e in messages), explain(proc, recorder)
    assert any(e.body_summary.get("n_messages", 0) >= 3 for e in messages), \
        f"no request carried a tool_use/tool_result history\n{explain(proc, recorder)}"
    assert any("thinking" in e.body_summary for e in messages), "Claude Code asks for thinking"
    assert "returned" in result["result"], f"the final answer should follow a tool result\n{explain(proc, recorder)}"
    statuses = gateway.stats()["models"]["claude-sonnet-4-6"]["by_status"]
    assert set(statuses) == {"200"}, f"the upstream refused a turn: {statuses}\n{explain(proc, recorder)}"


# ---------------------------------------------------------------------------------------------------------------
# Gemini CLI


def gemini_cli(gateway: Gateway, tmp_path: Path, prompt: str, *args: str) -> tuple[dict, Recorder,
                                                                                   subprocess.CompletedProcess]:
    binary = cli("gemini")
    home, work = tmp_path / "gemini-home", tmp_path / "gemini-work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    with Recorder(gateway.base_url) as recorder:
        env = isolated_env(
            home,
            GOOGLE_GEMINI_BASE_URL=recorder.url,
            GEMINI_API_KEY=API_KEY,
            GEMINI_CLI_TRUST_WORKSPACE="true",  # headless runs refuse an untrusted folder
            NO_BROWSER="1",
        )
        proc = run([str(binary), "-p", prompt, "--output-format", "json", *args], env, work, recorder)
    result = output_json(proc, recorder)
    assert proc.returncode == 0 and "error" not in result, explain(proc, recorder)
    return result, recorder, proc


def gemini_stats_errors(result: dict) -> int:
    return sum(m.get("api", {}).get("totalErrors", 0) for m in result.get("stats", {}).get("models", {}).values())


def test_gemini_cli_says_hi(gateway: Gateway, tmp_path: Path):
    result, recorder, proc = gemini_cli(gateway, tmp_path, "say hi [sim:text]")

    assert "Echo:" in result.get("response", ""), explain(proc, recorder)
    assert gemini_stats_errors(result) == 0, explain(proc, recorder)
    streams = [e for e in recorder.exchanges if e.path.endswith(":streamGenerateContent?alt=sse")]
    assert streams, explain(proc, recorder)
    assert streams[0].path.startswith("/v1beta/models/"), streams[0].line()
    assert streams[0].headers.get("x-goog-api-key") == "<redacted>", "Gemini CLI authenticates with x-goog-api-key"
    assert all(e.status == 200 for e in recorder.exchanges), explain(proc, recorder)


def test_gemini_cli_runs_a_tool_and_sends_the_signed_call_back(gateway: Gateway, tmp_path: Path):
    """No marker: the simulated Gemini 3 model calls a tool with a thoughtSignature; Gemini CLI answers it with
    the model turn replayed, and a missing or altered signature would be the upstream's 400."""
    result, recorder, proc = gemini_cli(gateway, tmp_path, "What files are in this folder?")

    streams = [e for e in recorder.exchanges if e.path.endswith(":streamGenerateContent?alt=sse")]
    assert len(streams) >= 2, explain(proc, recorder)
    assert streams[-1].body_summary.get("n_contents", 0) >= 3, \
        f"the last request should replay the call and its response\n{explain(proc, recorder)}"
    assert all(e.status == 200 for e in recorder.exchanges), explain(proc, recorder)
    assert gemini_stats_errors(result) == 0, explain(proc, recorder)
    assert "400" not in gateway.stats()["totals"]["by_status"], gateway.stats()["totals"]
    assert result.get("response"), explain(proc, recorder)
