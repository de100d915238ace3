"""Request shapes that frame a body ambiguously, or encode it: no request smuggling through Content-Length +
Transfer-Encoding (Pingora reads such a body as chunked, per RFC 9112 §6.3, and closes the connection after
the answer, so bytes after the body are never read as a request), and no compressed bodies the gateway would
have to inflate without a bound (415 in the client's protocol)."""

from __future__ import annotations

import gzip
import json
import socket

from conftest import API_KEY, assert_openai_error


def raw_exchange(gateway, request: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes on a fresh connection and returns everything the gateway wrote until it closed."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except socket.timeout:
            pass
    return received


def test_content_length_with_transfer_encoding_cannot_smuggle_a_second_request(gateway):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    smuggled = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n\r\n"
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked + smuggled)
    answer = raw_exchange(gateway, request)
    assert answer.count(b"HTTP/1.1 ") == 1, f"a second request was read from the same connection: {answer!r}"
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"connection: close" in head, answer[:300]
    assert b'"object":"list"' not in answer, "the smuggled GET /v1/models was answered"
    gateway.assert_serves()


def test_two_different_content_lengths_are_refused(gateway):
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
    answer = raw_exchange(gateway, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    gateway.assert_serves()


def test_a_compressed_body_gets_415_in_the_clients_protocol(gateway):
    body = gzip.compress(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode())
    r = gateway.http.post("/v1/chat/completions", content=body,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    error = assert_openai_error(r, 415)
    assert "Content-Encoding" in error["message"]

    r = gateway.http.post("/v1/messages", content=body,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                                   "anthropic-version": "2023-06-01"})
    assert r.status_code == 415, r.text
    assert r.json()["type"] == "error" and "Content-Encoding" in r.json()["error"]["message"]
    gateway.assert_serves()


def test_identity_content_encoding_is_accepted(gateway):
    r = gateway.http.post("/v1/chat/completions",
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Content-Encoding": "identity"})
    assert r.status_code == 200, r.text
