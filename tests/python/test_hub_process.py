"""The madoguchi-hub process around the protocol: its secrets, files and start-up checks
(docs/hub.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import AGENTS, REPO_ROOT, SECRET
from madoguchi_spec_client import AgentClient, ProtocolError, VisitorClient


def hub_exe() -> str:
    exe = os.environ.get("MADOGUCHI_HUB")
    if not exe:
        pytest.skip("MADOGUCHI_HUB is not set (path of the madoguchi-hub executable)")
    return exe


def kb_path() -> str:
    return os.environ.get("MADOGUCHI_KB") or str(REPO_ROOT / "samples" / "kb" / "shop.json")


def wait_for_log(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log = path.read_text("utf-8", "replace") if path.exists() else ""
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_secrets_given_as_flags_are_hidden_from_ps_and_warned_about(hub):
    cmdline = Path(f"/proc/{hub.pid}/cmdline").read_bytes().split(b"\0")
    assert SECRET.encode() not in cmdline
    for name, password in AGENTS.items():
        assert f"{name}:{password}".encode() not in cmdline
        assert f"{name}:{'*' * len(password)}".encode() in cmdline
    assert b"*" * len(SECRET) in cmdline
    # The hashed account's flag is no secret and stays as it was.
    assert any(arg.startswith(b"tanaka:$scrypt$") for arg in cmdline)
    log = wait_for_log(hub.log_path, "secret on the command line")
    assert "a secret on the command line (--agent sato:PASSWORD, --agent suzuki:PASSWORD, --secret)" in log, log


def test_a_short_secret_file_stops_the_start_and_is_kept(tmp_path):
    store = tmp_path / "hub.db"
    secret_file = tmp_path / "hub.db.secret"
    secret_file.write_text("too-short\n")
    r = subprocess.run([hub_exe(), "--kb", kb_path(), "--store", str(store), "--port", "0"],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "hub.db.secret: the token secret is 9 bytes on its first line; it needs at least 16" in r.stderr
    assert "delete the file to have a new one made" in r.stderr
    assert secret_file.read_text() == "too-short\n"
    assert r.stdout == ""  # never said it was listening


def test_static_files_behind_a_link_out_of_the_folder_are_refused(hub, tmp_path):
    site = tmp_path / "site"
    (site / "widget").mkdir(parents=True)
    (site / "index.html").write_text("<h1>shop</h1>\n")
    (site / "widget" / "app.js").write_text("console.log('widget');\n")
    (site / "app.js").symlink_to(site / "widget" / "app.js")  # inside: served
    outside = tmp_path / "private.txt"
    outside.write_text("not for the web\n")
    (site / "private.txt").symlink_to(outside)
    (site / "up").symlink_to(tmp_path, target_is_directory=True)
    hub.config = {"static": str(site)}
    hub.restart(kill=False)

    def get(path: str):
        try:
            with urllib.request.urlopen(hub.http_url + path, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""

    assert get("/") == (200, b"<h1>shop</h1>\n")
    assert get("/widget/app.js") == (200, b"console.log('widget');\n")
    assert get("/app.js") == (200, b"console.log('widget');\n")
    assert get("/private.txt")[0] == 404
    assert get("/up/private.txt")[0] == 404
    assert get("/healthz") == (200, b"ok\n")
    log = wait_for_log(hub.log_path, "refused static file /up/private.txt")
    for path in ("/private.txt", "/up/private.txt"):
        assert f"refused static file {path}: a symbolic link takes it outside the static folder" in log, log


def test_a_missing_static_folder_stops_the_start(tmp_path):
    r = subprocess.run([hub_exe(), "--kb", kb_path(), "--store", str(tmp_path / "hub.db"), "--port", "0",
                        "--secret", SECRET, "--static", str(tmp_path / "no-such-site")],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "static: " + str(tmp_path / "no-such-site") + ": No such file or directory" in r.stderr, r.stderr


async def origin_accepted(port, origin) -> bool:
    """Whether a visitor connection with this Origin header is let in."""
    v = VisitorClient(f"ws://127.0.0.1:{port}")
    try:
        await v.connect(10, headers={"Origin": origin})
    except Exception:
        return False
    await v.disconnect()
    return True


def refused_start(tmp_path, *args) -> str:
    """A hub started with `args` that must stop at once: its standard error."""
    r = subprocess.run([hub_exe(), "--kb", kb_path(), "--store", str(tmp_path / "hub.db"), "--port", "0",
                        "--secret", SECRET, *args],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""  # never said it was listening
    return r.stderr


@pytest.mark.parametrize("host, says", [
    ("192.0.2.77", "host 192.0.2.77 is not an address of this machine"),
    ("127.0.0.1:8080", 'host "127.0.0.1:8080" is not an IP address or a network interface of this machine'),
    ("shop.example", 'host "shop.example" is not an IP address'),
    ("", "host is empty"),
])
def test_a_host_it_cannot_listen_on_stops_the_start(tmp_path, host, says):
    # libwebsockets takes such a host as an interface that does not exist: the hub said it
    # was listening and listened nowhere.
    err = refused_start(tmp_path, "--host", host)
    assert says in err and "give 127.0.0.1 for this machine only" in err, err


def test_origins_are_compared_as_browsers_send_them(tmp_path):
    # "https://Shop.example.com/" once matched no browser at all, without a word.
    proc, port = start_hub(tmp_path, "--origin", "https://Shop.example.com/", "--origin", "http://localhost:8080")

    async def check():
        assert await origin_accepted(port, "https://shop.example.com")
        assert await origin_accepted(port, "https://shop.example.com:443")
        assert await origin_accepted(port, "http://localhost:8080")
        assert not await origin_accepted(port, "https://evil.example")
        assert not await origin_accepted(port, "null")

    asyncio.run(check())
    stop_hub(proc)


@pytest.mark.parametrize("origin, says", [
    ("shop.example.com", "has no scheme"),
    ("https://shop.example.com/chat", "has a path"),
])
def test_an_origin_that_could_never_match_stops_the_start(tmp_path, origin, says):
    err = refused_start(tmp_path, "--origin", origin)
    assert f'origin "{origin}" {says}' in err and "write it as browsers send it" in err, err


def test_an_origin_flag_replaces_the_config_files_list(tmp_path):
    # Flags override the file: an --origin meant to narrow the list once widened it.
    proc, port = start_hub(tmp_path, "--origin", "https://b.example", config={"origins": ["https://a.example"]})

    async def check():
        assert await origin_accepted(port, "https://b.example")
        assert not await origin_accepted(port, "https://a.example")

    asyncio.run(check())
    stop_hub(proc)


@pytest.mark.parametrize("content, says", [
    ('{"port": 0,}', "malformed JSON: The JSON document has an improper structure"),
    ('{"port": 0, "port": 1}', '"port" is given twice; keep one of them'),
    ('[1]', 'the config is one JSON object'),
])
def test_a_config_file_that_is_not_right_says_why(tmp_path, content, says):
    # All three once said "not a JSON object", and a key given twice went through.
    cfg = tmp_path / "hub.json"
    cfg.write_text(content)
    r = subprocess.run([hub_exe(), "--config", str(cfg), "--kb", kb_path(), "--store", str(tmp_path / "hub.db")],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert r.returncode == 1 and f"{cfg}: {says}" in r.stderr, r.stderr


def test_a_config_file_may_start_with_a_byte_order_mark(tmp_path):
    proc, port = start_hub(tmp_path, config={"secret": SECRET})
    stop_hub(proc)
    (tmp_path / "own.json").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "own.json").read_bytes())
    r = subprocess.Popen([hub_exe(), "--config", str(tmp_path / "own.json"), "--kb", kb_path(), "--store",
                          str(tmp_path / "own.db"), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT))
    assert r.stdout.readline().decode().startswith("madoguchi-hub: listening on"), "a BOM stopped the start"
    stop_hub(r)


def test_static_files_of_modern_pages_get_their_type_and_may_be_cached(tmp_path):
    # A module script, a WebAssembly file or a source map was answered 415, and every file
    # was sent with no-store, so the widget was downloaded again at every page view.
    site = tmp_path / "site"
    site.mkdir()
    files = {"widget.mjs": "text/javascript", "engine.wasm": "application/wasm", "widget.mjs.map": "application/json",
             "logo.webp": "image/webp", "index.html": "text/html"}
    for name in files:
        (site / name).write_bytes(b"x")
    proc, port = start_hub(tmp_path, "--static", str(site))
    for name, mime in files.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith(mime), (name, dict(r.headers))
            assert "max-age=60" in r.headers["Cache-Control"] and r.headers["ETag"], dict(r.headers)
    stop_hub(proc)


def test_verbose_logs_connections(tmp_path):
    # --verbose once changed nothing at all.
    proc, port = start_hub(tmp_path, "--verbose")

    async def hello():
        v = VisitorClient(f"ws://127.0.0.1:{port}")
        await v.connect(10)
        await v.hello(timeout=10)
        await v.disconnect()

    asyncio.run(hello())
    wait_for_log(tmp_path / "own.log", "from 127.0.0.1: connection closed")
    stop_hub(proc)
    log = (tmp_path / "own.log").read_text()
    assert "debug visitor connection from 127.0.0.1" in log, log


def test_a_network_interface_may_be_named(tmp_path):
    proc, port = start_hub(tmp_path, "--host", "lo", expect_host="lo")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert r.status == 200
    stop_hub(proc)


def test_localhost_is_127_0_0_1(tmp_path):
    proc, port = start_hub(tmp_path, "--host", "localhost", expect_host="localhost")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert r.status == 200
    stop_hub(proc)


def start_hub(tmp_path, *args, config=None, expect_host="127.0.0.1"):
    """A hub of its own (not the fixture's), on a free port; returns (process, port)."""
    cmd = [hub_exe(), "--kb", kb_path(), "--store", str(tmp_path / "own.db"), "--port", "0"]
    if config is not None:
        (tmp_path / "own.json").write_text(json.dumps(config))
        cmd += ["--config", str(tmp_path / "own.json")]
    log = open(tmp_path / "own.log", "ab")
    proc = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            cwd=str(REPO_ROOT))
    log.close()
    line = proc.stdout.readline().decode()
    m = re.match(r"madoguchi-hub: listening on http://" + re.escape(expect_host) + r":(\d+)$", line.strip())
    if not m:
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}: {(tmp_path / 'own.log').read_text()}")
    return proc, int(m.group(1))


