"""Per-account egress proxies, as an operator who binds each account to its own IP sees them.

Two accounts, each bound to its own proxy: one behind a SOCKS5 proxy (socks5h, username/password), one behind an
HTTP CONNECT proxy (Basic auth). The proxies (tests/e2e/egress_proxies.py) connect onward from their own source
addresses, 127.0.0.2 and 127.0.0.3, while the gateway itself connects from 127.0.0.1; the simulator records
the source address of every connection and which account each call over it was for. So "every call of an
account went through its proxy" and "nothing went direct" are read from the proxies' own counters and the
simulator's per-peer stats, not from the gateway's word.
"""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import REPO, Account, Gateway, main_config, phase_failed, wait_until, write_yaml
from egress_proxies import ConnectProxy, Socks5Proxy, TlsFront

SOCKS_SOURCE = "127.0.0.2"
CONNECT_SOURCE = "127.0.0.3"
GATEWAY_SOURCE = "127.0.0.1"
# Discovery (loadCodeAssist) and token refresh are exercised too: neither account declares its project.
SOCKS_ACCOUNT = Account(email="socks@e2e.levitate", tier="g1-pro-tier", project_id=None, declare_tier=False)
CONNECT_ACCOUNT = Account(email="connect@e2e.levitate", tier="g1-pro-tier", project_id=None, declare_tier=False)


class Egress:
    """The two proxies and the gateway whose accounts are bound to them."""

    def __init__(self, gateway: Gateway, socks: Socks5Proxy, connect: ConnectProxy):
        self.gateway = gateway
        self.socks = socks
        self.connect = connect

    def peers(self) -> dict:
        return self.gateway.sim.stats()["peers"]

    def calls_from(self, source: str) -> dict:
        """Calls per account that reached the simulator over connections from `source`."""
        return self.peers().get(source, {}).get("accounts", {})

    def accounts(self) -> dict:
        r = httpx.get(self.gateway.admin_url + "/admin/accounts", timeout=10.0)
        r.raise_for_status()
        return {a["email"]: a for a in r.json()["accounts"]}

    def chat_ok(self, count: int) -> None:
        for i in range(count):
            r = self.gateway.chat(f"hello #{i} [sim:text]")
            assert r.status_code == 200, f"request {i}: {r.status_code} {r.text}"


