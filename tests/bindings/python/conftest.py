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


_HUB = _hub_module()  # the Hub class and its fixture helpers, loaded once


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
    with _HUB.running_hub(request, Path(require_env("MADOGUCHI_HUB")), SHOP_KB, tmp_path) as handle:
        yield handle


# Keeps each test's report on its item, so that `hub` prints the hub's log when a test failed.
pytest_runtest_makereport = _HUB.pytest_runtest_makereport


def async_test(fn):
    """Runs an async test function in a fresh event loop (pytest 7.2 without plugins)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper
