"""The account pool as an operator sees it: tokens refreshed once, projects discovered once and remembered across
restarts, the best accounts used first; plus the two commands an operator runs first (`check`, `demo`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import (API_KEY, STARTUP_TIMEOUT, Account, Gateway, Process, ProcessExited, free_port,
                      levitate_bin, phase_failed, wait_until)


def concurrently(gateway: Gateway, count: int, text: str = "hello [sim:text]") -> list[httpx.Response]:
    """Sends `count` chat requests at once, one thread each, released together by a barrier."""
    barrier = threading.Barrier(count, timeout=30)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    with httpx.Client(base_url=gateway.base_url, timeout=120.0, limits=limits,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        def one(i: int) -> httpx.Response:
            barrier.wait()
            return client.post("/v1/chat/completions", json={
                "model": "gpt-4o", "messages": [{"role": "user", "content": f"{text} #{i}"}]})

        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one, range(count)))


def test_a_cold_account_is_refreshed_once_for_a_hundred_concurrent_requests(start_gateway):
    account = Account(email="cold@e2e.levitate", tier="g1-pro-tier", project_id="e2e-cold", max_concurrent=128)
    gateway = start_gateway(accounts=[account])

    responses = concurrently(gateway, 100)

    failures = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert not failures, f"{len(failures)} of 100 failed, e.g. {failures[:3]}"
    stats = gateway.sim.account_stats(account.email)
    assert stats["requests"] == 100
    assert stats.get("token_refreshes") == 1, f"refresh must be single-flight: {stats}"


def test_a_project_is_discovered_once_and_remembered_across_restarts(start_gateway):
    account = Account(email="discover@e2e.levitate", tier="g1-pro-tier", project_id=None, declare_tier=False)
    gateway = start_gateway(accounts=[account])

    first = gateway.chat("hello [sim:text]")

    assert first.status_code == 200, first.text
    stats = gateway.sim.account_stats(account.email)
    assert stats.get("load_code_assist", 0) >= 1, f"the project should come from loadCodeAssist: {stats}"
    assert stats.get("token_refreshes") == 1
    assert stats["by_status"] == {"200": 1}, "the discovered project was accepted by the upstream"
    sent = gateway.sim.stats()["recent"][-1]
    assert sent["project"] == account.sim_project, f"the envelope should name the discovered project: {sent}"

    gateway.restart()
    gateway.sim.reset_stats()
    second = gateway.chat("hello again [sim:text]")

    assert second.status_code == 200, second.text
    stats = gateway.sim.account_stats(account.email)
    assert stats.get("token_refreshes", 0) == 0, f"the token should have come from the store: {stats}"
    assert stats.get("load_code_assist", 0) == 0, f"the project should have come from the store: {stats}"
    assert stats.get("onboard_user", 0) == 0
    assert stats["by_status"] == {"200": 1}


def test_an_account_that_was_never_onboarded_gets_onboarded(start_gateway):
    account = Account(email="new@e2e.levitate", tier="free-tier", project_id=None, declare_tier=False,
                      onboarded=False)
    gateway = start_gateway(accounts=[account])

    response = gateway.chat("hello [sim:text]")

    assert response.status_code == 200, response.text
    stats = gateway.sim.account_stats(account.email)
    assert stats.get("onboard_user", 0) >= 1, f"the gateway should have called onboardUser: {stats}"
    assert stats["by_status"] == {"200": 1}


def tiered_accounts() -> list[Account]:
    return [Account(email="free@e2e.levitate", tier="free-tier", project_id="e2e-free"),
            Account(email="pro@e2e.levitate", tier="g1-pro-tier", project_id="e2e-pro"),
            Account(email="ultra@e2e.levitate", tier="g1-ultra-tier", project_id="e2e-ultra")]


def test_the_highest_tier_account_serves_one_request_at_a_time(start_gateway):
    gateway = start_gateway(accounts=tiered_accounts())

    for i in range(6):
        r = gateway.chat(f"one after another #{i} [sim:text]")
        assert r.status_code == 200, r.text

    stats = gateway.sim.stats()["accounts"]
    assert stats["ultra@e2e.levitate"]["requests"] == 6, stats
    assert stats.get("pro@e2e.levitate", {}).get("requests", 0) == 0
    assert stats.get("free@e2e.levitate", {}).get("requests", 0) == 0


def test_load_spills_to_lower_tiers_only_when_higher_ones_are_full(start_gateway):
    # Every answer takes a while, so six requests are in flight together; three fit on each account.
    gateway = start_gateway(accounts=tiered_accounts(), pool={"max_concurrent_per_account": 3},
                            scenario={"latency": {"first_byte_ms": 800}})

    responses = concurrently(gateway, 6)

    assert [r.status_code for r in responses] == [200] * 6, [r.text[:200] for r in responses]
    stats = gateway.sim.stats()["accounts"]
    ultra, pro = stats["ultra@e2e.levitate"], stats.get("pro@e2e.levitate", {})
    assert ultra["peak_concurrency"] <= 3, f"the per-account cap was exceeded: {ultra}"
    assert ultra["requests"] == 3 and pro.get("requests") == 3, stats
    assert stats.get("free@e2e.levitate", {}).get("requests", 0) == 0, "free took load while pro had room"


# ---------------------------------------------------------------------------------------------------------------
# levitate check


GOOD_MAIN = """\
listen: 127.0.0.1:18045
admin:
  listen: 127.0.0.1:18046
