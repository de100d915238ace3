"""Throughput and latency with and without `shared_state`, in one run (issue 12).

Starts the simulator, a redis-server (no persistence) and two gateways on free loopback ports, identical but for
`shared_state` (one account with a project, server.threads 2, quota polling off), then runs wrk (1 thread,
16 connections, 10 s) against each, alternating, twice, on a plain OpenAI chat request. Uses the e2e harness,
so LEVITATE_BIN / LEVITATE_SIM_BIN pick the binaries (debug by default; point them at a release build for
numbers comparable to the rest of docs/benchmarks.md).

Usage: python3 loadtest/compare_shared_state.py <scratch folder>     Needs: wrk, redis-server.
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
            out = subprocess.run(["wrk", "-t1", "-c16", "-d10s", "--latency", "-s", str(lua),
                                  gws[name].base_url + "/v1/chat/completions"], capture_output=True, text=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
            p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            results[name].append((rps, p50, p99, non2xx.group(1) if non2xx else "0"))
            print(name, rnd, rps, p50, p99, non2xx.group(1) if non2xx else 0, flush=True)
    m = gws["shared"].metrics()
    print([l for l in m.splitlines() if l.startswith("levitate_shared_state")])
finally:
    for g in gws.values(): g.stop()
    sim.stop(); redis.process.stop()
print(json.dumps(results))
