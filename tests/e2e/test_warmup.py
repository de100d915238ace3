"""Warmup (issue 11, opt-in `warmup:`): one minimal request per account and model family per slot, so quota
windows start when the operator chooses; bounded (never retried), logged, counted in
`levitate_warmup_total{account,family,outcome}` and shown per account in the admin API. Driven here through
the admin trigger `POST /admin/warmup` (the schedule's slots are minutes apart)."""

from __future__ import annotations

import httpx

from conftest import Account

FAMILIES = {"gemini": "gemini-3-flash", "claude": "claude-sonnet-4-6"}


def accounts() -> list[Account]:
    return [Account(email=f"{n}@e2e.levitate", project_id=f"e2e-{n}-project") for n in ("one", "two")]


def start(start_gateway, warmup: dict | None):
    gw = start_gateway(accounts=accounts())
    if warmup is not None:
        gw.stop()
        gw.start(dict(gw.main_config, warmup=warmup))
    gw.sim.reset_stats()
    return gw


def trigger(gw) -> httpx.Response:
    return httpx.post(gw.admin_url + "/admin/warmup", timeout=60)


def content_requests(gw) -> list[tuple[str, str]]:
    return sorted((r["account"], r["model"]) for r in gw.sim.stats()["recent"] if r.get("model"))


def test_one_request_per_account_and_family(start_gateway):
    gw = start(start_gateway, {"at": ["04:00"], "families": ["gemini", "claude"]})
    r = trigger(gw)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["trigger"] == "admin"
    assert sorted((x["account"], x["family"], x["outcome"]) for x in report["results"]) == [
        (a.email, f, "ok") for a in accounts() for f in sorted(FAMILIES)]
    assert content_requests(gw) == sorted((a.email, m) for a in accounts() for m in FAMILIES.values())

    last = httpx.get(gw.admin_url + "/admin/warmup", timeout=10).json()["accounts"]
    assert set(last) == {a.email for a in accounts()}
    assert all(len(run["results"]) == 2 and run["trigger"] == "admin" for run in last.values())
    metrics = gw.metrics()
    for a in accounts():
        for family in FAMILIES:
            assert f'levitate_warmup_total{{account="{a.email}",family="{family}",outcome="ok"}} 1' in metrics
    assert gw.logs().count("warmup request") == 4


def test_a_refused_warmup_is_not_retried(start_gateway):
    gw = start(start_gateway, {"families": {"flash": "gemini-3-flash"}})
    one, two = accounts()
    gw.set_faults([{"kind": "rate_limit", "account": one.email}])
    report = trigger(gw).json()
    outcomes = {x["account"]: x["outcome"] for x in report["results"]}
    assert outcomes == {one.email: "rate_limited", two.email: "ok"}, report
    assert content_requests(gw) == [(one.email, "gemini-3-flash"), (two.email, "gemini-3-flash")]
    assert f'levitate_warmup_total{{account="{one.email}",family="flash",outcome="rate_limited"}} 1' in gw.metrics()
    # The console's accounts table shows each account's last round.
    page = gw.console_page("accounts")
    assert "last warmup" in page
    assert '<span class="error">flash rate_limited</span>' in page and '<span class="ok">flash ok</span>' in page


def test_off_by_default(start_gateway):
    gw = start(start_gateway, None)
    r = trigger(gw)
    assert r.status_code == 409 and "warmup" in r.json()["error"]
    assert content_requests(gw) == []
    assert httpx.get(gw.admin_url + "/admin/warmup", timeout=10).json() == {"accounts": {}}