def stop_hub(proc):
    proc.terminate()
    assert proc.wait(timeout=15) == 0


async def visitor_hello(port, forwarded_for, address="127.0.0.1"):
    v = VisitorClient(f"ws://127.0.0.1:{port}")
    await v.connect(10, local_addr=(address, 0), headers={"X-Forwarded-For": forwarded_for})
    try:
        await v.send({"type": "hello"})
        return await v.recv(10)
    finally:
        await v.disconnect()


def dual_stack_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not dual_stack_available(), reason="this machine cannot listen on :: for IPv4 and IPv6")
def test_a_dual_stack_hub_matches_an_ipv4_trusted_proxy_and_reads_ports_in_the_header(tmp_path):
    # Listening on "::", an IPv4 client shows as ::ffff:127.0.0.1: it must still be the proxy
    # 127.0.0.1 of trusted_proxies. "203.0.113.5:4711" and "[2001:db8::5]:443" are clients with
    # a port; 2001:db8::6 is in the same /64 as 2001:db8::5.
    proc, port = start_hub(tmp_path, "--secret", SECRET, "--host", "::",
                           config={"trusted_proxies": ["127.0.0.1"], "new_conversations_per_minute": 1,
                                   "new_conversations_burst": 1})
    try:
        async def run():
            assert (await visitor_hello(port, "203.0.113.5:4711"))["type"] == "welcome"
            refused = await visitor_hello(port, "198.51.100.1, 203.0.113.5")
            assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
            assert (await visitor_hello(port, "[2001:db8::5]:443"))["type"] == "welcome"
            refused = await visitor_hello(port, "2001:db8::6")
            assert refused["code"] == "rate_limited", refused
            unreadable = await visitor_hello(port, "198.51.100.1, not-an-address")
            assert unreadable["type"] == "welcome", unreadable  # one unknown client: its first
            assert (await visitor_hello(port, "junk"))["code"] == "rate_limited"

        asyncio.run(run())
    finally:
        stop_hub(proc)
    log = (tmp_path / "own.log").read_text()
    assert "new conversations from 203.0.113.5 are over 1 a minute" in log, log
    assert "new conversations from 2001:db8::/64 are over 1 a minute" in log, log
    assert "X-Forwarded-For from the trusted proxy 127.0.0.1 names no address" in log, log


