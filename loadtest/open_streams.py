"""What an open stream costs the gateway in memory (issue 13, "open streams are cheap").

For each N (default 1000, 5000, 10000) it starts a fresh simulator and a fresh gateway (release builds), both on
loopback with their descriptor limit raised, then opens N OpenAI chat streams from raw asyncio sockets. The
simulator waits `INTER_CHUNK_MS` (2 s) between chunks, so every stream stays open for tens of seconds; each
client reads slowly but steadily (`READ_BYTES` every `READ_EVERY_S`), like a terminal printing tokens. The
gateway's VmRSS (/proc/PID/status) is sampled once a second: at idle (after one warm-up stream), at the moment
the most streams were open, and `SETTLE_S` (60 s) after the last stream ended. A stream counts as complete when
it answered 200 and its body ended with `data: [DONE]` and the closing chunk.

Usage: python3 loadtest/open_streams.py [N ...]
Environment: LEVITATE_BIN, LEVITATE_SIM_BIN (default $CARGO_TARGET_DIR/release/...), WORDS (filler words per
answer, 240: about 17 chunks, so ~35 s per stream), INTER_CHUNK_MS (2000), RAMP_PER_S (new connections per
second, 1000), READ_BYTES (2048), READ_EVERY_S (0.5), SETTLE_S (60), NOFILE (descriptor limit for the three
processes, 65536; raising it needs root or a hard limit that high), KEEP (keep the working folders), H2C=1
(`upstream.h2c: true`: the gateway speaks HTTP/2 to the simulator, as it does to Google over TLS, so the
upstream side is a few multiplexed connections instead of one HTTP/1.1 connection per stream), GATEWAY_CONFIG (a
JSON object merged into the gateway's configuration section by section, e.g.
`{"request_log": {"max_entries": 1}, "pool": {"affinity_capacity": 1}}` to see what the records a burst leaves
by configuration cost), PINGORA_FLOOR_BIN (a path, usually target/release/examples/pingora_floor: measure Pingora on
its own instead of the gateway, as a plain proxy with Levitate's server settings and no Levitate code, forwarding
a public-Gemini-API stream of the same simulator, the same chunks and pacing, unchanged; the floor under the
gateway's per-stream memory. Build it with `cargo build --release -p levitate-benches --example pingora_floor`).

Prints one table row per N; exits non-zero if any stream failed.

Each HTTP/1 stream costs the gateway two descriptors (client and upstream socket), and the gateway caps client
connections at (nofile - reserve) / 2 (docs/operations.md). Where the hard limit cannot be raised (a container
with a hard limit of 20,000 gives a cap of 9,488), a run above the cap gets 503s for the streams beyond it.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
KEY = "open-streams-key"
WORDS = int(os.environ.get("WORDS", "240"))
INTER_CHUNK_MS = int(os.environ.get("INTER_CHUNK_MS", "2000"))
RAMP_PER_S = int(os.environ.get("RAMP_PER_S", "1000"))
READ_BYTES = int(os.environ.get("READ_BYTES", "2048"))
READ_EVERY_S = float(os.environ.get("READ_EVERY_S", "0.5"))
SETTLE_S = int(os.environ.get("SETTLE_S", "60"))
NOFILE = int(os.environ.get("NOFILE", "65536"))
H2C = os.environ.get("H2C", "") not in ("", "0")
GATEWAY_CONFIG = json.loads(os.environ.get("GATEWAY_CONFIG", "{}"))
FLOOR_BIN = os.environ.get("PINGORA_FLOOR_BIN", "")
# The simulator's public Gemini API key, asked of the floor's clients (the floor forwards it unchanged).
FLOOR_API_KEY = "open-streams-floor-key"
# No stream may take longer than this (bounded loops everywhere).
STREAM_DEADLINE_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile() -> None:
    """Runs in each child before exec (and once for this process): the three of them hold N sockets each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(NOFILE, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Processes:
    """The simulator and the gateway of one run; stopped by pid, also after a failure."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, cwd: Path, **kw) -> subprocess.Popen:
        process = subprocess.Popen(args, stderr=open(log, "w"), cwd=cwd, preexec_fn=raise_nofile, **kw)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.started.clear()


def start_pair(work: Path, processes: Processes, n: int) -> tuple[int, int, str]:
    """Starts the simulator and the gateway; returns the gateway's pid, client port and the simulator's URL."""
    sim_bin = os.environ.get("LEVITATE_SIM_BIN", str(TARGET / "release/levitate-sim"))
    levitate = os.environ.get("LEVITATE_BIN", str(TARGET / "release/levitate"))
    accounts = [{"email": f"open{i}@sim.levitate", "refresh_token": f"1//open-{i}", "tier": "g1-pro-tier",
                 "project_id": f"open-project-{i}", "onboarded": True} for i in range(8)]
    (work / "scenario.yaml").write_text(json.dumps({"accounts": accounts, "public_api_key": FLOOR_API_KEY,
                                                    "latency": {"inter_chunk_ms": INTER_CHUNK_MS}}))
    sim = processes.start([sim_bin, "--listen", "127.0.0.1:0", "--config", str(work / "scenario.yaml")],
                          work / "sim.log", work, stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None
    sim_url = sim.stdout.readline().split("listening on ", 1)[1].strip()

    listen, admin = free_port(), free_port()
    if FLOOR_BIN:
        upstream = sim_url.removeprefix("http://").rstrip("/")
        floor = processes.start([FLOOR_BIN, "--listen", f"127.0.0.1:{listen}", "--upstream", upstream,
                                 *(["--h2c"] if H2C else [])], work / "floor.log", work, stdout=subprocess.DEVNULL)
        wait_for(floor, [listen], work / "floor.log")
        return floor.pid, listen, sim_url
    cap = n + 1000
    config = {
        "listen": f"127.0.0.1:{listen}",
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "auth": {"api_keys": [{"name": "open", "key": KEY}]},
        "upstream": {"endpoints": [sim_url], "oauth_token_url": sim_url + "/token", "oauth_client_id": "open",
                     "oauth_client_secret": "open-secret", **({"h2c": True} if H2C else {})},
        "accounts_file": "accounts.yaml",
        "routes_file": "routes.yaml",
        "store": {"path": "./data"},
        "pool": {"max_concurrent_per_account": cap // len(accounts) + 1, "quota_interval": "0s"},
        "limits": {"max_connections": cap, "max_connections_per_ip": cap},
        "server": {"grace_period": "1s", "pid_file": str(work / "levitate.pid"),
                   "upgrade_sock": str(work / "upgrade.sock")},
    }
    for section, value in GATEWAY_CONFIG.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    (work / "levitate.yaml").write_text(json.dumps(config, indent=2))
    (work / "accounts.yaml").write_text(json.dumps({"accounts": [
        {k: a[k] for k in ("email", "refresh_token", "tier", "project_id")} for a in accounts]}, indent=2))
    shutil.copy(REPO / "conf/routes.yaml", work / "routes.yaml")
    gateway = processes.start([levitate, "serve", "-c", str(work / "levitate.yaml")], work / "levitate.log", work,
                              stdout=subprocess.DEVNULL)
    wait_for(gateway, [admin, listen], work / "levitate.log")
    return gateway.pid, listen, sim_url


def wait_for(process: subprocess.Popen, ports: list[int], log: Path) -> None:
    """Until every port accepts a connection (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{process.args[0]} exited; see {log}")
            time.sleep(0.2)
    raise SystemExit(f"{process.args[0]} did not start within 60 s")


def sim_versions(sim_url: str) -> dict:
    """How the simulator was reached: requests per HTTP version and the HTTP/2 connections that carried them."""
    with urllib.request.urlopen(sim_url + "/_sim/stats", timeout=10) as r:
        stats = json.load(r)
    return {"http_versions": stats.get("http_versions"), "h2_connections": stats.get("h2_connections")}


def request(port: int, i: int, words: int) -> bytes:
    if FLOOR_BIN:
        return floor_request(port, i, words)
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [
        {"role": "user", "content": f"Tell a long story, number {i}. [sim:text] [sim:words={words}]"}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


def floor_request(port: int, i: int, words: int) -> bytes:
    """The same prompt as a public Gemini API stream: what the floor forwards to the simulator as it is."""
    body = json.dumps({"contents": [{"role": "user", "parts": [
        {"text": f"Tell a long story, number {i}. [sim:text] [sim:words={words}]"}]}]}).encode()
    return (f"POST /v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nx-goog-api-key: {FLOOR_API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def complete(head: bytes, tail: bytes, finished: bool) -> bool:
    """A 200 whose chunked body ended; the gateway's also with its closing chunk and `[DONE]`, the floor's
    (Google's own stream, forwarded) with an event that carried `finishReason`."""
    ended = head.startswith(b"HTTP/1.1 200") and tail.endswith(b"0\r\n\r\n")
    return ended and (finished if FLOOR_BIN else b"data: [DONE]" in tail)


class Counts:
    def __init__(self) -> None:
        self.open = 0
        self.peak_open = 0
        self.done = 0
        self.failed: list[str] = []


async def one_stream(port: int, i: int, counts: Counts, words: int) -> None:
    """One slow but steady client: reads `READ_BYTES` every `READ_EVERY_S` until the gateway closes."""
    head, tail = b"", b""
    opened, finished = False, False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        counts.failed.append(f"connect: {e}")
        return
    try:
        writer.write(request(port, i, words))
        await writer.drain()
        deadline = time.monotonic() + STREAM_DEADLINE_S
        while time.monotonic() < deadline:
            chunk = await reader.read(READ_BYTES)
            if not chunk:
                break
            if not opened:
                opened = True
                counts.open += 1
                counts.peak_open = max(counts.peak_open, counts.open)
            if len(head) < 64:
                head += chunk[: 64 - len(head)]
            finished = finished or b'"finishReason"' in tail[-16:] + chunk
            tail = (tail + chunk)[-64:]
            await asyncio.sleep(READ_EVERY_S)
    except OSError as e:
        counts.failed.append(f"read: {e}")
        return
    finally:
        if opened:
            counts.open -= 1
        writer.close()
    if complete(head, tail, finished):
        counts.done += 1
    else:
        counts.failed.append(f"answer: {head[:40]!r} … {tail[-40:]!r}")


async def burst(port: int, n: int, pid: int, samples: list[tuple[float, int, int]], words: int = WORDS) -> Counts:
    counts = Counts()
    started = time.monotonic()

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, counts.open, rss_kib(pid)))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    tasks = []
    batch = max(RAMP_PER_S // 10, 1)
    for first in range(0, n, batch):
        for i in range(first, min(first + batch, n)):
            tasks.append(asyncio.create_task(one_stream(port, i, counts, words)))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    sampler.cancel()
    return counts


def run_one(n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"levitate-open-streams-{n}-"))
    processes = Processes()
    try:
        pid, port, sim_url = start_pair(work, processes, n)
        warm = asyncio.run(burst(port, 1, pid, [], words=10))
        if warm.failed:
            raise SystemExit(f"warm-up stream failed: {warm.failed[0]}; see {work}")
        time.sleep(2)
        idle = rss_kib(pid)
        samples: list[tuple[float, int, int]] = []
        began = time.monotonic()
        counts = asyncio.run(burst(port, n, pid, samples))
        took = time.monotonic() - began
        peak_rss = max(rss for _, _, rss in samples)
        at_most_open = max(samples, key=lambda s: (s[1], s[2]))
        after = []
        for _ in range(SETTLE_S):
            time.sleep(1)
            after.append(rss_kib(pid))
        row = {
            "n": n, "completed": counts.done, "failed": len(counts.failed), "peak_open": counts.peak_open,
            "idle_kib": idle, "open_kib": at_most_open[2], "open_count": at_most_open[1], "peak_kib": peak_rss,
            "per_stream_kib": round((at_most_open[2] - idle) / max(at_most_open[1], 1), 1),
            "after_kib": after[-1], "after_ratio": round(after[-1] / idle, 2), "burst_s": round(took, 1),
            "first_failures": counts.failed[:3], "h2c": H2C, "floor": bool(FLOOR_BIN), "upstream": sim_versions(sim_url),
        }
        (work / "samples.json").write_text(json.dumps({"row": row, "samples": samples, "after": after}))
        return row
    finally:
        processes.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> int:
    raise_nofile()
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000, 10000]
    rows = []
    for n in sizes:
        row = run_one(n)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"upstream: {'h2c' if H2C else 'HTTP/1.1'}; measured: "
          f"{'Pingora on its own (' + FLOOR_BIN + ')' if FLOOR_BIN else 'the gateway'}")
    print("| open streams | completed / failed | idle RSS | RSS with streams open | per open stream "
          f"| RSS {SETTLE_S} s after | after / idle |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['open_count']:,} (of {r['n']:,}) | {r['completed']:,} / {r['failed']} | {mib(r['idle_kib'])} "
              f"| {mib(r['open_kib'])} | {r['per_stream_kib']} KiB | {mib(r['after_kib'])} | {r['after_ratio']}× |")
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
