"""`upstream.h2c: true`: the gateway speaks HTTP/2 by prior knowledge to a plain-HTTP upstream (the simulator).

Production reaches Google over TLS with ALPN h2, so its streams share multiplexed HTTP/2 connections; these
tests drive every kind of upstream call the gateway makes (OAuth token refresh, discovery, quota polls,
content streaming and not, countTokens) over h2c and read the simulator's per-version counters to prove each
call arrived over HTTP/2, and that concurrent streams shared a few connections instead of one each. One test
takes the production path itself (https://, ALPN h2, through a TLS front before the simulator) for the latter.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import REPO, Account, Gateway, main_config, phase_failed, wait_until, write_yaml

# Neither project nor tier is declared and the account is not onboarded yet: the gateway refreshes its token,
# runs loadCodeAssist and onboardUser before the first content call, all over h2c.
ACCOUNT = Account(email="h2c@e2e.levitate", tier="g1-pro-tier", project_id=None, declare_tier=False,
                  onboarded=False, max_concurrent=32)


def h2c_gateway(start_sim, tmp_path: Path, h2c: bool, scenario: dict | None = None) -> Gateway:
    sim = start_sim(dict(scenario or {}, accounts=[ACCOUNT.sim_entry()]))
    config_dir = tmp_path / f"h2c-{h2c}"
    config_dir.mkdir()
    write_yaml(config_dir / "accounts.yaml", {"accounts": [ACCOUNT.gateway_entry()]})
    (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    gateway = Gateway(config_dir, sim, [ACCOUNT], tmp_path / "logs")
    config = main_config(sim, pool={"quota_interval": "1s"})
    if h2c:
        config["upstream"]["h2c"] = True
    return gateway.start(config)


@pytest.fixture
def gateways(start_sim, tmp_path: Path, request) -> Iterator[list[Gateway]]:
    started: list[Gateway] = []

    def start(h2c: bool, scenario: dict | None = None) -> Gateway:
        started.append(h2c_gateway(start_sim, tmp_path, h2c, scenario))
        return started[-1]

    yield start  # type: ignore[misc]
    for gateway in started:
        gateway.stop()
        if phase_failed(request):
            print(gateway.logs())


def gateway_calls(totals: dict) -> int:
    """Every call the gateway made to the simulator, as the simulator counted them (image generations and
    grounding are counted besides their content request, so they are not added)."""
    return totals["requests"] + sum(totals[k] for k in (
        "token_refreshes", "load_code_assist", "onboard_user", "fetch_available_models", "retrieve_user_quota",
        "count_tokens"))


def sse_events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_every_upstream_call_rides_h2c(gateways):
    gateway = gateways(True)
    # OpenAI chat, not streaming: the first request also refreshes the token and discovers the project.
    r = gateway.chat("hello over h2c [sim:text]")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    # OpenAI chat, streaming.
    body = {"model": "gpt-4o", "stream": True,
            "messages": [{"role": "user", "content": "stream over h2c [sim:text] [sim:words=30]"}]}
    with gateway.http.stream("POST", "/v1/chat/completions", json=body) as s:
        assert s.status_code == 200
        events = sse_events(s)
    assert events[-1] == "[DONE]" and len(events) > 3, events
    # Anthropic messages, streaming.
    anthropic = {"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": True,
                 "messages": [{"role": "user", "content": "stream over h2c [sim:text] [sim:words=30]"}]}
    with gateway.http.stream("POST", "/v1/messages", json=anthropic) as s:
        assert s.status_code == 200
        kinds = [line[7:] for line in s.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    # countTokens (Gemini's is forwarded upstream; Anthropic's is counted by the gateway itself).
    counted = gateway.http.post("/v1beta/models/gemini-3-flash:countTokens",
                                headers={"x-goog-api-key": gateway.api_key},
                                json={"contents": [{"role": "user", "parts": [{"text": "count me over h2c"}]}]})
    assert counted.status_code == 200 and counted.json()["totalTokens"] > 0, counted.text
    # A quota poll (fetchAvailableModels) happens every second.
    wait_until("a quota poll", lambda: gateway.sim.account_stats(ACCOUNT.email).get("fetch_available_models", 0) >= 1,
               30)

    stats = gateway.sim.stats()
    account = stats["accounts"][ACCOUNT.email]
    assert account["token_refreshes"] >= 1 and account["load_code_assist"] >= 1, account
    assert account["onboard_user"] >= 1 and account["count_tokens"] >= 1, account
    assert account["by_status"] == {"200": account["requests"]}, account
    # Every call of the gateway came over HTTP/2; the only HTTP/1.1 requests are this test's own (stats,
    # health), made with httpx.
    versions = stats["http_versions"]
    assert versions.get("HTTP/2") == gateway_calls(stats["totals"]), (versions, stats["totals"])
    # A handful of h2 connections carried them all (the gateway and the background services each keep one).
    assert 1 <= stats["h2_connections"] <= 3, stats["h2_connections"]


def test_concurrent_streams_share_few_h2_connections(gateways):
    # Each chunk 300 ms apart: the streams below are all open at the same time.
    gateway = gateways(True, {"latency": {"inter_chunk_ms": 300}})
    gateway.assert_serves()
    gateway.sim.reset_stats()
    streams = 24
    concurrent_streams(gateway, streams)
    stats = gateway.sim.stats()
    assert stats["totals"]["peak_concurrency"] >= streams // 2, stats["totals"]
    assert stats["http_versions"].get("HTTP/2") == gateway_calls(stats["totals"]), stats["http_versions"]
    # Over HTTP/1.1 each concurrent stream needs a connection of its own; over h2 they are multiplexed (Pingora
    # may open a second connection while two streams race for the first's last free slot, never one each).
    assert stats["h2_connections"] <= 4, (stats["h2_connections"], stats["totals"]["peak_concurrency"])


def concurrent_streams(gateway: Gateway, streams: int) -> None:
    """`streams` OpenAI chat streams at once, each from its own client; all must complete."""

    def one(i: int) -> list[str]:
        body = {"model": "gpt-4o", "stream": True,
                "messages": [{"role": "user", "content": f"story {i} [sim:text] [sim:words=20]"}]}
        with httpx.Client(base_url=gateway.base_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {gateway.api_key}"}) as client:
            with client.stream("POST", "/v1/chat/completions", json=body) as s:
                assert s.status_code == 200, s.read()
                return sse_events(s)

    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        answers = list(pool.map(one, range(streams)))
    assert all(a[-1] == "[DONE]" for a in answers)


def test_production_tls_with_alpn_h2_multiplexes_too(start_sim, tmp_path: Path, request, monkeypatch):
    """The production path (https://, ALPN h2 and http/1.1, h2c off): a TLS front offering h2 stands in for
    Google before the simulator, and concurrent streams share a few HTTP/2 connections (Pingora's default of
    one stream per connection opened one each)."""
    import ssl

    from egress_proxies import TlsFront
    from test_tls import make_ca, make_leaf

    ca = make_ca(tmp_path, "upstream-ca")
    leaf = make_leaf(tmp_path, "upstream", ca, 0x61)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(leaf[0]), str(leaf[1]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    account = Account(email="alpn@e2e.levitate", tier="g1-pro-tier", project_id="e2e-alpn-project",
                      max_concurrent=32)
    sim = start_sim({"accounts": [account.sim_entry()], "latency": {"inter_chunk_ms": 300}})
    front = TlsFront(int(sim.addr.rsplit(":", 1)[1]), context).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))  # the gateway trusts the stand-in's CA, and only it
    config_dir = tmp_path / "alpn"
    config_dir.mkdir()
    write_yaml(config_dir / "accounts.yaml", {"accounts": [account.gateway_entry()]})
    (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    gateway = Gateway(config_dir, sim, [account], tmp_path / "logs")
    config = main_config(sim)
    config["upstream"].update(endpoints=[front.url], oauth_token_url=front.url + "/token")
    try:
        gateway.start(config)
        gateway.assert_serves()
        sim.reset_stats()
        concurrent_streams(gateway, 24)
        stats = sim.stats()
        assert stats["totals"]["peak_concurrency"] >= 12, stats["totals"]
        assert stats["http_versions"].get("HTTP/2") == gateway_calls(stats["totals"]), stats["http_versions"]
        assert stats["h2_connections"] <= 4, (stats["h2_connections"], stats["totals"]["peak_concurrency"])
    finally:
        gateway.stop()
        if phase_failed(request):
            print(gateway.logs())
        front.close()


def test_the_default_stays_http1(gateways):
    gateway = gateways(False)
    gateway.assert_serves()
    stats = gateway.sim.stats()
    assert "HTTP/2" not in stats["http_versions"] and stats["h2_connections"] == 0, stats["http_versions"]
    assert stats["http_versions"]["HTTP/1.1"] >= gateway_calls(stats["totals"]) >= 3


def test_an_account_behind_an_egress_proxy_speaks_h2c_through_its_tunnel(start_sim, tmp_path: Path, request):
    from egress_proxies import Socks5Proxy

    source = "127.0.0.2"
    account = Account(email="tunnel@e2e.levitate", tier="g1-pro-tier", project_id=None, declare_tier=False)
    sim = start_sim({"accounts": [account.sim_entry()]})
    socks = Socks5Proxy(source).start()
    config_dir = tmp_path / "tunnel"
    config_dir.mkdir()
    write_yaml(config_dir / "accounts.yaml", {"accounts": [dict(account.gateway_entry(), proxy=socks.url)]})
    (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    gateway = Gateway(config_dir, sim, [account], tmp_path / "logs")
    config = main_config(sim)
    config["upstream"]["h2c"] = True
    try:
        gateway.start(config)
        for i in range(3):
            r = gateway.chat(f"through the tunnel #{i} [sim:text]")
            assert r.status_code == 200, r.text
        stats = sim.stats()
        # Every call of the account (token refresh, discovery, content) came through the proxy, over HTTP/2,
        # on the few tunnels the pools kept (the gateway's and the background client's, and the egress probe's).
        calls = stats["peers"][source]["accounts"][account.email]
        assert calls == gateway_calls(stats["totals"]) >= 5, (calls, stats["totals"])
        assert stats["http_versions"].get("HTTP/2") == calls, stats["http_versions"]
        assert stats["peers"][source]["connections"] == socks.tunnels <= 4, (stats["peers"], socks.tunnels)
        assert "127.0.0.1" not in stats["peers"] or not stats["peers"]["127.0.0.1"].get("accounts"), stats["peers"]
    finally:
        gateway.stop()
        if phase_failed(request):
            print(gateway.logs())
        socks.close()
