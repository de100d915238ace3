"""Slow and stalled clients must not hold the pool: a client that stops reading ends its stream within
`limits.client_write_timeout` and gives its account slot back, so polite clients keep being served."""

from __future__ import annotations

import json
import socket
import time

import httpx

from conftest import API_KEY, wait_until

# Enough output (several MB of OpenAI chunks) to fill the kernel's socket buffers on both sides of loopback.
HUGE_ANSWER = "Write a very long story. [sim:words=400000] [sim:text]"


def in_flight(gateway) -> int:
    accounts = httpx.get(gateway.admin_url + "/admin/accounts", timeout=10.0).json()["accounts"]
    return sum(a["in_flight"] for a in accounts)


def stalled_stream(gateway) -> socket.socket:
    """Sends a streaming chat request from a socket with a tiny receive buffer, and never reads the answer."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": HUGE_ANSWER}]})
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body.encode())
    return sock


def test_a_client_that_stops_reading_frees_its_account_slot(start_gateway):
    gateway = start_gateway(limits={"client_write_timeout": "2s"},
                            pool={"max_concurrent_per_account": 2, "max_wait": "20s"})
    stalled = [stalled_stream(gateway) for _ in range(2)]
    try:
        # Both slots are taken by the stalled streams for a moment (the answers are being written) ...
        wait_until("the stalled streams to hold the account", lambda: in_flight(gateway) == 2, 15.0,
                   gateway.process)
        # ... and given back once their writes have made no progress for client_write_timeout.
        started = time.monotonic()
        wait_until("the stalled streams to release their slots", lambda: in_flight(gateway) == 0, 20.0,
                   gateway.process)
        assert time.monotonic() - started < 15.0
        # A polite client is served while the stalled sockets are still open.
        r = gateway.chat("Are you there?")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
    finally:
        for sock in stalled:
            sock.close()
    wait_until("no request in flight", lambda: in_flight(gateway) == 0, 10.0, gateway.process)


def stalled_h2_stream(gateway) -> socket.socket:
    """An HTTP/2 (h2c, prior knowledge) streaming request whose flow-control window is never reopened."""
    import h2.config
    import h2.settings
    import h2.connection

    host, port = gateway.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    # A small window the client never extends: the gateway may send 16 KiB, then must wait.
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16384})
    conn.initiate_connection()
    body = json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": HUGE_ANSWER}]}).encode()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                                  (":authority", f"{host}:{port}"), ("authorization", f"Bearer {API_KEY}"),
                                  ("content-type", "application/json"), ("content-length", str(len(body)))])
    conn.send_data(stream_id, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    return sock


def test_an_http2_stream_whose_window_stays_closed_frees_its_account_slot(start_gateway):
    gateway = start_gateway(limits={"client_write_timeout": "2s"},
                            pool={"max_concurrent_per_account": 1, "max_wait": "20s"})
    sock = stalled_h2_stream(gateway)
    try:
        wait_until("the stalled h2 stream to hold the account", lambda: in_flight(gateway) == 1, 15.0,
                   gateway.process)
        wait_until("the stalled h2 stream to release its slot", lambda: in_flight(gateway) == 0, 20.0,
                   gateway.process)
        r = gateway.chat("Are you there?")
        assert r.status_code == 200, r.text
    finally:
        sock.close()