def egress_gateway(sim, config_dir: Path, accounts: list[Account], entries: list[dict]) -> Gateway:
    """A gateway (not started) whose accounts.yaml holds `entries`; quota polls every second, so
    fetchAvailableModels goes through the proxies too."""
    config_dir.mkdir()
    write_yaml(config_dir / "accounts.yaml", {"accounts": entries})
    (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    gateway = Gateway(config_dir, sim, accounts, config_dir.parent / "logs")
    gateway.main_config = main_config(sim, pool={"quota_interval": "1s", "max_attempts": 4})
    return gateway


@pytest.fixture
def egress(start_sim, tmp_path: Path, request, monkeypatch) -> Iterator[Egress]:
    accounts = [SOCKS_ACCOUNT, CONNECT_ACCOUNT]
    sim = start_sim({"accounts": [a.sim_entry() for a in accounts]})
    socks = Socks5Proxy(SOCKS_SOURCE, user="sockuser", password="sock:pass").start()
    connect = ConnectProxy(CONNECT_SOURCE, user="connuser", password="conn-pass").start()
    # Credentials come from the environment only (the gateway inherits the test's environment).
    monkeypatch.setenv("E2E_SOCKS_AUTH", "sockuser:sock:pass")
    monkeypatch.setenv("E2E_CONNECT_AUTH", "connuser:conn-pass")
    entries = [a.gateway_entry() for a in accounts]
    # Pacing on both: consecutive calls of one account are spaced, so requests alternate between them (the pool
    # picks the other account rather than waiting while one is free).
    entries[0].update(proxy=socks.url, proxy_auth_env="E2E_SOCKS_AUTH", min_interval="500ms")
    entries[1].update(proxy=connect.url, proxy_auth_env="E2E_CONNECT_AUTH", min_interval="500ms", jitter="100ms")
    gateway = egress_gateway(sim, tmp_path / "egress", accounts, entries)
    try:
        gateway.start(gateway.main_config)
        yield Egress(gateway, socks, connect)
    finally:
        gateway.stop()
        if phase_failed(request):
            print(gateway.logs())
        socks.close()
        connect.close()


def metric(gateway: Gateway, name: str, **labels: str) -> float | None:
    """The value of one series of a metric, found by its labels; None when it is not exported."""
    for line in gateway.metrics().splitlines():
        if line.startswith(f"levitate_{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_call_of_an_account_goes_through_its_own_proxy(egress: Egress):
    started = time.monotonic()
    egress.chat_ok(8)
    # Pacing: without it every request would go to the first account (both idle, same tier); with it each
    # account serves a share, and 8 calls over two accounts spaced 500 ms apart take at least 1.5 s.
    shares = [egress.gateway.sim.account_stats(a.email).get("requests", 0) for a in (SOCKS_ACCOUNT, CONNECT_ACCOUNT)]
    assert min(shares) >= 2 and sum(shares) == 8, shares
    assert time.monotonic() - started >= 1.5
    # Wait for a quota poll of each account, so fetchAvailableModels is part of what is checked below.
    wait_until("a quota poll of each account", lambda: all(
        egress.gateway.sim.account_stats(a.email).get("fetch_available_models", 0) >= 1
        for a in (SOCKS_ACCOUNT, CONNECT_ACCOUNT)), 30)
    egress.chat_ok(2)

    socks_calls = egress.calls_from(SOCKS_SOURCE)
    connect_calls = egress.calls_from(CONNECT_SOURCE)
    # Each proxy carried its own account's calls and nothing else ...
    assert set(socks_calls) == {SOCKS_ACCOUNT.email}, socks_calls
    assert set(connect_calls) == {CONNECT_ACCOUNT.email}, connect_calls
    # ... and every call of each account: content, token refresh, discovery and quota polls, all of them.
    for account, calls in ((SOCKS_ACCOUNT, socks_calls), (CONNECT_ACCOUNT, connect_calls)):
        stats = egress.gateway.sim.account_stats(account.email)
        assert stats["requests"] >= 1 and stats["token_refreshes"] >= 1 and stats["load_code_assist"] >= 1, stats
        every_call = (stats["requests"] + stats["token_refreshes"] + stats["load_code_assist"]
                      + stats["onboard_user"] + stats["fetch_available_models"] + stats["count_tokens"])
        assert calls[account.email] == every_call, (account.email, calls, stats)
    # Nothing of any account came from the gateway's own address.
    assert egress.calls_from(GATEWAY_SOURCE) == {}, egress.peers()
    # The proxies' own counters: every connection the simulator saw from a proxy's address is a tunnel that
    # proxy opened to the simulator, authenticated.
    peers = egress.peers()
    sim_port = int(egress.gateway.sim.addr.rsplit(":", 1)[1])
    for proxy, source in ((egress.socks, SOCKS_SOURCE), (egress.connect, CONNECT_SOURCE)):
        assert proxy.tunnels >= 1 and proxy.refused_auth == 0, (proxy.kind, proxy.tunnels, proxy.refused_auth)
        assert peers[source]["connections"] == proxy.tunnels, (proxy.kind, peers[source], proxy.tunnels)
        assert all(t.endswith(f":{sim_port}") for t in proxy.targets), proxy.targets
    # socks5h: the proxy is handed the endpoint's name to resolve (SOCKS address type 3), never an address.
    assert egress.socks.address_types and set(egress.socks.address_types) == {3}, egress.socks.address_types
    accounts = egress.accounts()
    assert accounts[SOCKS_ACCOUNT.email]["egress"] == egress.socks.url
    assert "pass" not in str(accounts), "proxy credentials must never show"
    config = httpx.get(egress.gateway.admin_url + "/admin/config", timeout=10.0).json()
    shown = {a["email"]: a for a in config["accounts"]}[SOCKS_ACCOUNT.email]
    assert (shown["proxy"], shown["proxy_auth"], shown["min_interval_ms"]) == (egress.socks.url, "<set>", 500), shown
    assert "sock:pass" not in str(config) and "sockuser" not in str(config)
    assert metric(egress.gateway, "account_egress_up", account=SOCKS_ACCOUNT.email) == 1


def test_a_dead_proxy_takes_its_account_out_and_nothing_goes_direct(egress: Egress):
    egress.chat_ok(6)
    assert egress.calls_from(SOCKS_SOURCE).get(SOCKS_ACCOUNT.email, 0) >= 1, "the socks account served before"
    before = egress.gateway.sim.account_stats(SOCKS_ACCOUNT.email)
    socks_tunnels = egress.socks.tunnels

    egress.socks.stop()
    # Every request still succeeds, on the other account.
    egress.chat_ok(10)

    accounts = egress.accounts()
    assert accounts[SOCKS_ACCOUNT.email]["state"] == "egress_down", accounts[SOCKS_ACCOUNT.email]
    assert egress.socks.url.split("//")[1] in (accounts[SOCKS_ACCOUNT.email]["egress_down"] or "")
    assert accounts[CONNECT_ACCOUNT.email]["state"] != "egress_down"
    # The gateway did try the account (not vacuous): its attempts ended as egress_down ...
    attempts = metric(egress.gateway, "upstream_attempts_total", account=SOCKS_ACCOUNT.email, outcome="egress_down")
    assert attempts and attempts >= 1, egress.gateway.metrics()
    assert metric(egress.gateway, "account_egress_up", account=SOCKS_ACCOUNT.email) == 0
    # ... and not one call of it reached the simulator, through any path: zero direct connections.
    after = egress.gateway.sim.account_stats(SOCKS_ACCOUNT.email)
    assert after == before, (before, after)
    assert egress.calls_from(GATEWAY_SOURCE) == {}, egress.peers()
    assert egress.socks.tunnels == socks_tunnels

    # The proxy comes back: the probe (every 10 s) puts the account back, and it serves through the proxy.
    egress.socks.start()
    wait_until("the probe to bring the socks account back",
               lambda: egress.accounts()[SOCKS_ACCOUNT.email]["state"] != "egress_down", 30)
    served = egress.calls_from(SOCKS_SOURCE).get(SOCKS_ACCOUNT.email, 0)
    egress.chat_ok(6)
    assert egress.calls_from(SOCKS_SOURCE).get(SOCKS_ACCOUNT.email, 0) > served, egress.peers()
    assert egress.calls_from(GATEWAY_SOURCE) == {}, egress.peers()


def test_an_https_proxy_is_verified_before_it_carries_its_account(start_sim, tmp_path: Path, request,
                                                                  monkeypatch):
    from test_tls import make_ca, make_leaf

    ca = make_ca(tmp_path, "egress-ca")
    leaf = make_leaf(tmp_path, "egress-proxy", ca, 0xE6)
    other_ca = make_ca(tmp_path, "other-ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(leaf[0]), str(leaf[1]))
    proxy = ConnectProxy(CONNECT_SOURCE, tls=context).start()
    account = Account(email="tls-proxy@e2e.levitate", project_id="e2e-tls-proxy")
    sim = start_sim({"accounts": [account.sim_entry()]})
    entry = dict(account.gateway_entry(), proxy=proxy.url)
    gateways: list[Gateway] = []
    try:
        # The proxy's certificate is not from a trusted CA: the account goes egress_down and nothing is sent.
        monkeypatch.setenv("SSL_CERT_FILE", str(other_ca[0]))
        untrusting = egress_gateway(sim, tmp_path / "untrusting", [account], [entry])
        gateways.append(untrusting.start(untrusting.main_config))
        r = untrusting.chat("hello [sim:text]")
        assert r.status_code == 503, r.text
        shown = httpx.get(untrusting.admin_url + "/admin/accounts", timeout=10).json()["accounts"][0]
        assert shown["state"] == "egress_down" and "TLS" in shown["egress_down"], shown
        assert proxy.tunnels == 0
        assert sim.account_stats(account.email) == {}, "nothing of the account reached the sim"
        untrusting.stop()

        # Trusted: every call goes through the proxy's TLS, then CONNECT.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))
        trusting = egress_gateway(sim, tmp_path / "trusting", [account], [entry])
        gateways.append(trusting.start(trusting.main_config))
        for i in range(3):
            r = trusting.chat(f"hello #{i} [sim:text]")
            assert r.status_code == 200, r.text
        peers = sim.stats()["peers"]
        assert set(peers[CONNECT_SOURCE]["accounts"]) == {account.email}, peers
        assert peers.get(GATEWAY_SOURCE, {}).get("accounts", {}) == {}, peers
        assert peers[CONNECT_SOURCE]["connections"] == proxy.tunnels >= 1
    except BaseException:
        for gateway in gateways:
            print(gateway.logs())
        raise
    finally:
        for gateway in gateways:
            gateway.stop()
        proxy.close()


def test_tls_to_the_upstream_runs_end_to_end_inside_the_tunnel(start_sim, tmp_path: Path, request, monkeypatch):
    """The upstream speaks TLS (a stand-in for Google's front in front of the sim): the gateway's handshake,
    with its SNI and certificate check, runs inside the SOCKS tunnel, and the proxy only ever sees ciphertext
    to the endpoint's name."""
    from test_tls import make_ca, make_leaf

    ca = make_ca(tmp_path, "upstream-ca")
    leaf = make_leaf(tmp_path, "upstream", ca, 0x60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(leaf[0]), str(leaf[1]))
    account = Account(email="tls-upstream@e2e.levitate", project_id=None, declare_tier=False)
    sim = start_sim({"accounts": [account.sim_entry()]})
    front = TlsFront(int(sim.addr.rsplit(":", 1)[1]), context).start()
    socks = Socks5Proxy(SOCKS_SOURCE).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))  # the gateway trusts the stand-in's CA, and only it
    gateway = egress_gateway(sim, tmp_path / "tls-upstream", [account], [dict(account.gateway_entry(), proxy=socks.url)])
    gateway.main_config["upstream"].update(endpoints=[front.url], oauth_token_url=front.url + "/token")
    try:
        gateway.start(gateway.main_config)
        for i in range(3):
            r = gateway.chat(f"hello #{i} [sim:text]")
            assert r.status_code == 200, r.text
        stats = sim.account_stats(account.email)
        assert stats["requests"] == 3 and stats["token_refreshes"] == 1 and stats["load_code_assist"] >= 1, stats
        # Every TLS connection to the upstream came out of the proxy, named the host in its SNI ...
        assert front.peers and set(front.peers) == {SOCKS_SOURCE}, front.peers
        assert set(front.server_names) == {"localhost"}, front.server_names
        # ... and the proxy was asked for the endpoint by name and carried only that.
        assert set(socks.targets) == {f"localhost:{front.port}"}, socks.targets
        peers = sim.stats()["peers"]
        assert set(peers[SOCKS_SOURCE]["accounts"]) == {account.email}, peers
        assert peers.get(GATEWAY_SOURCE, {}).get("accounts", {}) == {}, peers
    except BaseException:
        print(gateway.logs())
        raise
    finally:
        gateway.stop()
        socks.close()
        front.close()


def test_each_account_presents_its_own_identity_and_keeps_it_across_a_restart(start_gateway):
    accounts = [Account(email="one@e2e.levitate", project_id="e2e-one"),
                Account(email="two@e2e.levitate", project_id="e2e-two")]
    gateway = start_gateway(accounts=accounts)

    def seen() -> dict:
        """What the simulator saw of each account's identity on its content calls."""
        out: dict = {}
        for r in gateway.sim.stats()["recent"]:
            headers = r["headers"]
            out.setdefault(r["account"], set()).add((r["user_agent"], headers.get("x-machine-id"),
                                                     headers.get("x-client-version")))
        return out

    for i in range(6):
        assert gateway.chat(f"hi #{i} [sim:text]").status_code == 200
    first = seen()
    assert set(first) == {a.email for a in accounts}, first
    for email, identities in first.items():
        assert len(identities) == 1, f"{email} changed identity between calls: {identities}"
        user_agent, machine_id, version = next(iter(identities))
        assert re.fullmatch(r"antigravity/1\.15\.8 (darwin|windows|linux)/(arm64|amd64)", user_agent), user_agent
        assert re.fullmatch(r"[0-9a-f]{64}", machine_id or ""), machine_id
        assert version == "1.15.8"
    one, two = (next(iter(first[a.email])) for a in accounts)
    assert one[1] != two[1], "two accounts must not share a machine id"
    shown = {a["email"]: a["identity"] for a in
             httpx.get(gateway.admin_url + "/admin/accounts", timeout=10).json()["accounts"]}
    assert shown["one@e2e.levitate"]["machine_id"] == one[1]
    assert shown["one@e2e.levitate"]["user_agent"] == one[0]

    gateway.restart()
    gateway.sim.reset_stats()
    for i in range(6):
        assert gateway.chat(f"again #{i} [sim:text]").status_code == 200
    assert seen() == first, "identities must survive a restart"


def test_a_bad_proxy_setting_is_refused_at_its_line(start_sim, tmp_path: Path):
    import subprocess

    from conftest import levitate_bin

    sim = start_sim()
    config_dir = tmp_path / "bad"
    config_dir.mkdir()
    (config_dir / "accounts.yaml").write_text(
        "accounts:\n  - email: a@e2e.levitate\n    refresh_token: r\n    proxy: socks5://user:secret@127.0.0.1:1080\n")
    (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    write_yaml(config_dir / "levitate.yaml", dict(main_config(sim), listen="127.0.0.1:0"))
    result = subprocess.run([str(levitate_bin()), "check", "-c", str(config_dir / "levitate.yaml")],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "accounts.yaml:4:" in output and "proxy_auth_env" in output, output
    assert "secret" not in output, output
