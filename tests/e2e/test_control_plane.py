"""A control-plane call that hangs (here: an OAuth token endpoint that accepts connections and never answers)
costs one `upstream.control_timeout`, not the minutes-long content read timeout, and then backs the account
off: the requests that follow fail over at once, and `/admin/accounts` shows why."""

from __future__ import annotations

import shutil
import socket
import time

import httpx

from conftest import Account


def test_a_silent_token_endpoint_costs_one_control_timeout_then_the_account_backs_off(start_gateway):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections; nobody ever reads or answers
    try:
        cold = Account(email="cold@control.e2e", tier="g1-pro-tier", project_id="control-cold")
        gw = start_gateway(accounts=[cold])
        gw.stop()
        # Its quota poll may have refreshed the token already: start again from an empty store.
        shutil.rmtree(gw.config_dir / "data", ignore_errors=True)
        config = dict(gw.main_config)
        config["upstream"] = dict(config["upstream"], control_timeout="1s", read_timeout="60s",
                                  oauth_token_url=f"http://127.0.0.1:{silent.getsockname()[1]}/token")
        gw.start(config)

        started = time.monotonic()
        first = gw.chat("hello")
        first_took = time.monotonic() - started
        assert first.status_code == 503, first.text
        assert first_took < 10, f"the refresh should end at control_timeout (1 s), took {first_took:.1f} s"

        r = httpx.get(gw.admin_url + "/admin/accounts", timeout=10.0)
        status = next(a for a in r.json()["accounts"] if a["email"] == cold.email)
        backoff = status["control_backoff"]
        assert backoff and backoff["failures"] == 1 and 0 < backoff["remaining_secs"] <= 30, status
        assert "did not answer within 1s" in backoff["reason"], backoff

        started = time.monotonic()
        second = gw.chat("hello again")
        assert second.status_code == 503, second.text
        assert time.monotonic() - started < 0.5, "a backed-off account fails over at once"
    finally:
        silent.close()