def test_forwarded_for_from_a_proxy_not_trusted_is_ignored_and_said_once(tmp_path):
    proc, port = start_hub(tmp_path, "--secret", SECRET)
    try:
        async def run():
            for i in range(3):
                assert (await visitor_hello(port, f"203.0.113.{i}"))["type"] == "welcome"

        asyncio.run(run())
    finally:
        stop_hub(proc)
    log = (tmp_path / "own.log").read_text()
    assert log.count("connections from 127.0.0.1 carry X-Forwarded-For, which is ignored") == 1, log


def test_a_static_folder_switched_by_a_deploy_is_checked_where_it_points_now(tmp_path):
    deploy = tmp_path / "deploy"
    for release in ("rel1", "rel2"):
        (deploy / release).mkdir(parents=True)
        (deploy / release / "index.html").write_text(f"{release}\n")
    (tmp_path / "outside.txt").write_text("not for the web\n")
    (deploy / "rel2" / "leak.txt").symlink_to(tmp_path / "outside.txt")
    (deploy / "current").symlink_to(deploy / "rel1", target_is_directory=True)
    proc, port = start_hub(tmp_path, "--secret", SECRET, "--static", str(deploy / "current"))

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""

    try:
        assert get("/") == (200, b"rel1\n")
        (deploy / "next").symlink_to(deploy / "rel2", target_is_directory=True)
        os.replace(deploy / "next", deploy / "current")  # the usual atomic switch
        assert get("/") == (200, b"rel2\n")
        assert get("/leak.txt")[0] == 404
    finally:
        stop_hub(proc)
    assert "refused static file /leak.txt" in (tmp_path / "own.log").read_text()


def test_agent_names_over_128_bytes_are_refused_at_once_and_not_in_configs(hub, tmp_path):
    async def run():
        a = AgentClient(hub.url)
        await a.connect(10)
        with pytest.raises(ProtocolError) as e:
            await a.hello("x" * 200, "wrong", timeout=10)
        assert e.value.code == "unauthorized"

    asyncio.run(run())
    r = subprocess.run([hub_exe(), "--kb", kb_path(), "--store", str(tmp_path / "n.db"), "--port", "0",
                        "--secret", SECRET, "--agent", "y" * 129 + ":pw"],
                       capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert r.returncode == 1 and "is over 128 bytes" in r.stderr, r.stderr
