"""`make index`: the static mip index, served over HTTP on loopback and installed onto the
virtual board with mpremote's mip, as a user would from GitHub Pages: .mpy files only, the
native code of the board's architecture loaded, and a mail sent. Then `microsmtp deploy`
run over it leaves only its own files, in both orders."""

import functools
import hashlib
import json
import re
import subprocess
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import servers
from microsmtp_host import cli, deploy, mipindex
from microsmtp_host.virtual_board import unix_port_available
from virtual_boards import MPREMOTE, SOURCES, board_files, run_app

ROOT = Path(__file__).resolve().parents[1]
# The virtual board's fixtures (conftest.py): vboard, board_inbox and board_app.
needs_board = pytest.mark.skipif(not unix_port_available(),
                                 reason="needs the MicroPython unix port")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "index"
    made = mipindex.build(out)
    return out, made


@pytest.fixture(scope="module")
def served(index):
    """The index on http://127.0.0.1:PORT, as any static host serves it."""
    out, made = index

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(out)))
    with servers.http_serving(server) as url:
        yield url, made


def mip_install(device, url, *extra):
    res = subprocess.run([*MPREMOTE, "connect", device, "resume", "mip", "install", *extra,
                          "--index", url, "microsmtp"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def copy_app(vboard, board_app):
    """config.json and the app (main.py) onto the board, as `microsmtp deploy` copies them."""
    config, app = board_app
    for src, dst in ((config, ":config.json"), (app, ":main.py")):
        res = subprocess.run([*MPREMOTE, "connect", vboard.device, "resume", "fs", "cp",
                              str(src), dst], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr


def package(out, flavour="6", version="latest"):
    return json.loads((out / "package" / flavour / "microsmtp" / (version + ".json"))
                      .read_text())


# --- the index itself -------------------------------------------------------------------

def test_index_has_micropython_libs_layout(index):
    out, made = index
    version = mipindex.version()
    top = json.loads((out / "index.json").read_text())
    assert top["v"] == 2 and isinstance(top["updated"], int)
    (entry,) = top["packages"]
    assert (entry["name"], entry["version"], entry["license"]) == ("microsmtp", version, "MIT")
    assert entry["versions"] == {"6": [version], "py": [version]}
    for flavour in ("6", "py"):
        latest = package(out, flavour)
        assert latest == package(out, flavour, version)  # the versioned file, the same
        assert latest["v"] == 1 and latest["version"] == version
        assert "urls" not in latest and "deps" not in latest
        for _, short in latest["hashes"]:  # each file where mip fetches it, unchanged
            data = (out / "file" / short[:2] / short).read_bytes()
            assert hashlib.sha256(data).hexdigest().startswith(short) and len(short) == 8
    # .py: the sources as they are; 6: every module as .mpy, native.py once per architecture
    py = package(out, "py")["hashes"]
    assert [t for t, _ in py] == ["microsmtp/" + n for n in SOURCES]
    mpy = dict(package(out)["hashes"])
    natives = ["microsmtp/native_%d.mpy" % n for n in made["archs"]]
    assert sorted(mpy) == sorted(["microsmtp/%s.mpy" % Path(n).stem for n in SOURCES]
                                 + natives)
    assert {"x64", "xtensawin", "armv6m", "rv32imc"} <= set(made["archs"].values())
    for target, short in mpy.items():
        data = (out / "file" / short[:2] / short).read_bytes()
        assert data[:2] == b"M\x06"
        arch = data[2] >> 2  # the flags byte: the architecture of any native code in it
        m = re.fullmatch(r"microsmtp/native_(\d+)\.mpy", target)
        assert arch == (int(m.group(1)) if m else 0), target


def test_the_version_is_written_in_one_place(index):
    """microsmtp.__version__ is the index's and the installed host package's (pyproject.toml
    reads it); package.json says the same."""
    from importlib import metadata

    version = mipindex.version()
    init = (ROOT / "firmware" / "microsmtp" / "__init__.py").read_text()
    assert re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1) == version
    assert json.loads((ROOT / "package.json").read_text())["version"] == version
    assert metadata.version("microsmtp") == version


def test_every_board_architecture_is_in_the_index(index):
    """boards/*/board.json's architectures (ESP32, S3, C3, Pico W) have their native_<N>."""
    _, made = index
    for board_json in (ROOT / "boards").glob("*/board.json"):
        board = json.loads(board_json.read_text())
        for entry in [board] + board.get("variants", []):
            arch = entry.get("mpy_arch", board["mpy_arch"])
            assert made["archs"][deploy.ARCHS.index(arch)] == arch, board_json


# --- onto the virtual board ----------------------------------------------------------------

@needs_board
def test_mip_install_from_the_index_gives_mpy_only_and_sends(vboard, served, board_inbox,
                                                             board_app):
    url, made = served
    out = mip_install(vboard.device, url)
    assert "Installing microsmtp (latest) from %s" % url in out
    lib = vboard.folder / "lib" / "microsmtp"
    # mpremote put them in the lib folder of the board's sys.path: .mpy files only.
    installed = sorted(p.name for p in lib.iterdir())
    assert installed == sorted(Path(t).name for t, _ in made["mpy_files"])
    assert not [n for n in installed if not n.endswith(".mpy")]
    copy_app(vboard, board_app)
    assert "sent with %s/__init__.mpy" % lib in run_app(vboard, board_inbox)
    # The board's own native code (x64 on the unix port) runs the body.
    res = subprocess.run([*MPREMOTE, "connect", vboard.device, "resume", "exec",
                          "import sys; print(sorted(k for k in sys.modules "
                          "if k.startswith('microsmtp.n')))"],
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "['microsmtp.native', 'microsmtp.native_2']", res.stdout
    # Again: mip finds every file in place (same hash) and fetches nothing.
    again = mip_install(vboard.device, url)
    assert "Installing:" not in again and again.count("Exists:") == len(installed)


@needs_board
def test_the_boards_own_mip_installs_from_the_index_and_sends(vboard, served, board_inbox,
                                                              board_app):
    """mip.install("microsmtp", index=URL) run on the board (the unix port has mip frozen,
    as the ESP32 and Pico W firmware do): it fetches over its own network stack."""
    url, made = served
    code = 'import mip; mip.install("microsmtp", index="%s", target="lib")' % url
    res = subprocess.run([*MPREMOTE, "connect", vboard.device, "resume", "exec", code],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Done" in res.stdout, res.stdout + res.stderr
    lib = vboard.folder / "lib" / "microsmtp"
    assert sorted(p.name for p in lib.iterdir()) == sorted(
        Path(t).name for t, _ in made["mpy_files"])
    copy_app(vboard, board_app)
    assert "sent with %s/__init__.mpy" % lib in run_app(vboard, board_inbox)


@needs_board
def test_deploy_after_mip_leaves_only_its_own_files(vboard, served, capsys):
    url, made = served
    lib = vboard.folder / "lib" / "microsmtp"
    mip_install(vboard.device, url)
    assert cli.main(["deploy", "--port", vboard.device, "--mpy"]) == 0
    assert "removed lib/microsmtp/native_10.mpy" in capsys.readouterr().out  # xtensawin
    assert sorted(p.name for p in lib.iterdir()) == sorted(
        Path(n).stem + ".mpy" for n in SOURCES)
    mip_install(vboard.device, url)  # and back: the index's native.mpy and its natives
    assert cli.main(["deploy", "--port", vboard.device]) == 0  # .py with mip (package.json)
    assert board_files(vboard.folder) == ["lib/microsmtp/" + n for n in SOURCES]


@needs_board
def test_mip_after_a_py_install_needs_the_folder_cleared_first(vboard, served):
    """mip only adds files: over a .py install (`deploy`, or `mip install github:...`) the
    .py would still be imported before the .mpy beside it. README §1 says to remove
    lib/microsmtp first, as done here."""
    url, made = served
    lib = vboard.folder / "lib" / "microsmtp"
    assert cli.main(["deploy", "--port", vboard.device]) == 0
    mip_install(vboard.device, url)
    assert (lib / "protocol.py").exists() and (lib / "protocol.mpy").exists()
    res = subprocess.run([*MPREMOTE, "connect", vboard.device, "resume", "rm", "-r",
                          ":lib/microsmtp"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    mip_install(vboard.device, url)
    assert sorted(p.name for p in lib.iterdir()) == sorted(
        Path(t).name for t, _ in made["mpy_files"])


@needs_board
def test_mip_no_mpy_installs_the_sources(vboard, served):
    url, made = served
    mip_install(vboard.device, url, "--no-mpy")
    assert board_files(vboard.folder) == ["lib/microsmtp/" + n for n in SOURCES]


def test_make_index_target_exists():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^index: setup\n\t\$\(PY\) -m microsmtp_host\.mipindex build/index$",
                     make, re.M)
