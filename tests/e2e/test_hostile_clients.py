"""The hostile-client suite: every attack at once against one gateway, while a polite client keeps working.

Each attack has its own focused test elsewhere (test_slow_clients, test_connections, test_hostile_input,
test_request_framing); here they run together, as an edge box meets them: slow readers on HTTP/1 and HTTP/2,
a slowloris head, a stalled body, a connection flood from one address, a 1M-entry enum, 30,000 clashing tool
names, a 30 MiB model name, 10,000-deep JSON, invalid UTF-8, a Content-Length + Transfer-Encoding request and
a compressed body. Pass: every attack gets a bounded answer or is cut within its limit, every polite request
succeeds, the account slots return to 0 and the gateway's memory stays bounded.

The polite client connects from 127.0.0.2, so the flood from 127.0.0.1 is not its problem.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from pathlib import Path

import httpx

from conftest import API_KEY, pro_account, wait_until
from test_connections import connect, polite_client, seconds_until_closed
from test_hostile_input import INVALID_UTF8, clashing_tools_body, deep_body, enum_body, long_model_body
from test_request_framing import raw_exchange
from test_slow_clients import in_flight, stalled_h2_stream, stalled_stream

LIMITS = {
    "client_write_timeout": "2s",
    "header_timeout": "2s",
    "body_read_timeout": "2s",
    "max_connections_per_ip": 48,
}
# Each attack's answer or cut, with room for a debug build on two cores running every attack at once (alone,
# the body attacks answer in 0.1-3 s; see test_hostile_input.py).
BOUND = 30.0
# The debug gateway idles at ~30-60 MB; the attacks may buffer a 30 MiB body or two at a time.
RSS_BOUND_MB = 400


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post_raw(gateway, body: bytes, headers: dict | None = None) -> tuple[int, float]:
    started = time.monotonic()
    with httpx.Client(base_url=gateway.base_url, timeout=60.0,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        r = client.post("/v1/chat/completions", content=body,
                        headers={"Content-Type": "application/json", **(headers or {})})
    return r.status_code, time.monotonic() - started


def slowloris(gateway) -> tuple[str, float]:
    sock = connect(gateway)
    took, _ = seconds_until_closed(sock, BOUND, trickle=b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" * 4)
    sock.close()
    return "cut", took


def stalled_body(gateway) -> tuple[str, float]:
    sock = connect(gateway)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":")
    took, answer = seconds_until_closed(sock, BOUND)
    sock.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "cut", took


def flood(gateway) -> tuple[str, float]:
    """Connections from one address (127.0.0.4, its own) beyond the per-address limit: at most the limit are
    held, the rest get a 429 and are closed."""
    started = time.monotonic()
    sockets = [connect(gateway, source="127.0.0.4") for _ in range(LIMITS["max_connections_per_ip"] + 20)]
    try:
        time.sleep(0.5)
        refused = 0
        for sock in sockets:
            sock.settimeout(0.05)
            try:
                refused += sock.recv(64).startswith(b"HTTP/1.1 429")
            except (socket.timeout, ConnectionResetError):
                pass
    finally:
        for sock in sockets:
            sock.close()
    return f"{refused} refused", time.monotonic() - started


def active_streams(gateway) -> int:
    """Streaming answers being written: only the slow readers stream here (polite requests do not)."""
    for line in gateway.metrics().splitlines():
        if line.startswith("levitate_active_streams "):
            return int(float(line.split()[1]))
    raise AssertionError("levitate_active_streams is not exported")


def smuggling(gateway) -> tuple[str, float]:
    started = time.monotonic()
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    smuggled = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n\r\n"
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" + smuggled)
    answer = raw_exchange(gateway, request)
    assert answer.count(b"HTTP/1.1 ") == 1, answer[:300]
    return "one answer, connection closed", time.monotonic() - started


def test_every_attack_at_once_while_a_polite_client_is_served(start_gateway):
    gateway = start_gateway(accounts=[pro_account("pro-a"), pro_account("pro-b")], limits=LIMITS,
                            pool={"max_wait": "30s"})
    pid = gateway.process.popen.pid
    idle_rss = rss_mb(pid)
    # Slow readers on HTTP/1 and HTTP/2: they stay open (never reading) until the very end.
    stalled = [stalled_stream(gateway), stalled_h2_stream(gateway)]

    attacks = {
        "slowloris head": lambda: slowloris(gateway),
        "stalled body": lambda: stalled_body(gateway),
        "connection flood": lambda: flood(gateway),
        "1M-entry enum": lambda: post_raw(gateway, enum_body(1_000_000)),
        "30,000 clashing tool names": lambda: post_raw(gateway, clashing_tools_body(30_000)),
        "30 MiB model name": lambda: post_raw(gateway, long_model_body(30 * 1024 * 1024)),
        "10,000-deep JSON": lambda: post_raw(gateway, deep_body(10_000)),
        "invalid UTF-8": lambda: post_raw(gateway, INVALID_UTF8),
        "CL + TE smuggling": lambda: smuggling(gateway),
        "gzip body": lambda: post_raw(gateway, gzip.compress(b"{}" * 1000), {"Content-Encoding": "gzip"}),
    }
    results: dict[str, object] = {}
    peak_rss = [idle_rss]
    peak_streams = 0

    def run(name, attack):
        try:
            results[name] = attack()
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            results[name] = e

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in attacks.items()]
    for t in threads:
        t.start()

    polite_ok, polite_failed = 0, []
    with polite_client(gateway) as polite:
        while any(t.is_alive() for t in threads) or polite_ok < 5:
            r = polite.post("/v1/chat/completions",
                            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Still there?"}]})
            if r.status_code == 200:
                polite_ok += 1
            else:
                polite_failed.append((r.status_code, r.text[:200]))
            peak_rss[0] = max(peak_rss[0], rss_mb(pid))
            peak_streams = max(peak_streams, active_streams(gateway))
    for t in threads:
        t.join(timeout=BOUND)

    report = "\n".join(f"  {name}: {result!r}" for name, result in results.items())
    print(f"polite requests: {polite_ok} ok; RSS idle {idle_rss:.0f} MB, peak {peak_rss[0]:.0f} MB\n{report}")
    assert not polite_failed, f"polite requests failed: {polite_failed[:5]}\n{report}"
    errors = {name: r for name, r in results.items() if isinstance(r, BaseException)}
    assert not errors, f"attacks raised: {errors}"
    for name in ("1M-entry enum", "30,000 clashing tool names", "30 MiB model name", "10,000-deep JSON",
                 "invalid UTF-8"):
        status, took = results[name]
        assert status in (400, 413) and took < BOUND, f"{name}: {status} in {took:.1f}s"
    status, took = results["gzip body"]
    assert status == 415 and took < BOUND
    for name in ("slowloris head", "stalled body"):
        _, took = results[name]
        assert took < BOUND, f"{name} was not cut within {BOUND}s ({took:.1f}s)"
    assert results["stalled body"][0].startswith("HTTP/1.1 408") or results["stalled body"][0] == "cut"
    refused = int(results["connection flood"][0].split()[0])
    assert refused >= 20, f"more than max_connections_per_ip connections were held: {results['connection flood']}"

    # The slow readers' answers were streaming at some point, and every slot is back while their sockets
    # are still open and unread.
    assert peak_streams >= 1, "the slow readers' answers never started"
    wait_until("the slow readers' streams to end", lambda: active_streams(gateway) == 0, BOUND, gateway.process)
    wait_until("every account slot back", lambda: in_flight(gateway) == 0, BOUND, gateway.process)
    assert peak_rss[0] < RSS_BOUND_MB, f"RSS peaked at {peak_rss[0]:.0f} MB"
    with polite_client(gateway) as polite:
        r = polite.post("/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Done?"}]})
    assert r.status_code == 200, r.text
    for sock in stalled:
        sock.close()
