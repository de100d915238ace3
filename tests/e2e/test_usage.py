"""Usage accounting (docs/tenancy.md): every request lands in the hourly usage rows per key × client model ×
upstream model × account, with the tokens the upstream reported; `GET /admin/usage` sums them as JSON or CSV,
they survive a restart and a binary upgrade, `levitate_tokens_total{key,upstream_model,kind}` counts the
same tokens, and `levitate usage` prints them as a table.
"""

from __future__ import annotations

import csv
import io
import subprocess
import threading
import time
from pathlib import Path

import httpx

from conftest import API_KEY, Gateway, levitate_bin, pro_account, wait_until
from test_ops import metric, read_pid, start_ops_gateway, stop_pid


def usage(gateway: Gateway, query: str = "group_by=key,model", **headers: str) -> httpx.Response:
    r = httpx.get(f"{gateway.admin_url}/admin/usage?{query}", headers=headers, timeout=30.0)
    assert r.status_code == 200, r.text
    return r


def row(rows: list[dict], **labels: str) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, rows)
    return found[0]


def traffic(gateway: Gateway) -> dict:
    """Four OpenAI chats, two Anthropic messages, one Gemini call and one malformed request; returns the
    tokens the clients were told they used."""
    told = {"gpt-4o": [0, 0], "claude-sonnet-4-6": [0, 0], "gemini-3-flash": [0, 0]}
    for i in range(4):
        r = gateway.chat(f"usage test {i}")
        assert r.status_code == 200, r.text
        u = r.json()["usage"]
        told["gpt-4o"][0] += u["prompt_tokens"]
        told["gpt-4o"][1] += u["completion_tokens"]
    for i in range(2):
        r = httpx.post(gateway.base_url + "/v1/messages", timeout=60,
                       headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
                       json={"model": "claude-sonnet-4-6", "max_tokens": 200,
                             "messages": [{"role": "user", "content": f"hello {i}"}]})
        assert r.status_code == 200, r.text
        told["claude-sonnet-4-6"][0] += r.json()["usage"]["input_tokens"]
        told["claude-sonnet-4-6"][1] += r.json()["usage"]["output_tokens"]
    r = httpx.post(gateway.base_url + "/v1beta/models/gemini-3-flash:generateContent", timeout=60,
                   headers={"x-goog-api-key": API_KEY},
                   json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert r.status_code == 200, r.text
    meta = r.json()["usageMetadata"]
    told["gemini-3-flash"][0] += meta["promptTokenCount"]
    told["gemini-3-flash"][1] += meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0)
    bad = gateway.http.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    return told


def test_requests_show_in_admin_usage_as_json_and_csv_and_survive_a_restart(start_gateway):
    gateway = start_gateway()
    told = traffic(gateway)

    rows = usage(gateway).json()["rows"]
    for model, (input_tokens, output_tokens) in told.items():
        entry = row(rows, key="e2e", model=model)
        assert entry["requests"] == {"gpt-4o": 4, "claude-sonnet-4-6": 2, "gemini-3-flash": 1}[model], entry
        assert entry["errors"] == 0 and entry["input_tokens"] == input_tokens > 0, (entry, told)
        assert entry["output_tokens"] + entry["thinking_tokens"] == output_tokens > 0, (entry, told)
        assert entry["attempts"] == entry["requests"] and entry["ttfb_ms_avg"] is not None, entry
    failed = row(rows, key="e2e", model="-")
    assert (failed["requests"], failed["errors"], failed["errors_by_class"]) == (1, 1, {"invalid": 1}), failed

    by_account = usage(gateway, "group_by=key,upstream_model,account").json()["rows"]
    flash = row(by_account, upstream_model="gemini-3-flash", account="pro@e2e.levitate")
    assert flash["requests"] == 5, flash  # gpt-4o resolves to gemini-3-flash, plus the Gemini call

    for response in (usage(gateway, "group_by=key,model&format=csv"),
                     usage(gateway, "group_by=key,model", Accept="text/csv")):
        assert response.headers["content-type"].startswith("text/csv"), response.headers
        table = list(csv.DictReader(io.StringIO(response.text)))
        gpt = next(r for r in table if r["model"] == "gpt-4o")
        assert (gpt["key"], gpt["requests"], gpt["input_tokens"]) == ("e2e", "4", str(told["gpt-4o"][0])), gpt

    # The token metric counts the same tokens, labelled by key and upstream model.
    text = gateway.metrics()
    flash_in = told["gpt-4o"][0] + told["gemini-3-flash"][0]
    assert metric(text, "levitate_tokens_total", key="e2e", upstream_model="gemini-3-flash", kind="in") == flash_in
    assert metric(text, "levitate_tokens_total", key="e2e", upstream_model="claude-sonnet-4-6",
                  kind="in") == told["claude-sonnet-4-6"][0]

    before = usage(gateway, "group_by=key,model").json()["rows"]
    gateway.restart()
    assert usage(gateway, "group_by=key,model").json()["rows"] == before, "usage survives a restart"
    # And keeps counting on top of what was stored.
    assert gateway.chat("after the restart").status_code == 200
    assert row(usage(gateway).json()["rows"], key="e2e", model="gpt-4o")["requests"] == 5


