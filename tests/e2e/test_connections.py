"""Hostile connections cannot exhaust the gateway's sockets, and the client's address is known behind a proxy.

Slowloris (a request head trickled in, or nothing at all), a stalled body upload and idle keep-alive connections
are each cut within their limit; a flood of connections from one address is refused over
`limits.max_connections_per_ip` while a polite client on another address keeps being served; the global
`limits.max_connections` answers 503 while `/admin` still answers; `server.trusted_proxies` decides whether
X-Forwarded-For / CF-Connecting-IP name the client in the request log.

Loopback has the whole 127.0.0.0/8: the polite client and the "proxy" connect from 127.0.0.2.
"""

from __future__ import annotations

import json
import socket
import time

import httpx

from conftest import API_KEY, wait_until

SLACK = 1.5  # scheduling and timer granularity on a shared CI machine


def port_of(gw) -> int:
    return int(gw.base_url.rsplit(":", 1)[1])


def connect(gw, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(gw)), timeout=10, source_address=(source, 0))


def seconds_until_closed(sock: socket.socket, limit: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Reads until the server closes the connection (optionally sending `trickle` a byte every 0.3 s);
    returns the time it took and what the server sent."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.3)
    sent = 0
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            if sent < len(trickle):
                try:
                    sock.sendall(trickle[sent:sent + 1])
                except OSError:
                    break
                sent += 1
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


def polite_client(gw, source: str = "127.0.0.2") -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, timeout=30.0, headers={"Authorization": f"Bearer {API_KEY}"},
                        transport=httpx.HTTPTransport(local_address=source))


def chat_body(text: str = "hello") -> dict:
    return {"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}]}


def test_a_trickled_request_head_is_cut_at_the_header_deadline(start_gateway):
    gw = start_gateway(limits={"header_timeout": "2s"})
    sock = connect(gw)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    # A byte every 0.3 s: each read makes progress, only a whole-head deadline stops it.
    took, answer = seconds_until_closed(sock, 10, trickle=b"X-Slow: " + b"a" * 200)
    assert took < 2 + SLACK, f"slowloris head kept open {took:.1f}s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    # A connection that never sends a byte goes the same way.
    silent = connect(gw)
    took, _ = seconds_until_closed(silent, 10)
    assert took < 2 + SLACK, f"silent connection kept open {took:.1f}s"
    gw.assert_serves()


def test_a_stalled_body_upload_ends_with_408(start_gateway):
    gw = start_gateway(limits={"body_read_timeout": "2s"})
    sock = connect(gw)
    body = json.dumps(chat_body()).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body[:10])
    took, answer = seconds_until_closed(sock, 15)
    assert took < 2 + SLACK, f"stalled upload kept open {took:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_read_timeout" in answer
    gw.assert_serves()


def test_an_idle_keepalive_connection_is_closed_after_the_timeout(start_gateway):
    gw = start_gateway(limits={"keepalive_timeout": "2s"})
    sock = connect(gw)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first
    took, rest = seconds_until_closed(sock, 10)
    assert rest == b""
    assert 1.0 < took < 2 + SLACK, f"idle keep-alive closed after {took:.1f}s"
    # A connection in use is kept alive between requests inside the timeout.
    sock = connect(gw)
    for _ in range(3):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
    sock.close()


def test_a_flood_from_one_address_is_refused_while_others_are_served(start_gateway):
    gw = start_gateway(limits={"max_connections_per_ip": 8, "header_timeout": "30s"})
    flood = []
    for _ in range(30):
        sock = connect(gw)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished: held until the deadline
        flood.append(sock)
    time.sleep(0.5)
    refused, held = [], []
    for sock in flood:
        sock.settimeout(0.5)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            held.append(sock)
            continue
        except ConnectionResetError:
            data = b""
        refused.append(data)
    assert len(held) == 8, f"{len(held)} flood connections held, expected the per-address limit of 8"
    assert all(d == b"" or d.startswith(b"HTTP/1.1 429") for d in refused), refused[:3]
    assert any(d.startswith(b"HTTP/1.1 429") for d in refused), "no refusal said why"
    counted = [line for line in gw.metrics().splitlines()
               if line.startswith('levitate_connections_refused_total{kind="connection",reason="per_ip"}')]
    assert counted and float(counted[0].split()[-1]) == len(refused), counted
    with polite_client(gw) as polite:
        for i in range(5):
            r = polite.post("/v1/chat/completions", json=chat_body(f"still there {i}?"))
            assert r.status_code == 200, r.text
    # Once the flood lets go, its address is served again.
    for sock in held:
        sock.close()
    wait_until("the flood's places to be freed", lambda: httpx.get(gw.base_url + "/health").status_code == 200, 5.0)
    gw.assert_serves()


def test_the_global_limit_answers_503_and_admin_still_answers(start_gateway):
    gw = start_gateway(limits={"max_connections": 5, "header_timeout": "30s"})
    held = []
    for i in range(5):
        sock = connect(gw, source=f"127.0.0.{10 + i}")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    time.sleep(0.3)
    over = connect(gw, source="127.0.0.20")
    over.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    over.settimeout(5)
    answer = over.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"connection limit" in answer
    # The admin listener is not counted with the clients.
    r = httpx.get(gw.admin_url + "/admin/accounts", timeout=5)
    assert r.status_code == 200
    for sock in held:
        sock.close()
    wait_until("a place to be freed", lambda: httpx.get(gw.base_url + "/health").status_code == 200, 5.0)


