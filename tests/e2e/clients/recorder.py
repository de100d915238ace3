"""A loopback pass-through proxy that writes down every request a real client makes to the gateway.

Real CLIs (Claude Code, Gemini CLI) decide for themselves which endpoints to call and with which headers; a test
that fails must show that. `Recorder` listens on a free 127.0.0.1 port, forwards each request unchanged to the
gateway, streams the answer back chunk by chunk (SSE keeps working), and keeps one `Exchange` per request:
method, path, the headers that matter (never keys), the body's size and top-level shape, and the status.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# Hop-by-hop and framing headers: the proxy re-frames both directions itself.
_SKIP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade",
         "te", "trailer"}
_SECRETS = {"authorization", "x-api-key", "x-goog-api-key", "cookie"}


@dataclasses.dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body_bytes: int
    body_summary: dict
    status: int | None = None
    response_snippet: str = ""
    body: bytes = dataclasses.field(default=b"", repr=False)

    def line(self) -> str:
        return f"{self.method} {self.path} -> {self.status} ({self.body_bytes} B request) {self.body_summary}"


def _summary(body: bytes) -> dict:
    """Top-level shape of a JSON body: the model, whether it streams, sizes of the big fields."""
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return {"json": False}
    if not isinstance(value, dict):
        return {}
    out: dict = {k: value[k] for k in ("model", "stream", "max_tokens") if k in value}
    for key in ("system", "tools", "messages", "contents", "systemInstruction", "thinking", "generationConfig"):
        if key in value:
            out[f"{key}_bytes"] = len(json.dumps(value[key]))
    if isinstance(value.get("messages"), list):
        out["n_messages"] = len(value["messages"])
    if isinstance(value.get("contents"), list):
        out["n_contents"] = len(value["contents"])
    if isinstance(value.get("tools"), list):
        out["n_tools"] = len(value["tools"])
    if isinstance(value.get("thinking"), dict):
        out["thinking"] = value["thinking"]
    return out


class Recorder:
    """`with Recorder(gateway_url) as rec:` point the client at `rec.url`; `rec.exchanges` lists what it sent."""

    def __init__(self, target: str, timeout: float = 120.0):
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(timeout=timeout)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the exchanges are the log
                pass

            def _proxy(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIP}
                seen = {k.lower(): ("<redacted>" if k.lower() in _SECRETS else v) for k, v in headers.items()}
                # Plain bytes from the gateway, so the recorder can read them; the client's own wish is recorded.
                headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
                headers["Accept-Encoding"] = "identity"
                exchange = Exchange(self.command, self.path, seen, len(body), _summary(body), body=body)
                with recorder._lock:
                    recorder.exchanges.append(exchange)
                try:
                    request = recorder._upstream.build_request(self.command, recorder.target + self.path,
                                                               headers=headers, content=body)
                    response = recorder._upstream.send(request, stream=True)
                except httpx.HTTPError as e:
                    exchange.status = 502
                    exchange.response_snippet = f"recorder could not reach the gateway: {e}"
                    self.send_error(502)
                    return
                try:
                    exchange.status = response.status_code
                    self.send_response(response.status_code)
                    for k, v in response.headers.items():
                        if k.lower() not in _SKIP:
                            self.send_header(k, v)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in response.iter_raw():
                        if not chunk:
                            continue
                        if len(exchange.response_snippet) < 2000:
                            exchange.response_snippet += chunk[:2000].decode(errors="replace")
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    response.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="recorder", daemon=True)

    def __enter__(self) -> "Recorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def report(self) -> str:
        """Every exchange, one per line, with error bodies: what to print when a test fails."""
        with self._lock:
            lines = []
            for e in self.exchanges:
                lines.append(e.line())
                if e.status is None or e.status >= 400:
                    lines.append(f"    headers: {e.headers}")
                    lines.append(f"    answer: {e.response_snippet[:1000]}")
            return "\n".join(lines) or "(no requests reached the recorder)"
