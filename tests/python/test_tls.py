"""The hub over TLS: wss:// and https:// with the certificate files of its config."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import websockets

REPO = Path(__file__).resolve().parents[2]
TLS = REPO / "tests" / "data" / "tls"


def start_tls_hub(tmp_path, cert: str):
    exe = os.environ.get("MADOGUCHI_HUB")
    if not exe:
        pytest.skip("MADOGUCHI_HUB is not set (path of the madoguchi-hub executable)")
    kb = os.environ.get("MADOGUCHI_KB") or str(REPO / "samples" / "kb" / "shop.json")
    with open(tmp_path / "hub.log", "wb") as log:
        return subprocess.Popen(
            [exe, "--kb", kb, "--store", str(tmp_path / "tls.db"), "--host", "127.0.0.1", "--port", "0",
             "--secret", "tls-test-secret-0123456789", "--agent", "sato:pw",
             "--tls-cert", str(TLS / cert), "--tls-key", str(TLS / "test-key.pem")],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=str(REPO))


@pytest.fixture
def tls_hub(tmp_path):
    proc = start_tls_hub(tmp_path, "test-cert.pem")
    try:
        line = proc.stdout.readline().decode()
        m = re.match(r"madoguchi-hub: listening on https://127\.0\.0\.1:(\d+)$", line.strip())
        assert m, f"unexpected first line: {line!r}"
        yield int(m.group(1))
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=15) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(TLS / "test-cert.pem"))
    return ctx


def test_wss_conversation_and_https_healthz(tls_hub):
    port = tls_hub
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=client_context(), timeout=10) as r:
        assert r.status == 200 and r.read() == b"ok\n"

    async def talk():
        async with websockets.connect(f"wss://127.0.0.1:{port}/v1/visitor", subprotocols=["madoguchi.v1"],
                                      ssl=client_context()) as ws:
            await ws.send(json.dumps({"v": 1, "type": "hello"}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert welcome["type"] == "welcome" and welcome["token"].startswith("v1.")
            await ws.send(json.dumps({"v": 1, "type": "message", "id": "tls-1", "text": "How much is shipping?"}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack == {"v": 1, "type": "ack", "id": "tls-1", "seq": 1, "duplicate": False}
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["from"] == "bot" and reply["bot"]["entry"] == "shipping-fee"

    asyncio.run(talk())


def test_plain_websocket_is_refused_on_a_tls_port(tls_hub):
    async def plain():
        async with websockets.connect(f"ws://127.0.0.1:{tls_hub}/v1/visitor", subprotocols=["madoguchi.v1"],
                                      open_timeout=5) as ws:
            await ws.send(json.dumps({"v": 1, "type": "hello"}))
            await asyncio.wait_for(ws.recv(), 5)

    with pytest.raises(Exception):
        asyncio.run(plain())


def test_metrics_show_when_the_certificate_expires(tls_hub):
    with urllib.request.urlopen(f"https://127.0.0.1:{tls_hub}/metrics", context=client_context(), timeout=10) as r:
        metrics = r.read().decode()
    # test-cert.pem: notAfter=Nov 22 05:40:48 2036 GMT
    expires = int(datetime.datetime(2036, 11, 22, 5, 40, 48, tzinfo=datetime.timezone.utc).timestamp())
    assert f"madoguchi_tls_certificate_not_after_seconds {expires}\n" in metrics, metrics


def test_an_expired_certificate_is_served_with_a_warning(tmp_path):
    proc = start_tls_hub(tmp_path, "expired-cert.pem")
    try:
        line = proc.stdout.readline().decode()
        assert re.match(r"madoguchi-hub: listening on https://127\.0\.0\.1:\d+$", line.strip()), line
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    log = (tmp_path / "hub.log").read_text()
    assert (f"warning TLS certificate {TLS / 'expired-cert.pem'} expired on 2021-01-01 00:00 UTC: browsers and "
            "clients refuse wss:// and https:// to this hub; renew it and restart the hub") in log, log


def test_a_certificate_that_expires_soon_is_warned_about(tmp_path):
    # openssl comes with ca-certificates (scripts/install-deps).
    cert = tmp_path / "soon-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-key", str(TLS / "test-key.pem"), "-out", str(cert), "-days", "10",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    proc = start_tls_hub(tmp_path, str(cert))
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("madoguchi-hub: listening on https://"), line
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    log = (tmp_path / "hub.log").read_text()
    assert re.search(rf"warning TLS certificate {re.escape(str(cert))} expires on \d{{4}}-\d\d-\d\d \d\d:\d\d UTC, "
                     r"in (9|10) days; renew it and restart the hub", log), log


@pytest.mark.parametrize("which, says", [
    ("other", "not the key of the certificate"),
    ("encrypted", "encrypted with a passphrase, which the hub cannot ask for"),
    ("missing", "cannot be read"),
])
def test_a_key_the_hub_cannot_use_stops_the_start_with_the_reason(tmp_path, which, says):
    # Each was reported as "cannot listen on 127.0.0.1:0 (is the port in use...)", and an
    # encrypted key stopped the start at a passphrase prompt.
    key = tmp_path / "key.pem"
    if which == "other":
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                       check=True, capture_output=True, timeout=60)
    elif which == "encrypted":
        subprocess.run(["openssl", "pkey", "-in", str(TLS / "test-key.pem"), "-aes256", "-passout", "pass:secret",
                        "-out", str(key)], check=True, capture_output=True, timeout=60)
    exe = os.environ.get("MADOGUCHI_HUB")
    if not exe:
        pytest.skip("MADOGUCHI_HUB is not set (path of the madoguchi-hub executable)")
    r = subprocess.run([exe, "--kb", str(REPO / "samples" / "kb" / "shop.json"), "--store", str(tmp_path / "k.db"),
                        "--port", "0", "--secret", "tls-test-secret-0123456789",
                        "--tls-cert", str(TLS / "test-cert.pem"), "--tls-key", str(key)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=str(REPO))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"TLS key {key}: {says}" in r.stderr, r.stderr
    assert r.stdout == ""
