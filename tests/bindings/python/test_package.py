"""The package itself: installed by pip (not imported from the source tree), how it finds
libmadoguchi, versions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import madoguchi


def test_installed_into_this_environment():
    path = Path(madoguchi.__file__).resolve()
    assert Path(sys.prefix).resolve() in path.parents, path  # the venv's site-packages
    assert "site-packages" in path.parts  # not bindings/python/src of the repository
    assert madoguchi.__version__ == "1.3.0"


def test_versions_and_features():
    assert madoguchi.library_version().split(".")[0] == str(madoguchi.ABI_MAJOR)
    assert madoguchi.features() == madoguchi.FEATURE_BOT | madoguchi.FEATURE_CLIENT


def _probe(env_library, code):
    env = dict(os.environ)
    if env_library is None:
        env.pop("MADOGUCHI_LIBRARY", None)
    else:
        env["MADOGUCHI_LIBRARY"] = env_library
    env["LD_LIBRARY_PATH"] = ""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_a_wrong_library_path_says_where_it_looked(tmp_path):
    p = _probe(str(tmp_path / "libnothing.so"), "import madoguchi\nmadoguchi.Bot.from_string('{}')")
    assert p.returncode != 0
    assert "LibraryNotFound" in p.stderr and "$MADOGUCHI_LIBRARY" in p.stderr and "libnothing.so" in p.stderr


def test_load_library_takes_an_explicit_path():
    code = ("import madoguchi, os\n"
            "lib = madoguchi.load_library(os.environ['MADOGUCHI_LIBRARY'])\n"
            "print(madoguchi.library_version())\n")
    p = _probe(os.environ["MADOGUCHI_LIBRARY"], code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == madoguchi.library_version()


def test_importing_does_not_load_the_library():
    p = _probe(None, "import madoguchi\nprint(madoguchi.Decision.ANSWER)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "answer"
