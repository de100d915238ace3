"""TLS at the edge: the gateway and admin listeners terminate HTTPS themselves (rustls), offer HTTP/2 by ALPN,
optionally admit only clients whose certificate a configured CA signed (Cloudflare Authenticated Origin Pulls),
and pick up new certificate files on reload without dropping open connections.

Certificates are made by each test with the `openssl` CLI into its tmp_path: a test CA, server certificates
with known serials, and client certificates from a trusted and from a rogue CA.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, Gateway, main_config, pro_account, wait_until, write_yaml

# ---------------------------------------------------------------------------------------------------------------
# Certificates


def openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_leaf(folder: Path, name: str, ca: tuple[Path, Path], serial: int, client: bool = False) -> tuple[Path, Path]:
    """A certificate signed by `ca` with a known serial: (certificate, key). Server certificates name
    localhost and 127.0.0.1; client certificates are for clientAuth."""
    cert, key, csr, ext = (folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr",
                           folder / f"{name}.ext")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    usage = "clientAuth" if client else "serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                   f"extendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial", hex(serial),
            "-days", "2", "-out", str(cert), "-extfile", str(ext))
    return cert, key


def client_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Verifies the server against `ca` (only); presents `cert` when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def served_certificate(port: int, context: ssl.SSLContext) -> tuple[int, str]:
    """The serial and common name of the certificate a new handshake on `port` is given."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            peer = tls.getpeercert()
    subject = dict(pair[0] for pair in peer["subject"])
    return int(peer["serialNumber"], 16), subject["commonName"]


class TlsGateway(Gateway):
    """A gateway whose listener speaks HTTPS; health is checked through `context` (which may carry a client
    certificate when `client_ca` is set)."""

    context: ssl.SSLContext

    def start(self, main_config: dict, attempts: int = 3) -> "TlsGateway":
        super().start(main_config, attempts)
        self.base_url = self.base_url.replace("http://", "https://", 1)
        if "tls" in main_config.get("admin", {}):
            self.admin_url = self.admin_url.replace("http://", "https://", 1)
        return self

    def _healthy(self) -> bool:
        try:
            r = httpx.get(self.base_url.replace("http://", "https://", 1) + "/health", timeout=2.0,
                          verify=self.context)
            return r.status_code == 200 and r.json() == {"status": "ok"}
        except (httpx.HTTPError, ValueError):
            return False

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("verify", self.context)
        return httpx.Client(base_url=self.base_url, timeout=60.0,
                            headers={"Authorization": f"Bearer {API_KEY}"}, **kwargs)


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = make_ca(folder, "levitate-test-ca")
    return {"folder": folder, "ca": ca, "server": make_leaf(folder, "server-one", ca, 0x1001)}


@pytest.fixture
def start_tls_gateway(tmp_path: Path, start_sim, request):
    gateways: list[TlsGateway] = []

    def start(tls: dict, context: ssl.SSLContext, admin: dict | None = None,
              scenario: dict | None = None) -> TlsGateway:
        account = pro_account()
        sim = start_sim(dict(scenario or {}, accounts=[account.sim_entry()]))
        config_dir = tmp_path / f"gateway-{len(gateways)}"
        config_dir.mkdir()
        write_yaml(config_dir / "accounts.yaml", {"accounts": [account.gateway_entry()]})
        write_yaml(config_dir / "routes.yaml", {"default": "gemini-3-flash"})
        gateway = TlsGateway(config_dir, sim, [account], tmp_path / "logs")
        gateway.context = context
        gateways.append(gateway)
        return gateway.start(main_config(sim, tls=tls, admin=admin or {}))

    yield start
    for gateway in gateways:
        gateway.stop()
        if any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call")):
            print(gateway.logs())


def files(cert: tuple[Path, Path], client_ca: Path | None = None) -> dict:
    tls = {"cert": str(cert[0]), "key": str(cert[1])}
    if client_ca is not None:
        tls["client_ca"] = str(client_ca)
    return tls


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello [sim:text]"}]}


# ---------------------------------------------------------------------------------------------------------------
# Tests


