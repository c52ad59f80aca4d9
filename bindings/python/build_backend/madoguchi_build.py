"""A PEP 517 build backend for the madoguchi package, with the standard library alone.

The package is pure Python (ctypes over libmadoguchi.so), so a wheel is a zip of src/madoguchi
and a dist-info directory. Having the backend in the tree (pyproject.toml: backend-path) means
that `pip install bindings/python` needs nothing from an index: pip's isolated build environment
is empty and stays empty. It builds wheels, editable wheels (PEP 660) and sdists.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "madoguchi"
TAG = "py3-none-any"


def _project() -> dict:
    """name, version, description and requires-python from [project] in pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    fields = {}
    for key in ("name", "version", "description", "requires-python"):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
        if m:
            fields[key] = m.group(1)
    return fields


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + p["name"],
        "Version: " + p["version"],
        "Summary: " + p.get("description", ""),
        "Requires-Python: " + p.get("requires-python", ">=3.8"),
        "Description-Content-Type: text/markdown",
        "",
        (ROOT / "README.md").read_text("utf-8"),
    ]
    return "\n".join(lines)


def _dist_info() -> str:
    p = _project()
    return "%s-%s.dist-info" % (p["name"], p["version"])


def _wheel_name() -> str:
    p = _project()
    return "%s-%s-%s.whl" % (p["name"], p["version"], TAG)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _package_files():
    src = ROOT / "src" / PACKAGE
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(ROOT / "src").as_posix(), path.read_bytes()


def _write_wheel(directory: str, files) -> str:
    name = _wheel_name()
    dist_info = _dist_info()
    files = list(files)
    files.append((dist_info + "/METADATA", _metadata().encode("utf-8")))
    files.append((dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: madoguchi_build\n"
                                         "Root-Is-Purelib: true\nTag: %s\n" % TAG).encode("ascii")))
    files.append((dist_info + "/top_level.txt", (PACKAGE + "\n").encode("ascii")))
    record = [_record_line(n, d) for n, d in files] + [dist_info + "/RECORD,,"]
    files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    stamp = time.localtime(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")))[:6]
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            info = zipfile.ZipInfo(n, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    return name


# ---- PEP 517 -------------------------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    target = Path(metadata_directory) / _dist_info()
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(_metadata(), "utf-8")
    return target.name


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, _package_files())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a wheel whose .pth file puts src/ on sys.path (pip install -e bindings/python)."""
    pth = (str(ROOT / "src") + "\n").encode("utf-8")
    return _write_wheel(wheel_directory, [("__editable__.madoguchi.pth", pth)])


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = "%s-%s" % (p["name"], p["version"])
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in ["pyproject.toml", "README.md", "build_backend/madoguchi_build.py"] + [
                "src/" + n for n, _ in _package_files()]:
            tar.add(str(ROOT / rel), arcname=base + "/" + rel)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = _metadata().encode("utf-8")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return name
