"""The heap `import microsmtp` costs after each way to install it, on the MicroPython unix port.

Run by `make bench` after bench.py (or alone: .venv/bin/python bench/install_heap.py
[--no-readme]). Writes build/install_heap.json, README §1's table between the
bench:install markers and docs/DESIGN.md's between the bench:install-design markers.
The three installs, each laid out as it lands in a board's lib/:
- index: what `mpremote mip install --index URL microsmtp` installs from `make index`
  (bytecode .mpy, native.mpy and the native_<N>.mpy of every architecture);
- mpy: what `microsmtp deploy --mpy` installs (.mpy, native code for the board's arch:
  x64 here, as `make mpy` builds them);
- py: the sources (`mpremote mip install github:...`, `./package.json`, `microsmtp deploy`,
  `mip install --no-mpy`), compiled by the board at import;
- and, for the design's sake (docs/DESIGN.md), the index's other possible shape: bytecode
  .mpy with native.py shipped as source, compiled by the board at import.
Figures: the heap held once imported (gc.mem_alloc() after gc.collect(), bench/mp_install.py)
and the smallest -X heapsize (1 KB steps) in which the import succeeds, which also pays for
compiling .py source at import. The send after it costs the same for all three: the same
code is loaded (README §4)."""

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from microsmtp_host import mipindex, unixport  # noqa: E402

OUT = ROOT / "build" / "install_heap.json"
# Where each block goes: {file: [(begin, end, the function of the data that renders it)]}.
README, DESIGN = ROOT / "README.md", ROOT / "docs" / "DESIGN.md"
BEGIN, END = "<!-- bench:install:begin -->", "<!-- bench:install:end -->"
DESIGN_BEGIN, DESIGN_END = ("<!-- bench:install-design:begin -->",
                            "<!-- bench:install-design:end -->")
HEAP_LO, HEAP_HI = 8, 512  # KB: the bisection's bounds (lo fails, hi must pass)
LABELS = {
    "index": "`mpremote mip install --index URL microsmtp` (`make index`)",
    "mpy": "`microsmtp deploy --mpy`",
    "py": "`.py` source: `mip install github:…`, `./package.json`, `microsmtp deploy`",
}
# Not an install anyone gets: the index as it could have been (docs/DESIGN.md says why not).
OTHER = {"index_native_py": "an index with `native.py` as source (not built)"}


