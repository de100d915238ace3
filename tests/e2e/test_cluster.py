"""Several Levitate instances as one gateway (issue 12): three instances share state through a real
`redis-server`, behind a real Nginx doing round-robin, in front of one simulator.

- An OpenAI chat client (which cannot carry thoughtSignatures) runs a multi-turn thinking + tool conversation
  whose consecutive turns land on different instances (read from each instance's own log): the upstream must
  see its own signature back on every tool turn (simulator: zero sentinels, zero unknown signatures, no 400).
  The same conversation without `shared_state` is the control: there the signatures are lost.
- The anthropic SDK and Claude Code (headless) run thinking + tool conversations across the instances.
- Redis is killed and restarted under load: no client request fails, and every instance's
  `levitate_shared_state_up` goes to 0 and back to 1.
- A lockout or an opened breaker learned on one instance keeps the others off the account a second later; a
  new instance starts with the cluster's lockouts; `/admin/cluster` lists the instances.
- A 429 storm keeps each account's in-flight count within its cap for the three together; kill -9 of one
  instance gives its share back within the lease.
- An expiring token is refreshed once for the cluster; a key's rpm holds for the cluster.
Most have a control without `shared_state` that shows the test can fail.

Everything listens on loopback free ports; Redis runs with a temporary folder and no persistence.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from nginx_run import run_nginx, system_binary
from conftest import (API_KEY, REPO, Gateway, Process, free_port, main_config, pro_account, wait_until,
                      write_yaml)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
INSTANCES = 3
CAP = 3  # each account's max_concurrent: for the cluster as a whole


class Redis:
    """A `redis-server` on a free loopback port, without persistence; restartable on the same port."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = tmp_path / "logs"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def start(self) -> "Redis":
        argv = [system_binary("redis-server", "/usr/bin/redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.process = Process("redis", argv, self.log_dir)
        wait_until("redis to answer PING", self.ping, 20.0, self.process)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.popen.kill()
            self.process.popen.wait(timeout=5)


def start_nginx(tmp_path: Path, gateways: list[Gateway]) -> tuple[Process, str]:
    """Nginx round-robin over the instances, as docs/operations.md describes it (no session hashing, so
    consecutive turns of one conversation land on different instances)."""
    port = free_port()
    servers = "\n".join(f"        server {g.base_url.removeprefix('http://')} max_fails=1 fail_timeout=5s;"
                        for g in gateways)
    return run_nginx(tmp_path, port, f"""
    upstream levitate {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://levitate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }}
    }}
""", worker_connections=1024)


class Cluster:
    def __init__(self, gateways: list[Gateway], base: str, redis: Redis | None):
        self.gateways = gateways
        self.base = base
        self.redis = redis
        self.sim = gateways[0].sim

    def served(self) -> list[int]:
        """Model requests each instance has logged so far."""
        return [len(re.findall(r"operation=\"?(chat_completions|messages)", g.logs())) for g in self.gateways]

    def openai(self):
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=API_KEY, timeout=60.0, max_retries=0)

    def anthropic(self):
        import anthropic

        return anthropic.Anthropic(base_url=self.base, api_key=API_KEY, timeout=60.0, max_retries=0)

    def shared_up(self, gateway: Gateway) -> int | None:
        match = re.search(r"^levitate_shared_state_up (\d+)", gateway.metrics(), re.M)
        return int(match.group(1)) if match else None


@pytest.fixture
def start_cluster(tmp_path: Path, start_sim, request):
    started: list = []

    def start(shared: bool = True, scenario: dict | None = None, shared_extra: dict | None = None,
              upstream: dict | None = None, pool: dict | None = None, key_limits: dict | None = None) -> Cluster:
        accounts = [pro_account("c1"), pro_account("c2")]
        for a in accounts:
            a.max_concurrent = CAP
        sim = start_sim(dict(scenario or {}, accounts=[a.sim_entry() for a in accounts]))
        redis = Redis(tmp_path).start() if shared else None
        if redis:
            started.append(redis.process)
        gateways = []
        for i in range(INSTANCES):
            config_dir = tmp_path / f"instance-{i}"
            config_dir.mkdir(parents=True, exist_ok=True)
            write_yaml(config_dir / "accounts.yaml", {"accounts": [a.gateway_entry() for a in accounts]})
            (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
            gateway = Gateway(config_dir, sim, accounts, tmp_path / "logs")
            config = main_config(sim, pool=pool)
            config["upstream"].update(upstream or {})
            config["auth"]["api_keys"][0].update(key_limits or {})
            if redis:
                config["shared_state"] = {"redis_url": redis.url, "instance_id": f"instance-{i}",
                                          "timeout": "200ms", **(shared_extra or {})}
            started.append(gateway)
            gateways.append(gateway.start(config))
        nginx, base = start_nginx(tmp_path, gateways)
        started.append(nginx)
        cluster = Cluster(gateways, base, redis)
        if redis:
            wait_until("every instance to reach Redis", lambda: all(cluster.shared_up(g) == 1 for g in gateways),
                       20.0)
            wait_until("every instance to see the other two", lambda: all(
                httpx.get(g.admin_url + "/admin/cluster", timeout=5).json().get("live_instances") == INSTANCES
                for g in gateways), 10.0)
        return cluster

    yield start
    for thing in reversed(started):
        if thing is None:
            continue
        thing.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(thing.logs())


def replayed(sim) -> list[dict]:
    return [r["replayed_signatures"] for r in sim.stats()["recent"] if "replayed_signatures" in r]


def chat_tool_conversation(cluster: Cluster, turns: int) -> list[int]:
    """Runs `turns` thinking + tool round trips in one OpenAI chat conversation; returns which instance
    served each request, in order."""
    client = cluster.openai()
    messages: list = []
    served_by = []
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyiv"]

    def one(kind: str):
        before = cluster.served()
        reply = client.chat.completions.create(model="gemini-3-flash", messages=messages, tools=[WEATHER_TOOL],
                                               reasoning_effort="low")
        wait_until("the request's log line", lambda: sum(cluster.served()) > sum(before), 5.0)
        after = cluster.served()
        served_by.append(next(i for i in range(INSTANCES) if after[i] > before[i]))
        return reply

    for turn in range(turns):
        messages.append({"role": "user", "content": f"What is the weather in {cities[turn % len(cities)]}?"})
        first = one("call")
        assert first.choices[0].finish_reason == "tool_calls", first
        [call] = first.choices[0].message.tool_calls
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"forecast": f"sunny-{turn}"})})
        final = one("answer")
        assert f"sunny-{turn}" in (final.choices[0].message.content or ""), final
        messages.append({"role": "assistant", "content": final.choices[0].message.content})
    return served_by


