"""The madoguchi-hub process around the protocol: its secrets, files and start-up checks
(docs/hub.md)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import AGENTS, REPO_ROOT, SECRET


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
