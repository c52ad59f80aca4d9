"""The madoguchi-hub process around the protocol: its secrets, files and start-up checks
(docs/hub.md)."""

from __future__ import annotations

import os
import subprocess
import time
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