def test_admin_usage_filters_by_time_and_refuses_bad_queries(gateway: Gateway):
    assert gateway.chat("one").status_code == 200
    assert row(usage(gateway, "group_by=key&from=1h").json()["rows"], key="e2e")["requests"] == 1
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    assert usage(gateway, f"group_by=key&from={future}&to={future}").json()["rows"] == []
    for bad in ("group_by=colour", "from=yesterday", "from=1h&to=2h"):
        r = httpx.get(f"{gateway.admin_url}/admin/usage?{bad}", timeout=10)
        assert r.status_code == 400 and r.json()["error"], (bad, r.text)


def test_levitate_usage_prints_a_table(gateway: Gateway):
    for _ in range(3):
        assert gateway.chat("for the table").status_code == 200
    result = subprocess.run([str(levitate_bin()), "usage", "-c", str(gateway.config_path), "--since", "7d",
                             "--group-by", "key,model"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage from "), result.stdout
    assert lines[1].split() == ["KEY", "MODEL", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "THINKING", "CACHED",
                                "TTFB_MS"], result.stdout
    assert lines[2].split()[:3] == ["e2e", "gpt-4o", "3"], result.stdout


def test_usage_recorded_by_the_old_process_of_an_upgrade_reaches_the_new_one(start_sim, tmp_path: Path):
    account = pro_account()
    sim = start_sim({"accounts": [account.sim_entry()], "latency": {"inter_chunk_ms": 60}})
    gateway = start_ops_gateway(tmp_path, sim, [account])
    old_pid = gateway.process.popen.pid
    new_pid = None
    try:
        assert wait_until("the pid file", lambda: read_pid(gateway) == old_pid, 10.0)
        for _ in range(2):
            assert gateway.chat("before the upgrade").status_code == 200
        # A stream that is still running when the upgrade hands the store over ends in the old process.
        done = threading.Event()

        def stream() -> None:
            with httpx.Client(timeout=60.0) as client:
                with client.stream("POST", gateway.base_url + "/v1/chat/completions",
                                   headers={"Authorization": f"Bearer {API_KEY}"},
                                   json={"model": "gpt-4o", "stream": True, "messages": [
                                       {"role": "user", "content": "long [sim:text] [sim:words=60]"}]}) as r:
                    assert r.status_code == 200
                    for _ in r.iter_lines():
                        pass
            done.set()

        reader = threading.Thread(target=stream)
        reader.start()
        time.sleep(0.5)
        result = subprocess.run([str(levitate_bin()), "upgrade", "-c", str(gateway.config_path), "--wait", "60s"],
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        new_pid = read_pid(gateway)
        assert new_pid and new_pid != old_pid
        reader.join(60)
        assert done.is_set()
        gateway.process.popen.wait(timeout=30)
        assert gateway.chat("after the upgrade").status_code == 200

        def all_four_counted() -> bool:
            rows = usage(gateway).json()["rows"]
            return any(r["model"] == "gpt-4o" and r["requests"] == 4 for r in rows)

        wait_until("the old process's usage in the new one", all_four_counted, 20.0)
    finally:
        gateway.stop()
        stop_pid(new_pid)