def test_an_openai_chat_tool_conversation_keeps_its_signatures_across_instances(start_cluster):
    cluster = start_cluster(shared=True)
    served_by = chat_tool_conversation(cluster, turns=3)

    assert all(a != b for a, b in zip(served_by, served_by[1:])), f"consecutive turns on one instance: {served_by}"
    assert len(set(served_by)) == INSTANCES, served_by
    verdicts = replayed(cluster.sim)
    assert sum(v["sentinel"] for v in verdicts) == 0, verdicts
    assert sum(v["unknown"] for v in verdicts) == 0, verdicts
    # Turn n's requests replay n's own calls and every earlier one: each with the signature Google issued.
    assert sum(v["gemini"] for v in verdicts) >= 3, verdicts
    statuses = cluster.sim.stats()["totals"]["by_status"]
    assert set(statuses) == {"200"}, statuses


def test_without_shared_state_the_signatures_are_lost_across_instances(start_cluster):
    """The control: the same conversation through independent instances replays sentinels, which is what the
    shared state exists to avoid (and shows the test above can fail)."""
    cluster = start_cluster(shared=False)
    served_by = chat_tool_conversation(cluster, turns=2)

    assert all(a != b for a, b in zip(served_by, served_by[1:])), served_by
    verdicts = replayed(cluster.sim)
    assert sum(v["sentinel"] for v in verdicts) > 0, verdicts