auth:
  api_keys:
    - { name: e2e, key: e2e-test-key }
upstream:
  endpoints: [http://127.0.0.1:9]
  oauth_token_url: http://127.0.0.1:9/token
  oauth_client_id: levitate-e2e
  oauth_client_secret: levitate-e2e-secret
limits:
  max_request_body: 1MiB
"""
GOOD_ACCOUNTS = """\
accounts:
  - email: a@e2e.levitate
    refresh_token: r-a
    tier: g1-pro-tier
"""
GOOD_ROUTES = """\
models: [gemini-3-flash]
aliases:
  gpt-4o: gemini-3-flash
default: gemini-3-flash
"""


def write_config(folder: Path, main: str = GOOD_MAIN, accounts: str = GOOD_ACCOUNTS,
                 routes: str = GOOD_ROUTES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accounts.yaml").write_text(accounts)
    (folder / "routes.yaml").write_text(routes)
    (folder / "levitate.yaml").write_text(main)
    return folder / "levitate.yaml"


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(levitate_bin()), "check", "-c", str(config)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_check_accepts_a_good_configuration(tmp_path: Path):
    result = check(write_config(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("file, text, line", [
    ("levitate.yaml", GOOD_MAIN.replace("  max_request_body: 1MiB", "  max_body: 1MiB"), 13),
    ("accounts.yaml", GOOD_ACCOUNTS + "    max_concurrency: 2\n", 5),
    ("routes.yaml", GOOD_ROUTES.replace("default:", "defualt:"), 4),
])
def test_check_points_at_the_line_of_an_unknown_key(tmp_path: Path, file: str, text: str, line: int):
    files = {"main": GOOD_MAIN, "accounts": GOOD_ACCOUNTS, "routes": GOOD_ROUTES}
    files[{"levitate.yaml": "main", "accounts.yaml": "accounts", "routes.yaml": "routes"}[file]] = text

    result = check(write_config(tmp_path, **files))

    output = result.stdout + result.stderr
    assert result.returncode != 0, f"check accepted an unknown key in {file}: {output}"
    assert f"{file}:{line}" in output, f"expected {file}:{line} in: {output}"
    assert "unknown field" in output, output


# ---------------------------------------------------------------------------------------------------------------
# levitate demo


def printed_command(stdout: str, starts: str, ends: str | None = None) -> str | None:
    """A command exactly as the demo printed it: a line starting with `starts` and its continuation lines
    (trailing backslash), or every line up to one equal to `ends`."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(starts):
            taken = [line]
            j = i
            while j + 1 < len(lines) and (
                    taken[-1].rstrip().endswith("\\") or (ends is not None and taken[-1].strip() != ends)):
                j += 1
                taken.append(lines[j])
            if ends is not None and taken[-1].strip() != ends:
                return None
            return "\n".join(taken)
    return None


@pytest.fixture
def demo(tmp_path: Path, request):
    """`levitate demo` on free ports, its temp folder inside tmp_path; yields (process, base_url)."""
    started = []
    for _ in range(3):
        listen, admin = free_port(), free_port()
        process = Process("levitate-demo", [str(levitate_bin()), "demo", "--listen", f"127.0.0.1:{listen}",
                                            "--admin", f"127.0.0.1:{admin}"],
                          tmp_path / "logs", env={"TMPDIR": str(tmp_path)})
        started.append(process)
        base_url = f"http://127.0.0.1:{listen}"

        def up() -> bool:
            try:
                return httpx.get(base_url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until("the demo's /health", up, STARTUP_TIMEOUT, process)
            break
        except ProcessExited:
            if "address already in use" not in process.logs().lower():
                raise
    else:
        pytest.fail(f"the demo could not bind free ports in 3 attempts\n{process.logs()}")
    yield process, base_url
    for p in started:
        p.stop(signal.SIGINT)  # the fast stop: the demo's 5 s grace period has nothing to wait for
        if phase_failed(request):
            print(p.logs())


def test_the_demo_prints_a_curl_command_that_works_as_printed(demo):
    process, base_url = demo
    command = wait_until("the demo to print its curl command",
                         lambda: printed_command(process.stdout(), "curl "), 10, process)
    assert base_url in command

    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)

    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["object"] == "chat.completion", reply
    assert reply["choices"][0]["message"]["content"]


def test_the_demo_prints_an_openai_sdk_snippet_that_works_as_printed(demo):
    process, _ = demo
    snippet = wait_until("the demo to print its OpenAI SDK snippet",
                         lambda: printed_command(process.stdout(), "python3 - <<'PY'", ends="PY"), 10, process)
    # `python3` as printed, resolved to the interpreter running these tests (it has the openai package).
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    result = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=60, env=env,
                            stdin=subprocess.DEVNULL)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the snippet printed no answer"


