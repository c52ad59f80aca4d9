"""Fixtures of the Python binding's tests (tests/bindings/python).

They run against the installed `madoguchi` package (python.binding installs it into a venv with
pip first) and libmadoguchi.so from $MADOGUCHI_LIBRARY. The live-chat tests start a real
madoguchi-hub ($MADOGUCHI_HUB) on 127.0.0.1, port 0, with its own SQLite file, through the
Hub class of tests/python/conftest.py, and play the support agent with the independent
protocol client of tests/python/madoguchi_spec_client.py.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(os.environ.get("MADOGUCHI_SOURCE_DIR") or Path(__file__).resolve().parents[3])
SHOP_KB = REPO / "samples" / "kb" / "shop.json"
SHOP_EVAL = REPO / "samples" / "kb" / "shop-eval.jsonl"
T = 15.0  # the longest single wait, in seconds

sys.path.insert(0, str(REPO / "tests" / "python"))  # madoguchi_spec_client


def _hub_module():
    spec = importlib.util.spec_from_file_location("madoguchi_hub_fixture", REPO / "tests" / "python" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail("$%s is not set (ctest's python.binding sets it)" % name)
    return value


@pytest.fixture(scope="session", autouse=True)
def library():
    """libmadoguchi, loaded once from $MADOGUCHI_LIBRARY."""
    import madoguchi

    require_env("MADOGUCHI_LIBRARY")
    return madoguchi.load_library()


@pytest.fixture(scope="session")
def shop_bot():
    import madoguchi

    bot = madoguchi.Bot.open(SHOP_KB)
    yield bot
    bot.close()


@pytest.fixture
def hub(request, tmp_path):
    """A fresh madoguchi-hub per test (own store in tmp_path), stopped at the end."""
    module = _hub_module()
    handle = module.Hub(exe=Path(require_env("MADOGUCHI_HUB")), kb=SHOP_KB, store=tmp_path / "hub.db",
                        log_path=tmp_path / "hub.stderr.log")
    handle.start()
    try:
        yield handle
    finally:
        handle.terminate()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(handle.log_tail())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def async_test(fn):
    """Runs an async test function in a fresh event loop (pytest 7.2 without plugins)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
