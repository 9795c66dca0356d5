"""The one place that builds and runs the mpremote command line (mpremote_cmd.py), which
deploy, config, the demo and hwtest use: the exact argv and dry-run line it makes, and each
failure as one sentence. A stand-in program plays mpremote (no board needed); one test runs
the real mpremote against a file that is no serial port."""

import os
import subprocess
import sys
import time

import pytest
from microsmtp_host import mpremote_cmd
from microsmtp_host.mpremote_cmd import MpremoteError


def stand_in(monkeypatch, code):
    """mpremote played by `python -c CODE`, which gets the same arguments after it."""
    monkeypatch.setattr(mpremote_cmd, "PROGRAM", (sys.executable, "-c", code))


@pytest.fixture
def port(tmp_path):
    """A port that exists (the check for a missing one passes)."""
    path = tmp_path / "ttyFAKE"
    path.write_text("")
    return str(path)


def test_argv_is_the_venvs_mpremote_connect_port_resume_commands():
    assert mpremote_cmd.argv("/dev/ttyUSB0", "fs", "cp", "/tmp/c.json", ":config.json",
                             "+", "exec", "import main") == [
        sys.executable, "-m", "mpremote", "connect", "/dev/ttyUSB0", "resume",
        "fs", "cp", "/tmp/c.json", ":config.json", "+", "exec", "import main"]
    assert mpremote_cmd.argv("/dev/pts/5") == [
        sys.executable, "-m", "mpremote", "connect", "/dev/pts/5", "resume"]


def test_shown_is_the_line_a_user_would_type():
    assert (mpremote_cmd.shown("/dev/ttyUSB0", "exec", "import main")
            == "mpremote connect /dev/ttyUSB0 resume exec 'import main'")
    # <placeholders> stay as they are; everything else is quoted for a shell
    assert (mpremote_cmd.shown("/dev/ttyUSB0", "fs", "cp", "<config>", ":config.json", "+",
                               "fs", "cp", "/tmp/my ca.pem", ":ca.pem")
            == "mpremote connect /dev/ttyUSB0 resume fs cp <config> :config.json + "
               "fs cp '/tmp/my ca.pem' :ca.pem")


def test_the_command_runs_with_exactly_that_argv(port, monkeypatch):
    stand_in(monkeypatch, "import sys; print(repr(sys.argv[1:]))")
    seen = []
    lines = mpremote_cmd.run(port, "fs", "cp", "a b", ":b", on_line=seen.append)
    assert lines == seen == [repr(["connect", port, "resume", "fs", "cp", "a b", ":b"])]


def test_a_missing_port_is_one_sentence_and_nothing_runs(tmp_path, monkeypatch):
    def popen(*args, **kwargs):
        raise AssertionError("mpremote was started for a port that does not exist")

    monkeypatch.setattr(subprocess, "Popen", popen)
    missing = str(tmp_path / "ttyUSB7")
    with pytest.raises(MpremoteError) as e:
        mpremote_cmd.run(missing, "exec", "print(1)")
    assert str(e.value) == ("no such port: %s (is the board plugged in, or `microsmtp "
                            "board` running?)" % missing)
    assert e.value.returncode is None and not e.value.timed_out
    # ports that are not paths are mpremote's to resolve
    for other in ("COM3", "a0", "rfc2217://192.168.1.5:2217"):
        mpremote_cmd.check_port(other)


def test_a_non_zero_exit_is_mpremotes_last_line(port, monkeypatch):
    stand_in(monkeypatch, "import sys; print('copying'); "
                          "print('mpremote: failed to access X', file=sys.stderr); "
                          "print('  '); sys.exit(1)")
    with pytest.raises(MpremoteError) as e:
        mpremote_cmd.run(port, "fs", "cp", "a", ":a")
    assert str(e.value) == "mpremote: failed to access X"
    assert e.value.returncode == 1 and not e.value.timed_out
    assert e.value.lines == ["copying", "mpremote: failed to access X", "  "]


def test_a_non_zero_exit_without_output_says_the_exit_code(port, monkeypatch):
    stand_in(monkeypatch, "raise SystemExit(3)")
    with pytest.raises(MpremoteError, match=r"^mpremote exited with code 3$"):
        mpremote_cmd.run(port, "exec", "x")


def test_without_check_a_non_zero_exit_returns_the_output(port, monkeypatch):
    # hwtest looks at what its app printed even when the app ended with an exception
    stand_in(monkeypatch, "print('hwtest: not sent'); raise SystemExit(1)")
    assert mpremote_cmd.run(port, "exec", "x", check=False) == ["hwtest: not sent"]


def test_a_timeout_kills_mpremote_and_is_one_sentence(port, monkeypatch):
    stand_in(monkeypatch, "import time; print('started', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(MpremoteError) as e:
        mpremote_cmd.run(port, "exec", "x", timeout=0.5)
    assert time.monotonic() - t0 < 20
    assert str(e.value) == "no answer within 0.5 s (is the port a MicroPython board?)"
    assert e.value.timed_out and e.value.returncode is None
    assert e.value.lines == ["started"]
    with pytest.raises(MpremoteError, match="^no answer within 0.5 s"):  # check or not
        mpremote_cmd.run(port, "exec", "x", timeout=0.5, check=False)


def test_mpremote_that_cannot_start_is_one_sentence(port, monkeypatch, tmp_path):
    monkeypatch.setattr(mpremote_cmd, "PROGRAM", (str(tmp_path / "no-such-python"),))
    with pytest.raises(MpremoteError, match=r"^cannot run mpremote: No such file"):
        mpremote_cmd.run(port, "exec", "x")


def test_an_exception_in_on_line_does_not_leave_mpremote_running(port, monkeypatch):
    stand_in(monkeypatch, "import os, time; print(os.getpid(), flush=True); time.sleep(60)")
    pids = []

    def stop(line):
        pids.append(int(line))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mpremote_cmd.run(port, "exec", "x", on_line=stop)
    with pytest.raises(ProcessLookupError):  # gone, and reaped
        os.kill(pids[0], 0)


def test_the_real_mpremote_on_a_file_that_is_no_board(port):
    with pytest.raises(MpremoteError) as e:
        mpremote_cmd.run(port, "exec", "print(1)", timeout=30)
    assert str(e.value).startswith("mpremote: failed to access %s" % port), str(e.value)
    assert "\n" not in str(e.value) and e.value.returncode