def test_an_anthropic_sdk_tool_conversation_works_across_instances(start_cluster):
    cluster = start_cluster(shared=True)
    client = cluster.anthropic()
    messages: list = []
    served_by = []
    for turn, city in enumerate(["Paris", "Rome"]):
        messages.append({"role": "user", "content": f"What is the weather in {city}?"})
        for _ in range(2):
            before = cluster.served()
            reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=2048, messages=messages,
                                           tools=[ANTHROPIC_WEATHER_TOOL],
                                           thinking={"type": "enabled", "budget_tokens": 1024})
            wait_until("the request's log line", lambda: sum(cluster.served()) > sum(before), 5.0)
            after = cluster.served()
            served_by.append(next(i for i in range(INSTANCES) if after[i] > before[i]))
            messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
            uses = [b for b in reply.content if b.type == "tool_use"]
            if not uses:
                break
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": f"sunny-{turn}"}]})

    assert all(a != b for a, b in zip(served_by, served_by[1:])), served_by
    verdicts = replayed(cluster.sim)
    assert sum(v["sentinel"] for v in verdicts) == 0 and sum(v["unknown"] for v in verdicts) == 0, verdicts
    statuses = cluster.sim.stats()["totals"]["by_status"]
    assert set(statuses) == {"200"}, statuses


