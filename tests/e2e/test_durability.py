"""kill -9 loses nothing the gateway acknowledged: under load, the gateway is killed three times at random
moments just after it recorded new state, restarted on the same store, and every lockout, forbidden mark and
refreshed token written before each kill is still there.

Each round makes new state under load, then kills:
- a pro account's next request gets a 429 with an hour-long reset: a lockout (`/admin/accounts`);
- another pro account's next request gets a 403 TOS_VIOLATION: a forbidden mark;
- an ultra account (preferred, one slot) enabled in accounts.yaml while the gateway was down starts cold:
  its token is refreshed under load, and the simulator counts refreshes, so a token lost by the kill shows
  up as a second refresh after the restart.
The pro accounts have one slot each and the load keeps more requests in flight than there are pro slots, so
every pro account takes traffic. Nothing reloads the configuration during the test (a reload is how an
operator clears forbidden marks).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import random
import threading
import time

import httpx

from conftest import Account, Gateway, wait_until, write_yaml

ROUNDS = 3
MODEL = "gemini-3-flash"


@dataclasses.dataclass
class Dormant(Account):
    """An account written to accounts.yaml disabled until `awake` (set while the gateway is down)."""

    awake: bool = False

    def gateway_entry(self) -> dict:
        return dict(super().gateway_entry(), enabled=self.awake)


def round_accounts(k: int) -> tuple[Account, Account, Dormant]:
    return (Account(email=f"lock{k}@kill.e2e", tier="g1-pro-tier", project_id=f"kill-lock{k}", max_concurrent=1),
            Account(email=f"ban{k}@kill.e2e", tier="g1-pro-tier", project_id=f"kill-ban{k}", max_concurrent=1),
            Dormant(email=f"cold{k}@kill.e2e", tier="g1-ultra-tier", project_id=f"kill-cold{k}", max_concurrent=1,
                    awake=k == 0))


def admin_accounts(gw: Gateway) -> dict[str, dict]:
    r = httpx.get(gw.admin_url + "/admin/accounts", timeout=10.0)
    r.raise_for_status()
    return {a["email"]: a for a in r.json()["accounts"]}


class Load:
    """Client threads sending chat requests until stopped; failures while the gateway is down are expected."""

    def __init__(self, gw: Gateway, threads: int = 8):
        self.gw, self.stopping, self.served = gw, threading.Event(), 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self) -> None:
        with httpx.Client(timeout=10.0, headers={"Authorization": f"Bearer {self.gw.api_key}"}) as client:
            while not self.stopping.is_set():
                try:
                    r = client.post(self.gw.base_url + "/v1/chat/completions", json={
                        "model": MODEL, "messages": [{"role": "user", "content": "durable [sim:text]"}]})
                    if r.status_code == 200:
                        self.served += 1
                except httpx.HTTPError:
                    time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)


def kill_9(gw: Gateway) -> None:
    process = gw.process
    assert process is not None
    process.popen.kill()
    process.popen.wait(timeout=10)
    gw.past_processes.append(process)
    gw.process = None


def test_kill_9_under_load_loses_no_lockout_forbidden_mark_or_token(start_gateway):
    rng = random.Random()
    base = Account(email="base@kill.e2e", tier="free-tier", project_id="kill-base")
    rounds = [round_accounts(k) for k in range(ROUNDS)]
    gw = start_gateway(accounts=[base] + [a for r in rounds for a in r])
    load = Load(gw)
    lockouts: dict[str, int] = {}  # email -> until_ms acknowledged before a kill
    forbidden: dict[str, str] = {}  # email -> reason
    cold: list[str] = []
    try:
        for k, (lock, ban, warm) in enumerate(rounds):
            gw.set_faults([
                {"kind": "rate_limit", "account": lock.email, "model": MODEL, "times": 1, "delay_ms": 3_600_000},
                {"kind": "tos_violation", "account": ban.email, "times": 1},
            ])

            def acknowledged() -> bool:
                now = admin_accounts(gw)
                return (bool(now[lock.email]["lockouts"]) and now[ban.email]["state"] == "forbidden"
                        and gw.sim.account_stats(warm.email).get("by_status", {}).get("200", 0) > 0)

            wait_until(f"round {k}: a lockout, a forbidden mark and a fresh token", acknowledged, 30)
            now = admin_accounts(gw)
            lockouts[lock.email] = next(x["until_ms"] for x in now[lock.email]["lockouts"] if x["model"] == MODEL)
            forbidden[ban.email] = now[ban.email]["forbidden"]["reason"]
            cold.append(warm.email)
            assert gw.sim.account_stats(warm.email)["token_refreshes"] == 1

            time.sleep(rng.uniform(0.0, 0.3))  # a random moment, well inside sled's 0.5 s background flush
            kill_9(gw)
            gw.clear_faults()
            if k + 1 < ROUNDS:
                # The next round's cold account joins while the gateway is down: a start, not a reload.
                rounds[k + 1][2].awake = True
                write_yaml(gw.config_dir / "accounts.yaml", {"accounts": [a.gateway_entry() for a in gw.accounts]})
            gw.start(gw.main_config)

            after = admin_accounts(gw)
            for email, until_ms in lockouts.items():
                kept = [x for x in after[email]["lockouts"] if x["model"] == MODEL]
                assert kept and kept[0]["until_ms"] == until_ms, f"kill {k + 1}: lockout of {email} lost: {after[email]['lockouts']}"
            for email, reason in forbidden.items():
                assert after[email]["state"] == "forbidden", f"kill {k + 1}: forbidden mark of {email} lost"
                assert after[email]["forbidden"]["reason"] == reason
    finally:
        load.stop()

    # Every cold account serves again after the last restart, with the token it had before its kill.
    served_before = {e: gw.sim.account_stats(e).get("by_status", {}).get("200", 0) for e in cold}
    with httpx.Client(timeout=30.0, headers={"Authorization": f"Bearer {gw.api_key}"}) as client:
        def one(_: int) -> int:
            return client.post(gw.base_url + "/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "after the kills [sim:text]"}]}).status_code
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(cold)) as pool:
            statuses = list(pool.map(one, range(6 * len(cold))))
    assert all(s == 200 for s in statuses), statuses
    for email in cold:
        stats = gw.sim.account_stats(email)
        assert stats.get("by_status", {}).get("200", 0) > served_before[email], f"{email} was not used: {stats}"
        assert stats["token_refreshes"] == 1, f"{email}: its token was lost in a kill and refreshed again: {stats}"
    assert load.served > 0
