"""The real Nginx (Debian package) run for a test: its prefix folder under the test's tmp dir, a config whose
`http` block the test writes, in the foreground and single-process so the test owns it, and ready once it
proxies `/health`. Used by the single-gateway tests (test_nginx.py) and the multi-instance ones
(test_cluster.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from conftest import Process, wait_until


def system_binary(name: str, fallback: str) -> str:
    """A Debian-packaged server binary; the test is skipped (with the package to install) when it is absent."""
    path = shutil.which(name) or (fallback if Path(fallback).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/test-all.sh installs the Debian package)")
    return path


def run_nginx(tmp_path: Path, port: int, http_block: str, worker_connections: int = 256) -> tuple[Process, str]:
    """Starts Nginx with `http_block` inside `http { … }` (after the temp paths and the access log) and waits
    until `http://127.0.0.1:<port>/health` answers 200 through it."""
    prefix = tmp_path / "nginx"
    for d in ("logs", "temp/body", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
{http_block}
}}
""")
    process = Process("nginx", [system_binary("nginx", "/usr/sbin/nginx"), "-p", str(prefix), "-c", str(conf)],
                      tmp_path / "logs")
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until("nginx to proxy /health", up, 20.0, process)
    return process, base