def test_a_redis_restart_under_load_fails_no_request_and_is_seen_in_the_metrics(start_cluster):
    cluster = start_cluster(shared=True)
    failures: list = []
    done = threading.Event()
    count = [0]

    def load():
        with httpx.Client(base_url=cluster.base, timeout=30.0,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            while not done.is_set():
                r = http.post("/v1/chat/completions", json={
                    "model": "gpt-4o", "messages": [{"role": "user", "content": "hello [sim:text]"}]})
                count[0] += 1
                if r.status_code != 200:
                    failures.append((r.status_code, r.text[:200]))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        cluster.redis.kill()
        wait_until("every instance to notice Redis is gone",
                   lambda: all(cluster.shared_up(g) == 0 for g in cluster.gateways), 10.0)
        # The console says it too, with the instance's place in the cluster.
        page = cluster.gateways[0].console_page("overview")
        assert 'id="cluster"' in page and "Redis unreachable: serving from local state" in page
        time.sleep(1.0)  # serving on local state meanwhile
        cluster.redis.start()
        wait_until("every instance to reconnect", lambda: all(cluster.shared_up(g) == 1 for g in cluster.gateways),
                   15.0)
        # Membership follows the heartbeats (one a second) after the reconnect.
        wait_until("the console to show the whole cluster again", lambda: all(
            s in cluster.gateways[1].console_page("overview") for s in ('id="cluster"', "Redis up", "of 3 live")), 5.0)
        time.sleep(1.0)
    finally:
        done.set()
        for w in workers:
            w.join(timeout=60)

    assert count[0] >= 20, f"too little load to judge: {count[0]} requests"
    assert failures == [], failures[:5]
    for g in cluster.gateways:
        logs = g.logs()
        assert "shared state (Redis) unreachable" in logs and logs.count("shared state (Redis) reachable") >= 2


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control"])
def test_a_lockout_learned_on_one_instance_stops_the_others_within_a_second(start_cluster, shared: bool):
    """c1 runs out of quota for ten minutes. Instance 0 learns it from a 429; a second later instances 1 and 2
    must not send c1 a single request. The control, without shared state: each hits the same 429 first."""
    cluster = start_cluster(shared=shared)
    c1 = cluster.gateways[0].accounts[0].email
    cluster.sim.set_faults([{"kind": "quota_exhausted", "account": c1, "delay_ms": 600_000, "sticky": True}])
    first = cluster.gateways[0]
    for i in range(10):
        assert first.chat(f"learn the lockout {i} [sim:text]").status_code == 200
        if cluster.sim.account_stats(c1).get("requests", 0) > 0:
            break
    assert cluster.sim.account_stats(c1).get("by_status", {}).get("429") == 1, cluster.sim.account_stats(c1)
    time.sleep(1.0)

    for gateway in cluster.gateways[1:]:
        for i in range(6):
            r = gateway.chat(f"elsewhere {i} [sim:text]")
            assert r.status_code == 200, r.text
    if not shared:
        assert cluster.sim.account_stats(c1).get("requests") == 3, cluster.sim.account_stats(c1)
        return
    assert cluster.sim.account_stats(c1).get("requests") == 1, "another instance sent c1 a request it knew would fail"
    for gateway in cluster.gateways[1:]:
        accounts = httpx.get(gateway.admin_url + "/admin/accounts", timeout=5).json()
        assert c1 in json.dumps(accounts) and "QUOTA" in json.dumps(accounts).upper(), accounts


def test_a_new_instance_starts_with_the_clusters_lockouts_and_admin_shows_the_cluster(start_cluster, tmp_path):
    cluster = start_cluster(shared=True)
    c1 = cluster.gateways[0].accounts[0].email
    cluster.sim.set_faults([{"kind": "quota_exhausted", "account": c1, "delay_ms": 600_000, "sticky": True}])
    for i in range(10):
        cluster.gateways[0].chat(f"learn {i} [sim:text]")
        if cluster.sim.account_stats(c1).get("requests", 0) > 0:
            break
    # A fourth instance with a fresh store: it learns c1's lockout from Redis, not from a 429.
    late = cluster.gateways[2]
    late.stop()
    shutil.rmtree(late.config_dir / "data", ignore_errors=True)
    config = dict(late.main_config, shared_state=dict(late.main_config["shared_state"], instance_id="instance-late"))
    late.start(config)
    wait_until("the new instance to reach Redis", lambda: cluster.shared_up(late) == 1, 20.0)
    time.sleep(0.5)
    for i in range(6):
        assert late.chat(f"fresh {i} [sim:text]").status_code == 200
    assert cluster.sim.account_stats(c1).get("requests") == 1, cluster.sim.account_stats(c1)

    view = httpx.get(late.admin_url + "/admin/cluster", timeout=5).json()
    assert view["enabled"] and view["up"] and view["instance"] == "instance-late", view
    assert "lockouts" in view["shares"] and "thought_signatures" in view["shares"], view
    seen = {i["instance"] for i in view.get("instances", [])}
    assert {"instance-0", "instance-1", "instance-late"} <= seen, view


class Load:
    """`threads` clients sending chat requests through `base` until stopped; counts outcomes."""

    def __init__(self, base: str, threads: int, text: str = "hello [sim:text]"):
        self.base, self.text = base, text
        self.ok = 0
        self.failures: list = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.workers = [threading.Thread(target=self.run) for _ in range(threads)]
        for w in self.workers:
            w.start()

    def run(self):
        with httpx.Client(base_url=self.base, timeout=60.0, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            while not self.done.is_set():
                try:
                    r = http.post("/v1/chat/completions", json={
                        "model": "gpt-4o", "messages": [{"role": "user", "content": self.text}]})
                    outcome = (r.status_code, r.text[:200]) if r.status_code != 200 else None
                except httpx.HTTPError as e:
                    outcome = ("transport", str(e))
                with self.lock:
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failures.append((time.monotonic(), outcome))

    def stop(self):
        self.done.set()
        for w in self.workers:
            w.join(timeout=90)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control"])
def test_a_429_storm_through_three_instances_keeps_each_accounts_cap_for_the_cluster(start_cluster, shared: bool):
    """18 clients through three instances, one upstream request in five a 429: the simulator's peak in-flight
    count per account stays within its cap for the three together, and clients barely notice the storm.
    The control, without shared state: each instance admits the whole cap, so the sum exceeds it."""
    # A busy pool queues (bounded by pool.max_wait) rather than failing; on a loaded debug box a queued request
    # can wait a few seconds, so the wait is long enough that busy never turns into a client error.
    cluster = start_cluster(shared=shared, pool={"max_wait": "30s"})
    cluster.sim.set_faults([{"kind": "slow_first_byte", "delay_ms": 150},
                            {"kind": "rate_limit", "probability": 0.2, "delay_ms": 300}])
    cluster.sim.reset_stats()
    load = Load(cluster.base, threads=18)
    try:
        time.sleep(8.0)
    finally:
        load.stop()

    stats = cluster.sim.stats()
    peaks = {email: a["peak_concurrency"] for email, a in stats["accounts"].items()}
    total = load.ok + len(load.failures)
    if not shared:
        assert max(peaks.values()) > CAP, peaks
        return
    assert all(peak <= CAP for peak in peaks.values()), f"over the cluster cap {CAP}: {peaks}"
    assert stats["totals"]["by_status"].get("429", 0) >= 10, f"no storm: {stats['totals']}"
    assert total >= 100, f"too little load to judge: {total}"
    assert load.ok / total >= 0.999, f"{len(load.failures)} of {total} failed: {load.failures[:5]}"


def account_caps(gateway: Gateway) -> dict:
    """Each account's cap on this instance now (its share of the cluster's), by email."""
    accounts = httpx.get(gateway.admin_url + "/admin/accounts", timeout=5).json()["accounts"]
    return {a["email"]: a["max_concurrent"] for a in accounts}


def test_a_killed_instance_gives_its_share_back_within_the_lease(start_cluster):
    """kill -9 of one instance under load: Nginx sends the traffic to the other two, and once the dead
    instance's heartbeat is older than the lease (3 s here) the survivors split each cap between them."""
    cluster = start_cluster(shared=True, shared_extra={"lease": "3s"})
    cluster.sim.set_faults([{"kind": "slow_first_byte", "delay_ms": 100}])

    survivors = cluster.gateways[1:]
    c1 = cluster.gateways[0].accounts[0].email
    # Every instance has seen the other two (shares follow the heartbeats, one a second).
    wait_until("the caps to be split three ways",
               lambda: sum(account_caps(g)[c1] for g in cluster.gateways) == CAP, 5.0)
    load = Load(cluster.base, threads=8)
    try:
        time.sleep(1.5)
        cluster.gateways[0].process.popen.kill()
        killed_at = time.monotonic()
        wait_until("the survivors to take the dead instance's share",
                   lambda: all(sum(account_caps(g)[a.email] for g in survivors) == CAP
                               for a in cluster.gateways[0].accounts),
                   3.0 + 5.0)
        released_after = time.monotonic() - killed_at
        cluster.sim.reset_stats()
        time.sleep(2.0)
    finally:
        load.stop()

    assert released_after <= 3.0 + 2.5, f"slots came back after {released_after:.1f}s (lease 3s)"
    views = [httpx.get(g.admin_url + "/admin/cluster", timeout=5).json() for g in survivors]
    assert all(v["live_instances"] == 2 for v in views), views
    peaks = {email: a["peak_concurrency"] for email, a in cluster.sim.stats()["accounts"].items()}
    assert all(peak <= CAP for peak in peaks.values()), peaks
    # Requests in flight on the killed instance may fail; after it, Nginx sends everything elsewhere.
    late = [f for f in load.failures if f[0] > killed_at + 1.0]
    assert late == [], late[:5]
    assert load.ok >= 30, load.ok


def test_an_instance_joining_under_load_takes_its_slots_only_as_the_others_give_them_back(start_cluster):
    """Slow requests saturate two instances while the third is away; it comes back with its own clients. The
    survivors hold each cap between them with requests in flight, so the newcomer may take its part only as
    they finish: the simulator's peak per account never exceeds the cap, and within a few seconds all three
    hold slots again. (Shares computed from the membership alone let the newcomer take its part at once while
    the others were still using theirs.)"""
    cluster = start_cluster(shared=True, shared_extra={"lease": "3s"})
    cluster.sim.set_faults([{"kind": "slow_first_byte", "delay_ms": 600}])
    joiner = cluster.gateways[2]

    joiner.stop()
    survivors = cluster.gateways[:2]
    emails = [a.email for a in joiner.accounts]
    wait_until("the survivors to hold every slot",
               lambda: all(sum(account_caps(g)[e] for g in survivors) == CAP for e in emails), 3.0 + 5.0)
    # Twice the slots' worth of clients on the survivors: every slot stays in use.
    through_nginx = Load(cluster.base, threads=4 * CAP)
    direct = None
    try:
        time.sleep(2.0)
        cluster.sim.reset_stats()
        joiner.start(joiner.main_config)
        direct = Load(joiner.base_url, threads=2 * CAP)
        wait_until("all three instances to hold slots",
                   lambda: all(sum(account_caps(g)[e] for g in cluster.gateways) == CAP for e in emails)
                   and all(sum(account_caps(g).values()) > 0 for g in cluster.gateways), 10.0)
        time.sleep(2.0)
    finally:
        through_nginx.stop()
        if direct:
            direct.stop()

    peaks = {email: a["peak_concurrency"] for email, a in cluster.sim.stats()["accounts"].items()}
    assert all(peak <= CAP for peak in peaks.values()), f"over the cluster cap {CAP}: {peaks}"
    assert max(peaks.values()) == CAP, f"the slots were not all in use, so the test proves nothing: {peaks}"
    assert direct.ok > 0 and direct.failures == [], (direct.ok, direct.failures[:3])


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control"])
def test_an_expiring_token_is_refreshed_once_for_the_whole_cluster(start_cluster, shared: bool):
    """Tokens live 8 s and are renewed 1 s ahead. Once they are due, a burst through all three instances at
    the same moment refreshes each account once for the cluster (the control: once per instance). The new
    tokens are due again only 7 s later, so even a slow burst on a loaded box sees one expiry."""
    cluster = start_cluster(shared=shared, scenario={"token_expires_in": 8},
                            upstream={"token_refresh_lead": "1s"}, pool={"quota_interval": "0s"})

    def burst(tag: str):
        def one(gateway: Gateway, i: int):
            r = gateway.chat(f"{tag} {i} [sim:text]")
            assert r.status_code == 200, r.text

        threads = [threading.Thread(target=one, args=(g, i)) for g in cluster.gateways for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    burst("warm")
    time.sleep(7.3)  # every token is now inside its refresh lead
    cluster.sim.reset_stats()
    burst("due")
    refreshes = {email: a.get("token_refreshes", 0) for email, a in cluster.sim.stats()["accounts"].items()}
    used = {email: n for email, n in refreshes.items() if n}
    assert used, refreshes
    if shared:
        assert all(n == 1 for n in used.values()), f"more than one refresh per account: {refreshes}"
    else:
        assert max(used.values()) > 1, refreshes


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control"])
def test_a_keys_rpm_holds_for_the_cluster(start_cluster, shared: bool):
    """rpm 6 through three instances round-robin: six requests a minute pass in all, two per instance (the
    control: six per instance)."""
    cluster = start_cluster(shared=shared, key_limits={"rpm": 6})
    with httpx.Client(base_url=cluster.base, timeout=30.0, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        codes = [http.post("/v1/chat/completions", json={
            "model": "gpt-4o", "messages": [{"role": "user", "content": f"count {i} [sim:text]"}]}).status_code
            for i in range(24)]
    expected = 6 if shared else 18
    assert codes.count(200) == expected and codes.count(429) == 24 - expected, codes


def test_usage_is_the_clusters_on_every_instance(start_cluster):
    """Each instance publishes its usage rows; `GET /admin/usage` on any instance sums all three (within the
    second or so the publishing takes), and `scope=instance` still shows one box's own."""
    cluster = start_cluster(shared=True)
    with httpx.Client(base_url=cluster.base, timeout=30.0, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        for i in range(9):
            r = http.post("/v1/chat/completions", json={
                "model": "gpt-4o", "messages": [{"role": "user", "content": f"usage {i} [sim:text]"}]})
            assert r.status_code == 200, r.text

    def requests(gateway: Gateway, scope: str) -> tuple[str, int]:
        answer = httpx.get(gateway.admin_url + "/admin/usage", params={"scope": scope}, timeout=10).json()
        return answer["scope"], sum(row["requests"] for row in answer["rows"])

    wait_until("every instance to show the cluster's 9 requests",
               lambda: all(requests(g, "cluster") == ("cluster", 9) for g in cluster.gateways), 10.0)
    own = [requests(g, "instance") for g in cluster.gateways]
    assert all(scope == "instance" for scope, _ in own)
    assert sum(n for _, n in own) == 9 and max(n for _, n in own) < 9, own
    # Redis gone: each instance answers from its own store, and says so.
    cluster.redis.kill()
    wait_until("every instance to notice Redis is gone",
               lambda: all(cluster.shared_up(g) == 0 for g in cluster.gateways), 10.0)
    assert [requests(g, "cluster") for g in cluster.gateways] == own


class _Front:
    """What the real-client helpers need of a gateway: its base URL (here, Nginx in front of the cluster)."""

    def __init__(self, base_url: str):
        self.base_url = base_url


def test_claude_code_runs_a_thinking_tool_conversation_across_instances(start_cluster, tmp_path: Path):
    """Claude Code (headless) through Nginx: its turns land on different instances; every upstream request is
    accepted and no signature was replaced by a sentinel or came from elsewhere."""
    from test_real_clients import api_exchanges, claude_code, explain

    cluster = start_cluster(shared=True)
    result, recorder, proc = claude_code(_Front(cluster.base), tmp_path, "What files are in this folder?",
                                         "--max-turns", "4")

    messages = api_exchanges(recorder, "/v1/messages")
    assert len(messages) >= 2 and all(e.status == 200 for e in messages), explain(proc, recorder)
    assert any(e.body_summary.get("n_messages", 0) >= 3 for e in messages), explain(proc, recorder)
    assert sum(1 for n in cluster.served() if n) >= 2, f"one instance served everything: {cluster.served()}"
    verdicts = replayed(cluster.sim)
    assert sum(v["sentinel"] for v in verdicts) == 0 and sum(v["unknown"] for v in verdicts) == 0, verdicts
    statuses = cluster.sim.stats()["totals"]["by_status"]
    assert set(statuses) == {"200"}, statuses


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "control"])
def test_a_breaker_opened_on_one_instance_rests_the_account_on_the_others(start_cluster, shared: bool):
    """c1 answers 500. Instance 0's breaker opens after two failures; a second later instances 1 and 2 do not
    send c1 a request (the control: each pays for its own failures first)."""
    cluster = start_cluster(shared=shared, pool={"breaker_failures": 2, "breaker_cooldown": "60s"})
    c1 = cluster.gateways[0].accounts[0].email
    cluster.sim.set_faults([{"kind": "server_error", "account": c1, "sticky": True}])
    for i in range(20):
        assert cluster.gateways[0].chat(f"open the breaker {i} [sim:text]").status_code == 200
        if cluster.sim.account_stats(c1).get("requests", 0) >= 2:
            break
    assert cluster.sim.account_stats(c1).get("requests") == 2, cluster.sim.account_stats(c1)
    time.sleep(1.0)
    for gateway in cluster.gateways[1:]:
        for i in range(6):
            assert gateway.chat(f"elsewhere {i} [sim:text]").status_code == 200
    after = cluster.sim.account_stats(c1).get("requests")
    if shared:
        assert after == 2, f"another instance sent c1 a request though its breaker is open: {after}"
    else:
        assert after > 2, after
