"""Drives loadtest/reload-under-load.js: the simulator, the gateway, k6, and meanwhile 50 configuration reloads and
3 binary upgrades. Exits non-zero if k6's thresholds fail (a failed request or a cut stream), if any reload was
refused, or if an upgrade did not hand over. Run it with `bash scripts/reload-under-load.sh`.

Environment: LEVITATE_BIN, LEVITATE_SIM_BIN, K6 (paths); DURATION (k6 duration, default 240s); RELOADS (50);
UPGRADES (3); STREAMS, RATE, WORDS (passed to k6).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
KEY = "load-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"reload-under-load: timed out waiting for {what}")


STARTED: list[subprocess.Popen] = []
PIDS: list[int] = []


def cleanup() -> None:
    """Stops every process this run started, by pid (also after a failure)."""
    for pid in reversed(PIDS):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for process in reversed(STARTED):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    try:
        return run()
    finally:
        cleanup()


def run() -> int:
    levitate = os.environ.get("LEVITATE_BIN", str(REPO / "target/debug/levitate"))
    sim_bin = os.environ.get("LEVITATE_SIM_BIN", str(REPO / "target/debug/levitate-sim"))
    k6 = os.environ.get("K6", "k6")
    duration = os.environ.get("DURATION", "240s")
    reloads = int(os.environ.get("RELOADS", "50"))
    upgrades = int(os.environ.get("UPGRADES", "3"))
    seconds = int(duration.rstrip("s"))
    work = Path(tempfile.mkdtemp(prefix="levitate-reload-under-load-"))
    print(f"working folder: {work}")

    accounts = [{"email": f"load{i}@sim.levitate", "refresh_token": f"1//load-{i}", "tier": "g1-pro-tier",
                 "project_id": f"load-project-{i}", "onboarded": True} for i in range(4)]
    (work / "scenario.yaml").write_text(json.dumps({"accounts": accounts, "latency": {"inter_chunk_ms": 120}}))
    sim_log = open(work / "sim.log", "w")
    sim = subprocess.Popen([sim_bin, "--listen", "127.0.0.1:0", "--config", str(work / "scenario.yaml")],
                           stdout=subprocess.PIPE, stderr=sim_log, text=True)
    STARTED.append(sim)
    sim_url = sim.stdout.readline().split("listening on ", 1)[1].strip()

    listen, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    main_config = {
        "listen": f"127.0.0.1:{listen}",
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "auth": {"api_keys": [{"name": "load", "key": KEY}]},
        "upstream": {"endpoints": [sim_url], "oauth_token_url": sim_url + "/token", "oauth_client_id": "load",
                     "oauth_client_secret": "load-secret", "read_timeout": "60s"},
        "store": {"path": "./data"},
        "pool": {"max_concurrent_per_account": 16},
        "server": {"grace_period": "120s", "pid_file": str(work / "levitate.pid"),
                   "upgrade_sock": str(work / "upgrade.sock")},
    }
    (work / "levitate.yaml").write_text(json.dumps(main_config, indent=2))
    (work / "accounts.yaml").write_text(json.dumps({"accounts": [
        {k: a[k] for k in ("email", "refresh_token", "tier", "project_id")} for a in accounts]}, indent=2))
    routes = (REPO / "conf/routes.yaml").read_text()
    (work / "routes.yaml").write_text(routes)

    gateway_log = open(work / "levitate.log", "w")
    gateway = subprocess.Popen([levitate, "serve", "-c", str(work / "levitate.yaml")], stdout=gateway_log,
                               stderr=gateway_log, cwd=work)
    STARTED.append(gateway)
    pids = PIDS
    pids.append(gateway.pid)
    health = lambda: httpx.get(admin + "/admin/health", timeout=5).json()  # noqa: E731
    wait_for("the gateway", lambda: health()["status"] == "ok", 60)

    env = dict(os.environ, BASE_URL=f"http://127.0.0.1:{listen}", API_KEY=KEY, DURATION=duration)
    k6_run = subprocess.Popen([k6, "run", "--quiet", "--summary-export", str(work / "k6-summary.json"),
                               str(REPO / "loadtest/reload-under-load.js")], env=env)
    STARTED.append(k6_run)

    ok_reloads = 0
    refused = 0
    upgraded = 0
    time.sleep(5)
    window = max(seconds - 20, 10)
    upgrade_at = {round(reloads * (i + 1) / (upgrades + 1)) for i in range(upgrades)}
    for i in range(reloads):
        before = health()
        kind = ("file", "signal", "admin")[i % 3]
        if kind == "file":
            text = routes.replace("gpt-4o-mini: gemini-2.5-flash", f"gpt-4o-mini: gemini-2.5-flash  # reload {i}")
            temp = work / ".routes.yaml.tmp"
            temp.write_text(text)
            os.replace(temp, work / "routes.yaml")
        elif kind == "signal":
            os.kill(before["pid"], signal.SIGHUP)
        else:
            r = httpx.post(admin + "/admin/reload", timeout=10)
            assert r.status_code == 200, r.text
        after = wait_for(f"reload {i + 1} ({kind})",
                         lambda: (h := health())["config"]["generation"] > before["config"]["generation"] and h,
                         15)
        if after["config"]["last_reload"]["ok"]:
            ok_reloads += 1
        else:
            refused += 1
            print(f"reload {i + 1} refused: {after['config']['last_reload']['error']}")
        if i + 1 in upgrade_at:
            old = health()["pid"]
            result = subprocess.run([levitate, "upgrade", "-c", str(work / "levitate.yaml"), "--wait", "60s"],
                                    capture_output=True, text=True, timeout=90)
            print(result.stdout.strip() or result.stderr.strip())
            new = wait_for("the new process on the admin listener", lambda: (p := health()["pid"]) != old and p, 30)

            def old_gone() -> bool:
                if old == gateway.pid:
                    return gateway.poll() is not None  # our child: reap it
                try:
                    # Gone, or a zombie waiting for whoever inherited it.
                    return Path(f"/proc/{old}/stat").read_text().split(") ", 1)[1].startswith("Z")
                except OSError:
                    return True

            # The old process accepts for 5 more seconds, then drains its streams and exits.
            wait_for("the old process to drain and exit", old_gone, 150)
            pids.append(new)
            upgraded += 1
        time.sleep(window / reloads)

    k6_code = k6_run.wait(timeout=seconds + 180)
    final = health()
    metrics = httpx.get(admin + "/metrics", timeout=10).text
    cleanup()

    summary = json.loads((work / "k6-summary.json").read_text())
    m = summary["metrics"]
    report = {
        "reloads_ok": ok_reloads,
        "reloads_refused": refused,
        "upgrades": upgraded,
        "pids": pids,
        "final_pid": final["pid"],
        "requests": m["http_reqs"]["count"],
        "failed_rate": m["http_req_failed"]["value"],
        "streams_completed": m["streams_completed"]["count"],
        "streams_cut": m.get("streams_cut", {}).get("count", 0),
        "checks_passed": m["checks"]["passes"],
        "checks_failed": m["checks"]["fails"],
        "http_req_duration_ms": {k: round(v, 1) for k, v in m["http_req_duration"].items()},
        "k6_exit": k6_code,
    }
    print(json.dumps(report, indent=2))
    good = (k6_code == 0 and refused == 0 and ok_reloads == reloads and upgraded == upgrades
            and report["failed_rate"] == 0 and report["streams_cut"] == 0)
    print("reload-under-load: PASSED" if good else "reload-under-load: FAILED")
    if "levitate_requests_total" not in metrics:
        print("warning: the final process exposed no request metrics")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