def test_https_with_a_verified_certificate_and_http2_by_alpn(start_tls_gateway, pki: dict):
    context = client_context(pki["ca"][0])
    gateway = start_tls_gateway(files(pki["server"]), context,
                                admin={"tls": files(pki["server"])})

    with gateway.client() as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.http_version == "HTTP/1.1"
        assert r.json()["choices"][0]["message"]["content"]

    with gateway.client(http2=True) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.http_version == "HTTP/2", "h2 must be offered by ALPN"
        with client.stream("POST", "/v1/chat/completions", json=dict(CHAT, stream=True)) as s:
            assert s.status_code == 200 and s.http_version == "HTTP/2"
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]", events[-3:]

    assert served_certificate(gateway.port, context) == (0x1001, "server-one")

    # The certificate is really checked: a client trusting another CA refuses it.
    other_ca = make_ca(pki["folder"], "some-other-ca")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(gateway.base_url + "/health", verify=client_context(other_ca[0]), timeout=10)
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(httpx.TransportError):
        httpx.get(gateway.base_url.replace("https://", "http://") + "/health", timeout=10)

    # The admin listener speaks HTTPS too (admin.tls).
    assert gateway.admin_url.startswith("https://")
    r = httpx.get(gateway.admin_url + "/admin/health", verify=context, timeout=10)
    assert r.status_code == 200, r.text


def test_client_ca_admits_only_clients_with_a_certificate_it_signed(start_tls_gateway, pki: dict):
    folder = pki["folder"]
    origin_pull_ca = make_ca(folder, "origin-pull-ca")
    rogue_ca = make_ca(folder, "rogue-ca")
    good = make_leaf(folder, "edge-client", origin_pull_ca, 0x77, client=True)
    rogue = make_leaf(folder, "rogue-client", rogue_ca, 0x66, client=True)
    # A certificate the server CA signed is still not signed by client_ca.
    wrong_issuer = make_leaf(folder, "server-ca-client", pki["ca"], 0x55, client=True)

    gateway = start_tls_gateway(files(pki["server"], client_ca=origin_pull_ca[0]),
                                client_context(pki["ca"][0], good))

    with gateway.client() as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
    with gateway.client(http2=True) as client:
        r = client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200 and r.http_version == "HTTP/2", r.text

    for name, cert in [("no certificate", None), ("a rogue CA's", rogue), ("the server CA's", wrong_issuer)]:
        with pytest.raises(httpx.TransportError):
            with gateway.client(verify=client_context(pki["ca"][0], cert)) as client:
                r = client.post("/v1/chat/completions", json=CHAT)
                pytest.fail(f"a client with {name} certificate was answered: {r.status_code}")

    assert gateway.process.alive()
    with gateway.client() as client:
        assert client.get("/health").status_code == 200


def test_a_certificate_swapped_by_reload_serves_new_handshakes_and_keeps_open_streams(start_tls_gateway, pki: dict):
    folder = pki["folder"]
    context = client_context(pki["ca"][0])
    live_cert, live_key = folder / "live.pem", folder / "live.key"
    shutil.copy(pki["server"][0], live_cert)
    shutil.copy(pki["server"][1], live_key)
    gateway = start_tls_gateway({"cert": str(live_cert), "key": str(live_key)}, context,
                                scenario={"latency": {"inter_chunk_ms": 60}})
    assert served_certificate(gateway.port, context) == (0x1001, "server-one")

    events: list[str] = []
    started = threading.Event()
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            with gateway.client() as client:
                body = {"model": "gpt-4o", "stream": True,
                        "messages": [{"role": "user", "content": "long [sim:text] [sim:words=120]"}]}
                with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    assert r.status_code == 200
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            events.append(line)
                            started.set()
        except BaseException as e:  # reported by the main thread
            failure.append(e)
            started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(30) and not failure, failure

    # certbot-style renewal: new files in place, then a reload (SIGHUP, as `systemctl reload` sends).
    renewed = make_leaf(folder, "server-two", pki["ca"], 0x2002)
    shutil.copy(renewed[0], live_cert)
    shutil.copy(renewed[1], live_key)
    os.kill(gateway.process.popen.pid, signal.SIGHUP)
    wait_until("the renewed certificate on new handshakes",
               lambda: served_certificate(gateway.port, context) == (0x2002, "server-two"), 15.0)
    assert reader.is_alive(), "the stream should still be running when the certificate changes"
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200

    reader.join(60)
    assert not reader.is_alive() and not failure, failure
    assert events[-1] == "data: [DONE]", f"the open stream was cut by the reload: {events[-3:]}"

    # A broken certificate is refused by the reload, with the file and line; the last good one stays.
    live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    r = httpx.post(gateway.admin_url + "/admin/reload", timeout=30)
    report = r.json()
    assert report["ok"] is False, report
    assert f"{live_cert}:1: not valid PEM" in report["error"] and "tls.cert" in report["error"], report
    assert served_certificate(gateway.port, context) == (0x2002, "server-two")
    # A key that belongs to another certificate is refused too.
    shutil.copy(pki["server"][0], live_cert)
    report = httpx.post(gateway.admin_url + "/admin/reload", timeout=30).json()
    assert report["ok"] is False and "do not belong together" in report["error"], report
    assert served_certificate(gateway.port, context) == (0x2002, "server-two")
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
