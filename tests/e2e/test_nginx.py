"""The Nginx site configuration documented in docs/operations.md, run by the real Nginx (Debian package) in front
of Levitate: SSE events pass through as they are produced (the first one reaches the client while the upstream
stream is still open), large prompts are accepted, and plain requests work over upstream keep-alive.

The test reads the configuration from the documentation itself, so the documented file is the tested one.
Nginx is told to ignore Levitate's own `X-Accel-Buffering: no`, so the streaming test judges the documented
block alone.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, REPO, Gateway, Process, free_port
from nginx_run import run_nginx

DOC = REPO / "docs" / "operations.md"
MARKER = "<!-- tested by tests/e2e/test_nginx.py -->"


def documented_site() -> str:
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost the tested Nginx configuration block"
    block = re.search(r"```nginx\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block, "no ```nginx block after the marker"
    return block.group(1)


def start_nginx(tmp_path: Path, gateway: Gateway, site: str | None = None) -> tuple[Process, str]:
    site = site if site is not None else documented_site()
    upstream = gateway.base_url.removeprefix("http://")
    assert "server 127.0.0.1:8045" in site and "listen 80;" in site, "the test rewrites these two lines"
    port = free_port()
    site = site.replace("server 127.0.0.1:8045", f"server {upstream}").replace("listen 80;", f"listen 127.0.0.1:{port};")
    # Judge the documented block, not Levitate's header.
    return run_nginx(tmp_path, port, "    proxy_ignore_headers X-Accel-Buffering;\n" + site)


@pytest.fixture
def nginx(tmp_path: Path, start_gateway):
    gateway = start_gateway(scenario={"latency": {"inter_chunk_ms": 250}})
    process, base = start_nginx(tmp_path, gateway)
    yield gateway, base
    process.stop()


def first_event_timing(gateway: Gateway, base: str) -> tuple[float, float, int | None, list[str]]:
    """Streams a slow answer through `base`: when the first event came, the total time, how many upstream
    streams were open at the first event, and the events."""
    email = gateway.accounts[0].email
    started = time.monotonic()
    first_event_at = None
    in_flight_at_first_event = None
    events = []
    with httpx.Client(timeout=60.0) as client:
        with client.stream("POST", base + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                           json={"model": "gpt-4o", "stream": True,
                                 "messages": [{"role": "user", "content": "stream [sim:text] [sim:words=200]"}]}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if first_event_at is None:
                    first_event_at = time.monotonic() - started
                    in_flight_at_first_event = gateway.sim.account_stats(email).get("in_flight")
                events.append(line)
    return first_event_at, time.monotonic() - started, in_flight_at_first_event, events


def test_the_first_sse_event_arrives_through_nginx_while_the_upstream_is_still_streaming(nginx):
    gateway, base = nginx
    first_event_at, total, in_flight_at_first_event, events = first_event_timing(gateway, base)

    assert events[-1] == "data: [DONE]"
    assert in_flight_at_first_event == 1, "the first event only arrived after the upstream stream had ended"
    assert first_event_at < total - 1.0, f"first event at {first_event_at:.2f}s of {total:.2f}s: Nginx buffered"


def test_plain_and_large_requests_pass_through_nginx(nginx):
    gateway, base = nginx
    with httpx.Client(base_url=base, timeout=60.0, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for _ in range(3):
            r = client.post("/v1/chat/completions",
                            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi [sim:text]"}]})
            assert r.status_code == 200, r.text
        big = "lorem ipsum " * (2 * 1024 * 1024 // 12)  # a 2 MiB prompt, as Claude Code sends
        r = client.post("/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": big + " [sim:text]"}]})
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    assert gateway.sim.stats()["totals"]["requests"] == 4
