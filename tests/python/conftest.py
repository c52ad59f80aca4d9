"""Starts madoguchi-hub for the protocol tests.

MADOGUCHI_HUB: path of the madoguchi-hub executable (the tests skip when it is unset).
MADOGUCHI_KB:  knowledge base (default: samples/kb/shop.json of this repository).

Relative paths are taken from the current directory, then from the repository root.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SECRET = "madoguchi-test-secret-not-for-production"  # deliberately not hex (see test_token_*)
AGENTS = {"sato": "secret1", "suzuki": "secret2"}
# Agents configured with a password hash, which these tests make with Python's own scrypt
# (docs/hub.md, "Agent accounts"): the hub must check such a hash as RFC 7914 defines it.
HASHED_AGENTS = {"tanaka": "secret3"}
HASH_COST = 15  # log2 N: as `madoguchi-hub --hash-password` makes them


def scrypt_hash(password: str, cost: int = HASH_COST) -> str:
    """$scrypt$ln=<cost>,r=8,p=1$<salt>$<key>, base64 without padding."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=2 ** cost, r=8, p=1, maxmem=2 ** 27, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
    return f"$scrypt$ln={cost},r=8,p=1${b64(salt)}${b64(key)}"
READY_TIMEOUT = 30.0  # for the "listening on" line
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL
READY_LINE = re.compile(r"^madoguchi-hub: listening on http://127\.0\.0\.1:(\d+)$")


def _resolve(path: str, what: str) -> Path:
    for candidate in (Path(path), REPO_ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    if os.sep not in path:
        found = shutil.which(path)
        if found:
            return Path(found).resolve()
    pytest.fail(f"{what}={path!r}: no such file (looked in {os.getcwd()} and {REPO_ROOT})")


class Hub:
    """A running madoguchi-hub process on 127.0.0.1 with a store file that outlives it."""

    def __init__(self, exe: Path, kb: Path, store: Path, log_path: Path):
        self.exe = exe
        self.kb = kb
        self.store = store
        self.log_path = log_path
        self.secret = SECRET
        self.agents = dict(AGENTS)
        self.agents.update(HASHED_AGENTS)
        self.agent_hashes = {name: scrypt_hash(password) for name, password in HASHED_AGENTS.items()}
        self.config: dict = {}  # settings for a --config file (docs/hub.md), on the next start
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.starts = 0

    # -- addresses ----------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """Base WebSocket URL: add /v1/visitor or /v1/agent (the client classes do)."""
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def command(self) -> List[str]:
        cmd = [
            str(self.exe),
            "--kb", str(self.kb),
            "--store", str(self.store),
            "--host", HOST,
            "--port", "0",
        ]
        for name, password in self.agents.items():
            cmd += ["--agent", f"{name}:{self.agent_hashes.get(name, password)}"]
        cmd += ["--secret", self.secret]
        if self.config:
            path = self.log_path.with_name("hub.config.json")
            path.write_text(json.dumps(self.config), encoding="utf-8")
            cmd += ["--config", str(path)]
        return cmd

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "hub already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts}: {' '.join(self.command())}\n".encode())
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(REPO_ROOT),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a Ctrl-C of pytest does not reach it; we stop it
            )
        finally:
            log.close()
        lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        proc = self.proc

        def pump() -> None:  # read stdout to its end so the hub never blocks on the pipe
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            first = lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            self.kill()
            pytest.fail(f"madoguchi-hub printed no line within {READY_TIMEOUT} s\n{self.log_tail()}")
        if first is None:
            code = proc.wait(timeout=STOP_TIMEOUT)
            pytest.fail(f"madoguchi-hub exited ({code}) before it was ready\n{self.log_tail()}")
        text = first.decode("utf-8", "replace").rstrip("\r\n")
        m = READY_LINE.match(text)
        if not m:
            self.kill()
            pytest.fail(f"unexpected first stdout line from madoguchi-hub: {text!r}\n{self.log_tail()}")
        self.port = int(m.group(1))
        assert 0 < self.port < 65536

    def terminate(self) -> Optional[int]:
        """SIGTERM (graceful shutdown); SIGKILL after 10 s. Returns the exit code
        (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> Optional[int]:
        """SIGKILL: a crash. Returns the exit code (-9)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode

    def restart(self, kill: bool = True) -> Optional[int]:
        """Stop the hub (SIGKILL if kill, else SIGTERM) and start it again on the same store
        file, on a new port. Returns the old process's exit code."""
        code = self.kill() if kill else self.terminate()
        self.start()
        return code

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return "(no hub log)"
        return "--- madoguchi-hub stderr (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@contextlib.contextmanager
def running_hub(request, exe: Path, kb: Path, tmp_path: Path):
    """A started hub with its own store file in tmp_path, stopped with SIGTERM at the end; the
    tail of its log is printed when the test failed (pytest_runtest_makereport above)."""
    handle = Hub(exe=exe, kb=kb, store=tmp_path / "hub.db", log_path=tmp_path / "hub.stderr.log")
    handle.start()
    try:
        yield handle
    finally:
        handle.terminate()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(handle.log_tail())


@pytest.fixture
def hub(request, tmp_path):
    """A fresh hub per test (own store file in tmp_path), stopped with SIGTERM at the end."""
    exe = os.environ.get("MADOGUCHI_HUB")
    if not exe:
        pytest.skip("MADOGUCHI_HUB is not set (path of the madoguchi-hub executable)")
    kb = os.environ.get("MADOGUCHI_KB") or "samples/kb/shop.json"
    with running_hub(request, _resolve(exe, "MADOGUCHI_HUB"), _resolve(kb, "MADOGUCHI_KB"), tmp_path) as handle:
        yield handle