# ---------------------------------------------------------------------------------------------------------------
# Shutdown


def test_sigterm_lets_an_inflight_stream_finish_then_exits_cleanly(start_gateway):
    gateway = start_gateway(server={"grace_period": "4s"}, scenario={"latency": {"inter_chunk_ms": 100}})
    events: list[str] = []
    first_event = threading.Event()

    def read_stream() -> None:
        with gateway.http.stream("POST", "/v1/chat/completions", json={
                "model": "gpt-4o", "stream": True,
                "messages": [{"role": "user", "content": "a slow answer [sim:text] [sim:words=150]"}]}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    first_event.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert first_event.wait(30), "the stream never started"
    process = gateway.process
    started = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    reader.join(timeout=30)
    code = process.popen.wait(timeout=30)
    took = time.monotonic() - started

    assert not reader.is_alive()
    assert events[-1] == "data: [DONE]", f"the stream was cut by the shutdown: {events[-3:]}"
    finishes = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]
                if json.loads(e[6:])["choices"]]
    assert [f for f in finishes if f] == ["stop"]
    assert code == 0, f"a graceful stop should exit 0, got {code}"
    assert took < 4 + 10, f"the shutdown took {took:.1f}s for a 4s grace period"


def test_the_admin_listener_serves_prometheus_metrics(gateway: Gateway):
    assert gateway.chat("count me [sim:text]").status_code == 200

    text = gateway.metrics()

    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert any(line.startswith("levitate_") for line in samples), f"no levitate_* samples in:\n{text[:2000]}"
    public = httpx.get(gateway.base_url + "/metrics", timeout=10)
    assert public.status_code in (401, 404), "metrics belong on the admin listener, not the client one"