def trees(work):
    """{install: folder holding microsmtp/ as that install lays it out}."""
    index = work / "index"
    made = mipindex.build(index)
    lib = work / "index-lib"
    for target, short in made["mpy_files"]:
        (lib / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(index / "file" / short[:2] / short, lib / target)
    py = work / "py-lib" / "microsmtp"
    shutil.copytree(mipindex.FIRMWARE, py, ignore=shutil.ignore_patterns("__pycache__"))
    other = work / "index-native-py"
    shutil.copytree(lib, other)
    for f in (other / "microsmtp").glob("native*.mpy"):
        f.unlink()
    shutil.copy(mipindex.FIRMWARE / "native.py", other / "microsmtp")
    return {"index": lib, "mpy": unixport.firmware_mpy(), "py": py.parent,
            "index_native_py": other}


def import_once(tree, driver, heap, work, module="microsmtp"):
    """The driver's JSON, or None if the import failed at this heap."""
    proc = unixport.run("mp_install", [module], heap="%dK" % heap, path=[tree, driver],
                        work=work / "rt", timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None
    return json.loads(lines[-1])


def smallest_heap(tree, driver, work, module="microsmtp"):
    lo, hi = HEAP_LO, HEAP_HI
    if import_once(tree, driver, hi, work, module) is None:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if import_once(tree, driver, mid, work, module) is None:
            lo = mid
        else:
            hi = mid
    return hi


def native_alone(tree, driver, work):
    """microsmtp.native imported alone (an empty __init__ beside it): what it holds, and the
    smallest heap for it, which shows what compiling native.py at import needs."""
    alone = work / ("alone-" + tree.name)
    shutil.copytree(tree, alone)
    empty = work / "empty" / "__init__.py"
    empty.parent.mkdir(exist_ok=True)
    empty.write_text("")
    for old in (alone / "microsmtp").glob("__init__.*"):
        old.unlink()
    unixport.compile_mpy([empty], alone / "microsmtp")
    run = import_once(alone, driver, 256, work, "microsmtp.native")
    if run is None:
        raise RuntimeError("import microsmtp.native failed from %s" % tree)
    return {"held_bytes": run["held"], "file": Path(run["file"]).name,
            "smallest_heap_kb": smallest_heap(alone, driver, work, "microsmtp.native")}


def measure(work):
    driver = unixport.compile_mpy([HERE / "mp_install.py"], work / "driver")
    out = {}
    for name, tree in trees(work).items():
        run = import_once(tree, driver, 256, work)
        if run is None:
            raise RuntimeError("import microsmtp failed from the %s install" % name)
        files = sorted(p for p in (tree / "microsmtp").iterdir() if p.is_file())
        out[name] = {"held_bytes": run["held"], "smallest_heap_kb":
                     smallest_heap(tree, driver, work), "modules": run["modules"],
                     "files": len(files), "file_bytes": sum(p.stat().st_size for p in files),
                     "micropython": run["version"],
                     "native_alone": native_alone(tree, driver, work)}
    return out


def _row(label, d):
    return "| %s | %d, %s B | %s B | %sK |" % (
        label, d["files"], format(d["file_bytes"], ",").replace(",", " "),
        format(d["held_bytes"], ",").replace(",", " "), d["smallest_heap_kb"])


def _measured(data):
    return ("Measured by `make bench` (bench/install_heap.py) on %s, MicroPython %s unix "
            "port (64-bit), commit %s." % (data["date"], data["micropython"], data["commit"]))


HEAD = ["| install | files in lib/microsmtp | heap held by `import microsmtp` "
        "| smallest `-X heapsize` for the import |", "|---|---|---|---|"]


def block(data):
    """README §1: the three ways to install."""
    rows = HEAD + [_row(label, data["installs"][name]) for name, label in LABELS.items()]
    return "\n".join(rows + ["", _measured(data)])


def design_block(data):
    """docs/DESIGN.md: the index with native code per architecture against native.py as source."""
    rows = HEAD + [_row(LABELS["index"], data["installs"]["index"])]
    rows += [_row(label, data["installs"][name]) for name, label in OTHER.items()]
    rows += ["", "| `microsmtp.native` (the viper loops) imported alone | heap held "
             "| smallest `-X heapsize` |", "|---|---|---|"]
    for label, name in (("the index's `native.mpy` + `native_<N>.mpy`", "index"),
                        ("`deploy --mpy`'s `native.mpy`", "mpy"),
                        ("`native.py` compiled at import", "index_native_py")):
        d = data["installs"][name]["native_alone"]
        rows.append("| %s | %s B | %sK |" % (
            label, format(d["held_bytes"], ",").replace(",", " "), d["smallest_heap_kb"]))
    return "\n".join(rows + ["", _measured(data)])


def write_blocks(data, readme=README, design=DESIGN):
    """README §1's table and docs/DESIGN.md's, each between its markers (each file must
    hold its markers exactly once: report.replace_block)."""
    for path, begin, end, render in ((readme, BEGIN, END, block),
                                     (design, DESIGN_BEGIN, DESIGN_END, design_block)):
        path.write_text(report.replace_block(path.read_text(encoding="utf-8"), begin, end,
                                             render(data)), encoding="utf-8")


def main(argv=None):
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-readme", action="store_true",
                        help="leave README.md and docs/DESIGN.md alone")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="microsmtp-install-heap-") as tmp:
        installs = measure(Path(tmp))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "firmware", "host", "bench"],
                           capture_output=True, text=True, cwd=ROOT).stdout.strip()
    data = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
            "micropython": installs["mpy"]["micropython"],
            "commit": git + ("+" if dirty else ""),
            "installs": installs}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(block(data))
    print()
    print(design_block(data))
    if not args.no_readme:
        write_blocks(data)
    print("\nwrote %s%s" % (OUT, "" if args.no_readme else ", README.md, docs/DESIGN.md"))


if __name__ == "__main__":
    main()
