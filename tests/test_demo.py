"""make demo, as a newcomer runs it: catcher, virtual board, deploy, app, alert received."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_delivers_one_alert_through_the_virtual_board():
    res = subprocess.run([sys.executable, "-m", "microsmtp_host.demo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "[7/7] checking lib/microsmtp" in out  # deployed with mpremote, listing checked
    assert "alert sent: Boiler at 85.0 °C" in out  # the board's app said so
    assert out.count("alert sent") == 1  # one crossing, one alert
    assert "by microsmtp-catcher with ESMTPSA" in out  # STARTTLS + AUTH at the catcher
    assert "Subject, decoded: Boiler at 85.0 °C" in out
    assert "X-Priority: 1" in out
    assert "1 alert delivered" in out and "certificate verified" in out