def recent_client_ips(gw) -> list[str | None]:
    r = httpx.get(gw.admin_url + "/admin/requests?limit=50", timeout=5)
    r.raise_for_status()
    return [rec.get("client_ip") for rec in r.json()["requests"]]


def test_forwarded_addresses_are_believed_only_from_a_trusted_proxy(start_gateway):
    gw = start_gateway(server={"trusted_proxies": ["127.0.0.2/32"]})
    with polite_client(gw, source="127.0.0.2") as proxy:
        r = proxy.get("/v1/models", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7"})
        assert r.status_code == 200
        r = proxy.get("/v1/models", headers={"CF-Connecting-IP": "2001:db8::7", "X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 200
    with polite_client(gw, source="127.0.0.3") as stranger:
        r = stranger.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.5", "CF-Connecting-IP": "203.0.113.6"})
        assert r.status_code == 200
    wanted = {"198.51.100.7", "2001:db8::7", "127.0.0.3"}
    wait_until("the request log to record all three", lambda: wanted <= set(recent_client_ips(gw)), 10.0)
    ips = recent_client_ips(gw)
    assert "203.0.113.5" not in ips and "203.0.113.6" not in ips, ips


def test_clients_behind_a_trusted_proxy_are_limited_one_by_one(start_gateway):
    """The proxy's own connections are not held to the per-address limit; its clients' requests are."""
    from concurrent.futures import ThreadPoolExecutor

    gw = start_gateway(limits={"max_connections_per_ip": 2, "header_timeout": "30s"},
                       server={"trusted_proxies": ["127.0.0.2"]},
                       scenario={"latency": {"first_byte_ms": 1500}})
    # More proxy connections than the per-address limit: all accepted.
    held = []
    for _ in range(4):
        sock = connect(gw, source="127.0.0.2")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        held.append(sock)
    def forwarded(client_ip: str) -> httpx.Response:
        with polite_client(gw, source="127.0.0.2") as proxy:
            return proxy.post("/v1/chat/completions", json=chat_body(), headers={"X-Forwarded-For": client_ip})

    # Three at once for one forwarded client: two are served, the third is over its limit. Another client
    # behind the same proxy is not affected.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(forwarded, ["198.51.100.9"] * 3 + ["198.51.100.10"]))
    statuses = sorted(r.status_code for r in answers[:3])
    assert statuses == [200, 200, 429], [r.text for r in answers]
    assert answers[3].status_code == 200, answers[3].text
    limited = next(r for r in answers if r.status_code == 429)
    assert "too many concurrent requests" in limited.json()["error"]["message"]
    for sock in held:
        sock.settimeout(0.3)
        try:
            data = sock.recv(100)
        except socket.timeout:
            data = None
        assert data is None, f"a proxy connection was refused: {data!r}"
        sock.close()


def test_running_out_of_descriptors_is_the_gateway_s_fault_not_the_account_s(start_gateway):
    """With its descriptor limit lowered under it, the gateway cannot open upstream connections: clients get a
    503 that says so (not 502 "upstream could not be reached"), no breaker opens, /admin keeps answering, and
    once descriptors are back the same account serves again."""
    import os
    import resource
    from concurrent.futures import ThreadPoolExecutor

    gw = start_gateway(pool={"breaker_failures": 1, "max_attempts": 2},
                       scenario={"latency": {"first_byte_ms": 3000}})
    gw.assert_serves()  # token and project are known; one upstream connection is pooled
    pid = gw.process.popen.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    admin = httpx.Client(base_url=gw.admin_url, timeout=10)  # connected before the limit drops
    assert admin.get("/admin/circuits").status_code == 200
    fds = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(len(fds) + 4, max(fds) + 1), hard))
    try:
        def one(i: int) -> httpx.Response:
            with polite_client(gw, source=f"127.0.0.{30 + i}") as client:
                return client.post("/v1/chat/completions", json=chat_body(f"fd {i}"))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        statuses = [r.status_code for r in answers]
        local = [r for r in answers if r.status_code == 503]
        assert local, f"no request ran out of descriptors: {statuses}"
        assert 502 not in statuses, [r.text for r in answers if r.status_code == 502]
        assert all("local resources" in r.json()["error"]["message"] for r in local), [r.text for r in local]
        circuits = admin.get("/admin/circuits").json()["circuits"]
        assert all(c["breaker"] == "closed" for c in circuits), circuits
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        admin.close()
    gw.assert_serves()


def test_h2c_is_served_and_counted_and_a_silent_h2_connection_is_cut(start_gateway):
    """HTTP/2 (prior knowledge) still reaches Pingora through the connection front door, its requests are
    served, and an h2c connection that sends its preface and then nothing is closed after the idle timeout."""
    gw = start_gateway(limits={"keepalive_timeout": "2s", "header_timeout": "2s"})
    with httpx.Client(base_url=gw.base_url, http1=False, http2=True, timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as h2:
        for i in range(3):
            r = h2.post("/v1/chat/completions", json=chat_body(f"h2 {i}"))
            assert r.status_code == 200 and r.http_version == "HTTP/2", (r.http_version, r.text)
    sock = connect(gw)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # preface + empty SETTINGS
    took, _ = seconds_until_closed(sock, 15)
    assert took < 2 + SLACK + 1, f"idle h2c connection kept open {took:.1f}s"
