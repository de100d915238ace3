"""A client that goes away stops costing tokens: the gateway cancels the upstream request at once, whether the
client leaves in the middle of a stream or while it is still waiting for the first byte (a long thinking pause).

Each test judges by the simulator's in-flight counter for the account: it drops to zero when the upstream
connection is closed, long before the upstream answer would have ended on its own.
"""

from __future__ import annotations

import socket
import time

from conftest import API_KEY


def raw_stream_request(port: int, text: str) -> socket.socket:
    """Opens a connection and sends one streaming chat request; the caller reads and then drops it."""
    body = ('{"model":"gemini-3-flash","stream":true,"messages":[{"role":"user","content":"%s"}]}' % text).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def gateway_port(gw) -> int:
    return int(gw.base_url.rsplit(":", 1)[1])


def test_a_client_leaving_mid_stream_cancels_the_upstream_at_once(start_gateway):
    # 400 words at 200 ms between chunks: the upstream answer would take many seconds to finish on its own.
    gw = start_gateway(scenario={"latency": {"inter_chunk_ms": 200}})
    email = gw.accounts[0].email
    sock = raw_stream_request(gateway_port(gw), "tell me a long story [sim:text] [sim:words=400]")
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the stream before the first event"
        received += chunk
    assert b" 200 " in received.split(b"\r\n", 1)[0]
    assert gw.sim.account_stats(email).get("in_flight") == 1, "the upstream stream should still be running"

    left_at = time.monotonic()
    sock.close()
    assert wait_until(lambda: gw.sim.account_stats(email).get("in_flight") == 0, 2.0), \
        "the upstream request kept running after the client left"
    assert time.monotonic() - left_at < 2.0
    gw.assert_serves()


def test_a_client_leaving_before_the_first_byte_cancels_the_upstream(start_gateway):
    # The upstream thinks for 20 s before its first byte; the client gives up after half a second.
    gw = start_gateway(scenario={"latency": {"first_byte_ms": 20000}})
    email = gw.accounts[0].email
    sock = raw_stream_request(gateway_port(gw), "think hard first [sim:text]")
    assert wait_until(lambda: gw.sim.account_stats(email).get("in_flight") == 1, 5.0), \
        "the request never reached the upstream"

    sock.close()
    assert wait_until(lambda: gw.sim.account_stats(email).get("in_flight") == 0, 2.0), \
        "the upstream request kept running after the client left before the first byte"
