"""Codex CLI, headless (`codex exec`), against Levitate's Responses API as its users configure it: a custom
model provider with `wire_api = "responses"` and `base_url` pointing at the gateway.

Installed by scripts/test-all.sh into tests/e2e/clients/node (version pinned in its package.json) and run with
a throw-away CODEX_HOME and HOME, no update checks, and the gateway (through the recording proxy of
clients/recorder.py) as its only server. Codex sends `store: false` and replays its `reasoning` items with
their `encrypted_content` on every later turn: the simulator reports which signatures each upstream request
carried (`replayed_signatures`), so a turn the gateway sent with a sentinel instead of the model's own
signature fails the test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clients.recorder import Recorder
from conftest import API_KEY, Gateway
from test_real_clients import cli, explain, isolated_env, run

CODEX_CONFIG = """\
model = "{model}"
model_provider = "levitate"
model_reasoning_effort = "low"
model_reasoning_summary = "auto"
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.levitate]
name = "Levitate"
base_url = "{base_url}/v1"
env_key = "LEVITATE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false
"""


def codex(gateway: Gateway, tmp_path: Path, prompt: str, *args: str, model: str = "gpt-5",
          resume: bool = False) -> tuple[list[dict], Recorder, subprocess.CompletedProcess]:
    """Runs `codex exec --json PROMPT` (or `codex exec resume --last`) in one work folder per test; returns the
    JSONL events it printed."""
    binary = cli("codex")
    home, codex_home, work = tmp_path / "codex-home", tmp_path / "codex-home" / ".codex", tmp_path / "codex-work"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    with Recorder(gateway.base_url) as recorder:
        (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=recorder.url))
        env = isolated_env(home, CODEX_HOME=str(codex_home), LEVITATE_API_KEY=API_KEY, RUST_LOG="error")
        command = [str(binary), "exec"] + (["resume", "--last"] if resume else []) + \
            ["--json", "--skip-git-repo-check", *args, prompt]
        proc = run(command, env, work, recorder)
    events = []
    for line in proc.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    assert proc.returncode == 0, explain(proc, recorder)
    return events, recorder, proc


def responses_calls(recorder: Recorder) -> list:
    return [e for e in recorder.exchanges if e.path.startswith("/v1/responses")]


def agent_text(events: list[dict]) -> str:
    return "\n".join(e["item"].get("text", "") for e in events
                     if e.get("type") == "item.completed" and e.get("item", {}).get("type") == "agent_message")


def replayed(gateway: Gateway) -> list[dict]:
    return [r["replayed_signatures"] for r in gateway.sim.stats()["recent"]]


def test_codex_says_hi(gateway: Gateway, tmp_path: Path):
    events, recorder, proc = codex(gateway, tmp_path, "say hi [sim:text]")

    assert "Echo:" in agent_text(events), explain(proc, recorder)
    calls = responses_calls(recorder)
    assert calls and all(e.status == 200 for e in calls), explain(proc, recorder)
    first = json.loads(calls[0].body)
    assert calls[0].path == "/v1/responses" and first["stream"] is True and first["store"] is False
    assert "reasoning.encrypted_content" in first.get("include", []), first.get("include")
    assert calls[0].headers.get("session-id"), "Codex's conversation id, the session-affinity key"
    assert {t["type"] for t in first["tools"]} >= {"function", "namespace"}, "namespace tools are served"
    assert set(gateway.stats()["totals"]["by_status"]) == {"200"}, gateway.stats()["totals"]


@pytest.mark.parametrize("model", ["gpt-5", "claude-opus-4-6-thinking"])
def test_codex_runs_a_tool_and_the_next_turns_replay_signed_reasoning(gateway: Gateway, tmp_path: Path, model: str):
    """The simulated model calls one of Codex's tools (shell or apply_patch); Codex runs it and sends the
    history back with its reasoning items; then a resumed session sends a second user turn over the same
    history. Every upstream request after the first must carry the model's own signature, restored from the
    sealed reasoning: never the sentinel, never one the upstream did not issue."""
    events, recorder, proc = codex(gateway, tmp_path, "List the files here [sim:tool]", model=model)
    calls = responses_calls(recorder)
    assert len(calls) >= 2, explain(proc, recorder)
    assert all(e.status == 200 for e in calls), explain(proc, recorder)
    replay = json.loads(calls[1].body)["input"]
    kinds = [item.get("type") for item in replay]
    assert "reasoning" in kinds, kinds
    assert {"function_call_output", "custom_tool_call_output"} & set(kinds), kinds
    assert all(item.get("encrypted_content", "").startswith("lvr1.") for item in replay
               if item.get("type") == "reasoning"), replay

    events, recorder2, proc = codex(gateway, tmp_path, "And now say thanks [sim:text]", model=model, resume=True)
    assert "Echo:" in agent_text(events), explain(proc, recorder2)
    assert set(gateway.stats()["totals"]["by_status"]) == {"200"}, gateway.stats()["totals"]
    seen = replayed(gateway)
    assert len(seen) >= 3, seen
    for verdicts in seen[1:]:
        assert verdicts["sentinel"] == 0 and verdicts["unknown"] == 0, seen
        if model.startswith("claude"):
            assert verdicts["claude"] >= 1 and verdicts["leading_signed_thoughts"] >= 1, seen
        else:
            assert verdicts["gemini"] >= 1, seen


def test_codex_auto_compaction_goes_through_v1_responses(gateway: Gateway, tmp_path: Path):
    """A custom provider's history is compacted by Codex itself: one more `/v1/responses` call with its
    summary prompt and no tools, never `/v1/responses/compact` (which Levitate answers 404). A tiny context
    window makes Codex compact after the first answer."""
    small = ["-c", "model_auto_compact_token_limit=200", "-c", "model_context_window=2000"]
    _, first, _ = codex(gateway, tmp_path, "say hi [sim:text] [sim:words=400]", *small)
    events, recorder, proc = codex(gateway, tmp_path, "again [sim:text]", *small, resume=True)
    assert "Echo:" in agent_text(events), explain(proc, recorder)
    calls = first.exchanges + recorder.exchanges
    assert all(e.path == "/v1/responses" and e.status == 200 for e in calls), explain(proc, recorder)
    assert any(e.body_summary.get("n_tools") == 0 for e in calls), \
        f"no tool-less summary request: did Codex compact?\n{first.report()}\n{explain(proc, recorder)}"
