"""make demo end to end: the MicroPython unix port sends one alert to a local aiosmtpd."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_delivers_one_alert():
    # The package is installed editable by `make setup`; host/ on the path covers a bare run.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                      env.get("PYTHONPATH")]))
    res = subprocess.run([sys.executable, "-m", "microsmtp_host.demo"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "alert sent" in out
    # Non-ASCII, so the firmware sends it as an RFC 2047 encoded word; either form will do.
    assert ("Boiler at 92 °C" in out
            or "Subject: =?utf-8?B?Qm9pbGVyIGF0IDkyIMKwQw==?=" in out)
    # "...and still rising" went out as "....and still rising" and the server undid it;
    # at the start of a line, so an unstuffed "." would not pass ("..and") nor a doubled one.
    assert "\n...and still rising\n" in out
    assert "X-Priority: 1" in out
    assert "1 alert delivered over SMTP from the MicroPython unix port to aiosmtpd" in out
    assert "over STARTTLS with the certificate verified" in out
