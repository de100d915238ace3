"""Throughput and latency with and without `shared_state`, in one run (issue 12).

Starts the simulator, a redis-server (no persistence) and two gateways on free loopback ports, identical but for
`shared_state` (one account with a project, server.threads 2, quota polling off), then runs wrk (1 thread,
16 connections, 10 s) against each, alternating, twice, on a plain OpenAI chat request. Prints req/s, client
p50/p99, and the gateway's own overhead p50/p99 over each run (`levitate_gateway_overhead_seconds`, the time
not spent waiting for upstream, interpolated inside the histogram's buckets). Uses the e2e harness,
so LEVITATE_BIN / LEVITATE_SIM_BIN pick the binaries (debug by default; point them at a release build for
numbers comparable to the rest of docs/benchmarks.md).

Usage: python3 loadtest/compare_shared_state.py <scratch folder>     Needs: wrk, redis-server.
       DURATION=10s (wrk's -d for each run)
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import conftest
from conftest import Account, Gateway, main_config, start_sim_process, write_yaml, REPO, API_KEY
from test_cluster import Redis

OVERHEAD = re.compile(r'^levitate_gateway_overhead_seconds_bucket\{protocol="openai",route="chat_completions",'
                      r'le="([^"]+)"\} (\d+)', re.M)


def overhead_buckets(gateway) -> list[tuple[float, int]]:
    return [(float(le), int(n)) for le, n in OVERHEAD.findall(gateway.metrics())]


def quantile(before, after, q: float) -> str:
    """The q-quantile of the observations between two scrapes, in microseconds (as histogram_quantile)."""
    before = before or [(le, 0) for le, _ in after]  # no request yet: the series did not exist
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = counts[-1][1] if counts else 0
    if total == 0:
        return "-"
    rank, lower, below = q * total, 0.0, 0
    for le, n in counts:
        if n >= rank:
            if le == float("inf"):
                return f">{lower * 1e6:.0f}"
            return f"{(lower + (le - lower) * (rank - below) / max(n - below, 1)) * 1e6:.0f}"
        lower, below = le, n
    return "-"


DURATION = __import__('os').environ.get('DURATION', '10s')
tmp = Path(sys.argv[1]); tmp.mkdir(parents=True, exist_ok=True)
acc = Account(email="bench@e2e.levitate", tier="g1-pro-tier", project_id="bench-project", max_concurrent=256)
sim = start_sim_process(tmp / "logs", {"accounts": [acc.sim_entry()]})
redis = Redis(tmp).start()
gws = {}
for name, shared in (("local", False), ("shared", True)):
    d = tmp / name; d.mkdir(exist_ok=True)
    write_yaml(d / "accounts.yaml", {"accounts": [acc.gateway_entry()]})
    (d / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
    g = Gateway(d, sim, [acc], tmp / "logs")
    cfg = main_config(sim, pool={"quota_interval": "0s"})
    cfg["server"]["threads"] = 2
    if shared:
        cfg["shared_state"] = {"redis_url": redis.url, "instance_id": "bench"}
    gws[name] = g.start(cfg)
time.sleep(2)
lua = tmp / "post.lua"
lua.write_text('wrk.method = "POST"\nwrk.body = \'{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello [sim:text]"}]}\'\n'
               'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' % API_KEY)
results = {"local": [], "shared": []}
try:
    for rnd in range(2):
        for name in ("local", "shared"):
            before = overhead_buckets(gws[name])
            out = subprocess.run(["wrk", "-t1", "-c16", "-d" + DURATION, "--latency", "-s", str(lua),
                                  gws[name].base_url + "/v1/chat/completions"], capture_output=True, text=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
            p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            after = overhead_buckets(gws[name])
            over = (quantile(before, after, 0.5), quantile(before, after, 0.99))
            results[name].append((rps, p50, p99, non2xx.group(1) if non2xx else "0", *over))
            print(name, rnd, f"{rps} req/s, p50 {p50}, p99 {p99}, non-2xx {non2xx.group(1) if non2xx else 0},",
                  f"overhead p50 {over[0]} us, p99 {over[1]} us", flush=True)
    m = gws["shared"].metrics()
    print([l for l in m.splitlines() if l.startswith("levitate_shared_state")])
finally:
    for g in gws.values(): g.stop()
    sim.stop(); redis.process.stop()
print(json.dumps(results))
