"""End-to-end harness: the real `levitate` binary in front of the real `levitate-sim` upstream simulator.

Nothing is built here: `scripts/test-all.sh` runs `cargo build --workspace --bins` first, and the binaries are
found through `LEVITATE_BIN` / `LEVITATE_SIM_BIN` or in `target/debug/`. Every process listens on 127.0.0.1,
writes its output to a file under the test's tmp_path (printed when the test fails), and is stopped on teardown
with SIGTERM, then SIGKILL. Every wait is bounded.

Fixtures:
- `start_sim(scenario=None)`  -> Sim         a simulator on a free port, optionally with a scenario (dict)
- `start_gateway(...)`        -> Gateway     a config folder in tmp_path and `levitate serve -c` on it
- `sim`, `gateway`                           the default pair: one pro account, conf/routes.yaml
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
API_KEY = "e2e-test-key"
STARTUP_TIMEOUT = 60.0  # a debug build with a cold sled store can take a while on 2 busy cores
STOP_TIMEOUT = 5.0


def _binary(env_var: str, name: str) -> Path:
    path = Path(os.environ.get(env_var) or REPO / "target" / "debug" / name)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"{name} binary not found at {path}: run `cargo build --workspace --bins` first "
                    f"(or set {env_var})", pytrace=False)
    return path


def levitate_bin() -> Path:
    return _binary("LEVITATE_BIN", "levitate")


def sim_bin() -> Path:
    return _binary("LEVITATE_SIM_BIN", "levitate-sim")


def free_port() -> int:
    """A loopback port that was free a moment ago (callers retry on EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_yaml(path: Path, document: Any, header: str = "") -> Path:
    """Writes `document` as YAML (JSON is a YAML subset, so no YAML library is needed)."""
    path.write_text(header + json.dumps(document, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Processes


_process_numbers = itertools.count(1)


class Process:
    """A child process whose stdout and stderr go to files, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = argv
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = next(_process_numbers)
        self.stdout_path = log_dir / f"{name}-{stamp}.stdout.log"
        self.stderr_path = log_dir / f"{name}-{stamp}.stderr.log"
        full_env = dict(os.environ)
        full_env.setdefault("LEVITATE_LOG", "info")
        full_env.setdefault("NO_COLOR", "1")  # plain logs in the files printed on failure
        full_env.update(env or {})
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          env=full_env, cwd=cwd or REPO)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self) -> str:
        return (f"----- {self.name}: {' '.join(self.argv)} (exit {self.popen.poll()})\n"
                f"----- stdout\n{self.stdout()}\n----- stderr\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signals the process, waits up to `timeout`, then kills it. Returns its exit code."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        return self.popen.returncode


def wait_until(what: str, check: Callable[[], Any], timeout: float, process: Process | None = None,
               interval: float = 0.05) -> Any:
    """Polls `check` until it returns a truthy value; fails with `what` (and the process log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process is not None and not process.alive():
            raise ProcessExited(f"{process.name} exited while waiting for {what}\n{process.logs()}")
        time.sleep(interval)
    logs = f"\n{process.logs()}" if process is not None else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{logs}")


class ProcessExited(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------------------------
# The simulator


class Sim:
    """A running levitate-sim and its test API (`/_sim/stats`, `/_sim/faults`)."""

    def __init__(self, process: Process, url: str, scenario: dict | None):
        self.process = process
        self.url = url
        self.addr = url.removeprefix("http://")
        self.scenario = scenario or {}
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def stats(self) -> dict:
        r = self.http.get("/_sim/stats")
        r.raise_for_status()
        return r.json()

    def account_stats(self, email: str) -> dict:
        """One account's counters; zeros when the sim has not seen the account yet."""
        return self.stats().get("accounts", {}).get(email, {})

    def reset_stats(self) -> None:
        self.http.post("/_sim/stats/reset").raise_for_status()

    def set_faults(self, rules: list[dict]) -> None:
        """Replaces the active fault rules (see loadtest/sim/README.md for the rule fields)."""
        r = self.http.post("/_sim/faults", json=rules)
        assert r.status_code < 300, f"sim refused fault rules {rules}: {r.status_code} {r.text}"

    def clear_faults(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def start_sim_process(log_dir: Path, scenario: dict | None = None) -> Sim:
    argv = [str(sim_bin()), "--listen", "127.0.0.1:0"]
    log_dir.mkdir(parents=True, exist_ok=True)
    if scenario is not None:
        path = write_yaml(log_dir / f"scenario-{time.monotonic_ns()}.yaml", scenario)
        argv += ["--config", str(path)]
    process = Process("levitate-sim", argv, log_dir)

    def listening() -> str | None:
        for line in process.stdout().splitlines():
            if "listening on http://" in line:
                return line.split("listening on ", 1)[1].strip()
        return None

    try:
        url = wait_until("levitate-sim to print its address", listening, STARTUP_TIMEOUT, process)
    except BaseException:
        process.stop()
        raise
    return Sim(process, url, scenario)


# ---------------------------------------------------------------------------------------------------------------
# Accounts and the gateway


@dataclasses.dataclass
class Account:
    """One Google account, known to both the sim (its scenario) and the gateway (accounts.yaml)."""

    email: str
    tier: str = "g1-pro-tier"
    # Written to the gateway's accounts.yaml; None makes the gateway discover it (loadCodeAssist).
    project_id: str | None = None
    declare_tier: bool = True
    max_concurrent: int | None = None
    # False: the sim has no project for it until the gateway runs onboardUser.
    onboarded: bool = True

    @property
    def refresh_token(self) -> str:
        return "1//e2e-" + hashlib.sha256(self.email.encode()).hexdigest()[:16]

    @property
    def sim_project(self) -> str:
        """The project the sim owns for this account (the gateway must use exactly this one)."""
        return self.project_id or "e2e-" + hashlib.sha256(self.email.encode()).hexdigest()[:10]

    def sim_entry(self) -> dict:
        return {"email": self.email, "refresh_token": self.refresh_token, "tier": self.tier,
                "project_id": self.sim_project, "onboarded": self.onboarded}

    def gateway_entry(self) -> dict:
        entry: dict[str, Any] = {"email": self.email, "refresh_token": self.refresh_token}
        if self.project_id is not None:
            entry["project_id"] = self.project_id
        if self.declare_tier:
            entry["tier"] = self.tier
        if self.max_concurrent is not None:
            entry["max_concurrent"] = self.max_concurrent
        return entry


def pro_account(name: str = "pro") -> Account:
    return Account(email=f"{name}@e2e.levitate", tier="g1-pro-tier", project_id=f"e2e-{name}-project")


class Gateway:
    """A running `levitate serve` and what a test needs to talk to it."""

    def __init__(self, config_dir: Path, sim: Sim, accounts: list[Account], log_dir: Path):
        self.config_dir = config_dir
        self.config_path = config_dir / "levitate.yaml"
        self.sim = sim
        self.accounts = accounts
        self.log_dir = log_dir
        self.api_key = API_KEY
        self.process: Process | None = None
        self.past_processes: list[Process] = []
        self.base_url = ""
        self.admin_url = ""
        self.main_config: dict = {}
        self._http: httpx.Client | None = None

    # -- lifecycle

    def start(self, main_config: dict, attempts: int = 3) -> "Gateway":
        """Writes levitate.yaml with fresh free ports and starts the gateway; retries when a port was taken."""
        self.main_config = main_config
        last_error: Exception | None = None
        for _ in range(attempts):
            listen, admin = free_port(), free_port()
            while admin == listen:
                admin = free_port()
            main = dict(main_config, listen=f"127.0.0.1:{listen}",
                        admin=dict(main_config.get("admin", {}), listen=f"127.0.0.1:{admin}"))
            write_yaml(self.config_path, main, "# written by tests/e2e/conftest.py\n")
            process = Process("levitate", [str(levitate_bin()), "serve", "-c", str(self.config_path)],
                              self.log_dir)
            self.process = process
            self.base_url = f"http://127.0.0.1:{listen}"
            self.admin_url = f"http://127.0.0.1:{admin}"
            try:
                wait_until("the gateway's GET /health", self._healthy, STARTUP_TIMEOUT, process)
                return self
            except ProcessExited as e:
                last_error = e
                self.process = None
                self.past_processes.append(process)
                if "address already in use" not in process.logs().lower():
                    raise
            except BaseException:
                process.stop()
                raise
        raise RuntimeError(f"the gateway could not bind free ports in {attempts} attempts: {last_error}")

    def _healthy(self) -> bool:
        try:
            r = httpx.get(self.base_url + "/health", timeout=2.0)
            return r.status_code == 200 and r.json() == {"status": "ok"}
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self) -> int | None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.process is None:
            return None
        code = self.process.stop()
        self.past_processes.append(self.process)
        self.process = None
        return code

    def restart(self) -> "Gateway":
        """Stops the gateway and starts it again on the same config folder (and so the same store)."""
        self.stop()
        return self.start(self.main_config)

    def logs(self) -> str:
        processes = self.past_processes + ([self.process] if self.process else [])
        return "\n".join(p.logs() for p in processes)

    # -- clients

    @property
    def http(self) -> httpx.Client:
        """A raw HTTP client with the API key set."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=60.0,
                                      headers={"Authorization": f"Bearer {self.api_key}"})
        return self._http

    def openai(self, **kwargs: Any):
        import openai

        kwargs.setdefault("timeout", 60.0)
        kwargs.setdefault("max_retries", 0)  # a retry would hide the gateway's first answer
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=kwargs.pop("api_key", self.api_key),
                             **kwargs)

    def chat(self, text: str = "Say hello", model: str = "gpt-4o", **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return self.http.post("/v1/chat/completions", json=body)

    def assert_serves(self) -> None:
        """A plain request still gets a normal answer (used after every bad request)."""
        r = self.chat("Are you still there?")
        assert r.status_code == 200, f"gateway stopped serving: {r.status_code} {r.text}"
        assert r.json()["choices"][0]["message"]["content"]

    # -- the upstream's view

    def stats(self) -> dict:
        return self.sim.stats()

    def set_faults(self, rules: list[dict]) -> None:
        self.sim.set_faults(rules)

    def clear_faults(self) -> None:
        self.sim.clear_faults()

    def metrics(self) -> str:
        r = httpx.get(self.admin_url + "/metrics", timeout=10.0)
        r.raise_for_status()
        return r.text

    def console_page(self, page: str, admin_key: str = "") -> str:
        """A web console page's HTML, after logging in as an operator would (the admin key; none configured
        on a loopback admin listener)."""
        login = httpx.post(self.admin_url + "/console/login", data={"key": admin_key}, timeout=10.0)
        assert login.status_code == 303, login.text
        r = httpx.get(f"{self.admin_url}/console/{page}", cookies={"levitate_console": login.cookies["levitate_console"]},
                      timeout=10.0)
        r.raise_for_status()
        return r.text


def main_config(sim: Sim, limits: dict | None = None, pool: dict | None = None, **overrides: Any) -> dict:
    config: dict[str, Any] = {
        "admin": {},
        "auth": {"api_keys": [{"name": "e2e", "key": API_KEY}]},
        "upstream": {
            "endpoints": [sim.url],
            "oauth_token_url": sim.url + "/token",
            "oauth_client_id": "levitate-e2e",
            "oauth_client_secret": "levitate-e2e-secret",
            "connect_timeout": "5s",
            "read_timeout": "60s",
        },
        "accounts_file": "accounts.yaml",
        "routes_file": "routes.yaml",
        "store": {"path": "./data"},
        "server": {"threads": 2, "grace_period": "1s"},
    }
    if limits:
        config["limits"] = limits
    if pool:
        config["pool"] = pool
    config.update(overrides)
    return config


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remembers each phase's report on the item so teardown knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def phase_failed(request) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


@pytest.fixture
def start_sim(tmp_path: Path, request) -> Iterator[Callable[..., Sim]]:
    sims: list[Sim] = []

    def start(scenario: dict | None = None) -> Sim:
        sim = start_sim_process(tmp_path / "logs", scenario)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()
        if phase_failed(request):
            print(sim.process.logs())


@pytest.fixture
def start_gateway(tmp_path: Path, start_sim, request) -> Iterator[Callable[..., Gateway]]:
    """Factory: `start_gateway(accounts=[...], routes=None|dict, limits=None|dict, pool=None|dict,
    sim=None|Sim, scenario=None|dict, server=None|dict)`. Without `sim`, a simulator is started whose scenario lists exactly
    the gateway's accounts (plus `scenario`'s other keys)."""
    gateways: list[Gateway] = []

    def start(accounts: list[Account] | None = None, routes: dict | None = None, limits: dict | None = None,
              pool: dict | None = None, sim: Sim | None = None, scenario: dict | None = None,
              server: dict | None = None, name: str | None = None) -> Gateway:
        accounts = accounts if accounts is not None else [pro_account()]
        if sim is None:
            sim = start_sim(dict(scenario or {}, accounts=[a.sim_entry() for a in accounts]))
        config_dir = tmp_path / (name or f"gateway-{len(gateways)}")
        config_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(config_dir / "accounts.yaml", {"accounts": [a.gateway_entry() for a in accounts]})
        if routes is None:
            (config_dir / "routes.yaml").write_text((REPO / "conf" / "routes.yaml").read_text())
        else:
            write_yaml(config_dir / "routes.yaml", routes)
        gateway = Gateway(config_dir, sim, accounts, tmp_path / "logs")
        gateways.append(gateway)
        config = main_config(sim, limits=limits, pool=pool)
        config["server"].update(server or {})
        return gateway.start(config)

    yield start
    for gateway in gateways:
        gateway.stop()
        if phase_failed(request):
            print(gateway.logs())


@pytest.fixture
def gateway(start_gateway) -> Gateway:
    """The everyday setup: one pro account with a known project, conf/routes.yaml."""
    return start_gateway()


@pytest.fixture
def sim(gateway) -> Sim:
    return gateway.sim


# ---------------------------------------------------------------------------------------------------------------
# Shared assertions


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    """The response is `status` with an OpenAI-shaped error body; returns the `error` object."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    try:
        body = response.json()
    except ValueError:
        pytest.fail(f"error body is not JSON: {response.text!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not an OpenAI error: {body}"
    error = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], f"error without a message: {body}"
    assert isinstance(error.get("type"), str) and error["type"], f"error without a type: {body}"
    for key in ("param", "code"):
        assert key in error, f"OpenAI errors carry {key!r} (may be null): {body}"
    return error
