"""Bad requests get OpenAI-shaped 4xx answers, upstream failures are translated, and the gateway keeps serving.

Raw HTTP on purpose: an SDK would refuse to send most of these.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import API_KEY, Account, Gateway, assert_openai_error

GOOGLE_LEAKS = ("RESOURCE_EXHAUSTED", "@type", "googleapis.com", "UNAVAILABLE", "quotaResetDelay")


def post_raw(gateway: Gateway, body: bytes, headers: dict | None = None):
    return gateway.http.post("/v1/chat/completions", content=body,
                             headers={"Content-Type": "application/json", **(headers or {})})


BAD_REQUESTS = [
    (b'{"model": "gpt-4o", "messages": [', "truncated JSON"),
    (b"not json at all", "not JSON"),
    (b"", "empty body"),
    (b'["model", "gpt-4o"]', "a JSON array instead of an object"),
    (json.dumps({"model": "gpt-4o", "messages": "hello"}).encode(), "messages is a string"),
    (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                 "temperature": "hot"}).encode(), "temperature is a string"),
    (json.dumps({"model": "gpt-4o"}).encode(), "messages is missing"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "model is missing"),
    (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "n": 2}).encode(),
     "n > 1 is not supported"),
    (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                 "logprobs": True}).encode(), "logprobs are not supported"),
]


@pytest.mark.parametrize("body, why", BAD_REQUESTS, ids=[why for _, why in BAD_REQUESTS])
def test_a_bad_request_is_a_400_and_the_gateway_keeps_serving(gateway: Gateway, body: bytes, why: str):
    response = post_raw(gateway, body)

    assert_openai_error(response, 400)
    assert gateway.sim.stats()["totals"]["requests"] == 0, f"{why}: the request reached the upstream"
    gateway.assert_serves()


def test_a_missing_key_is_a_401_in_openai_shape(gateway: Gateway):
    import httpx

    response = httpx.post(gateway.base_url + "/v1/chat/completions", timeout=30.0,
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(response, 401)
    wrong = httpx.post(gateway.base_url + "/v1/chat/completions", timeout=30.0,
                       headers={"Authorization": "Bearer wrong-key"},
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(wrong, 401)
    assert gateway.sim.stats()["totals"]["requests"] == 0
    gateway.assert_serves()


def test_an_unknown_model_without_a_default_route_is_a_404(start_gateway):
    gateway = start_gateway(routes={"models": ["gemini-3-flash"], "aliases": {"gpt-4o": "gemini-3-flash"}})

    error = assert_openai_error(gateway.chat("hi", model="no-such-model"), 404)
    assert "no-such-model" in error["message"]
    assert gateway.sim.stats()["totals"]["requests"] == 0
    gateway.assert_serves()


def test_a_body_over_the_limit_is_a_413(start_gateway):
    gateway = start_gateway(limits={"max_request_body": "64KiB"})

    response = gateway.chat("x" * (100 * 1024))

    assert_openai_error(response, 413)
    assert gateway.sim.stats()["totals"]["requests"] == 0
    ok = gateway.chat("y" * (32 * 1024))  # under the limit still works
    assert ok.status_code == 200, ok.text
    gateway.assert_serves()


class RawHttp:
    """HTTP/1.1 over a plain socket, for what clients really send (pipelined requests, Expect: 100-continue)."""

    def __init__(self, gateway: Gateway, timeout: float = 30.0):
        host, port = gateway.base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> "RawHttp":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        piece = self.sock.recv(65536)
        self.buffer += piece
        return bool(piece)

    def _take_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}; got {self.buffer[:200]!r}")
        taken, _, self.buffer = self.buffer.partition(marker)
        return taken

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError(f"connection closed {size - len(self.buffer)} bytes short")
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def response(self, timeout: float = 30.0) -> tuple[int, dict, bytes]:
        """Reads one response (a 100 Continue too): status, lower-cased headers, body."""
        self.sock.settimeout(timeout)
        lines = self._take_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        if 100 <= status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self._take_until(b"\r\n").split(b";")[0], 16):
                body += self._take(size)
                self._take_until(b"\r\n")
            self._take_until(b"\r\n")
            return status, headers, body
        while self._fill():  # close-delimited
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body


def raw_request(gateway: Gateway, body: bytes, extra_headers: str = "") -> bytes:
    host = gateway.base_url.removeprefix("http://")
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n"
            ).encode() + body


def test_malformed_json_on_a_raw_socket_leaves_the_connection_usable(gateway: Gateway):
    with RawHttp(gateway) as conn:
        conn.send(raw_request(gateway, b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"'))
        status, _, body = conn.response()
        assert status == 400, body
        assert json.loads(body)["error"]["message"]

        # Same connection, a good request: keep-alive survives a client error.
        good = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi [sim:text]"}]})
        conn.send(raw_request(gateway, good.encode()))
        status, _, body = conn.response()
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"]


def test_an_oversize_upload_with_expect_100_continue_is_refused(start_gateway):
    gateway = start_gateway(limits={"max_request_body": "64KiB"})
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "z" * (1024 * 1024)}]})
    head, _, payload = raw_request(gateway, body.encode(), "Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    with RawHttp(gateway) as conn:
        conn.send(head + b"\r\n\r\n")
        status, _, answer = conn.response()
        if status == 100:  # the gateway asked for the body after all: send it, then read the verdict
            try:
                conn.send(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            status, _, answer = conn.response()
    assert status == 413, answer
    error = json.loads(answer)["error"]
    assert error["message"] and error["type"]
    gateway.assert_serves()


def test_a_large_upload_with_expect_100_continue_is_invited_at_once(gateway: Gateway):
    """curl and other clients send `Expect: 100-continue` for bodies over 1 MiB and wait up to a second for the
    invitation: a gateway that does not answer it makes every large prompt a second slower."""
    body = json.dumps({"model": "gpt-4o",
                       "messages": [{"role": "user", "content": "w" * (2 * 1024 * 1024) + " [sim:text]"}]})
    head, _, payload = raw_request(gateway, body.encode(), "Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    with RawHttp(gateway) as conn:
        started = time.monotonic()
        conn.send(head + b"\r\n\r\n")
        status, _, _ = conn.response(timeout=5)
        waited = time.monotonic() - started
        assert status == 100, f"expected 100 Continue, got {status}"
        assert waited < 0.9, f"the 100 Continue took {waited:.2f}s"
        conn.send(payload)
        status, _, answer = conn.response()
    assert status == 200, answer[:500]
    assert json.loads(answer)["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------------------------------------------
# Upstream failures, translated


def three_accounts() -> list[Account]:
    return [Account(email="ultra@e2e.levitate", tier="g1-ultra-tier", project_id="e2e-ultra"),
            Account(email="pro@e2e.levitate", tier="g1-pro-tier", project_id="e2e-pro"),
            Account(email="free@e2e.levitate", tier="free-tier", project_id="e2e-free")]


@pytest.mark.parametrize("fault, status", [
    ({"kind": "rate_limit"}, 429),
    ({"kind": "quota_exhausted"}, 429),
    ({"kind": "capacity", "status": 503}, 503),
], ids=["rate_limit", "quota_exhausted", "capacity_503"])
def test_when_every_account_fails_the_client_gets_a_clean_openai_error(start_gateway, fault: dict, status: int):
    gateway = start_gateway(accounts=three_accounts())
    gateway.set_faults([fault])

    response = gateway.chat("hello [sim:text]")

    assert_openai_error(response, status)
    for leak in GOOGLE_LEAKS:
        assert leak not in response.text, f"raw upstream error passed through ({leak}): {response.text}"
    upstream = gateway.sim.stats()["totals"]["by_status"]
    assert upstream.get(str(status)), f"the sim never answered {status}: {upstream}"

    gateway.clear_faults()
    gateway.sim.reset_stats()
    if fault["kind"] == "capacity":
        gateway.assert_serves()


def test_a_streaming_client_also_gets_a_clean_error_when_every_account_fails(start_gateway):
    gateway = start_gateway(accounts=three_accounts())
    gateway.set_faults([{"kind": "capacity", "status": 503}])

    response = gateway.chat("hello [sim:text]", stream=True)

    assert_openai_error(response, 503)
    for leak in GOOGLE_LEAKS:
        assert leak not in response.text, f"raw upstream error passed through ({leak}): {response.text}"


def test_a_rate_limited_account_is_skipped_and_the_client_never_notices(start_gateway):
    accounts = three_accounts()
    gateway = start_gateway(accounts=accounts)
    ultra, pro, free = (a.email for a in accounts)
    gateway.set_faults([{"kind": "rate_limit", "account": ultra}])

    response = gateway.chat("hello [sim:text]")

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    stats = gateway.sim.stats()["accounts"]
    assert set(stats[ultra]["by_status"]) == {"429"}, f"the rate-limited account only ever said 429: {stats}"
    assert stats[pro]["by_status"] == {"200": 1}, "the next-best account should have answered"
    assert stats.get(free, {}).get("requests", 0) == 0


def test_a_rate_limited_stream_is_retried_before_the_first_byte(start_gateway):
    accounts = three_accounts()
    gateway = start_gateway(accounts=accounts)
    gateway.set_faults([{"kind": "rate_limit", "account": accounts[0].email}])

    with gateway.http.stream("POST", "/v1/chat/completions", json={
            "model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": "stream please [sim:text]"}]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and
            c["choices"][0]["finish_reason"]] == ["stop"]


def test_a_stream_cut_without_finish_reason_ends_with_length(start_gateway):
    gateway = start_gateway()
    gateway.set_faults([{"kind": "stream_cut", "after_chunks": 1}])

    with gateway.http.stream("POST", "/v1/chat/completions", json={
            "model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": "a long answer [sim:text] [sim:words=200]"}]}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert events and events[-1] == "data: [DONE]", events[-3:]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["length"], f"a stream that ended without finishReason must say so: {finishes}"
