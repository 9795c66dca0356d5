"""The virtual board's tests share (tests/test_virtual_board.py, tests/test_mip_index.py;
their fixtures vboard, board_inbox and board_app are in tests/conftest.py): the firmware's
file names, the mpremote command, the app that sends one mail, and its check."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p.name for p in (ROOT / "firmware" / "microsmtp").glob("*.py"))
MPREMOTE = [sys.executable, "-m", "mpremote"]
USER, PASSWORD = "board", "s3cret"  # the account of board_inbox

# The board's app: reads config.json as the board apps do (docs/CONFIG.md), sends one mail.
APP = """\
import json
import microsmtp

with open("config.json") as f:
    smtp = json.load(f)["smtp"]
client = microsmtp.Client(
    smtp["server"], smtp["port"], from_address=smtp["from"], username=smtp["username"],
    password=smtp["password"], client_domain=smtp["client_domain"],
    tls=microsmtp.TLS_NONE if smtp["tls"] == "none" else None,
    allow_plaintext_auth=smtp["allow_plaintext_auth"])
client.send(smtp["to"], "Boiler at 91.5 C", "Sent by the virtual board.\\n")
print("sent with", microsmtp.__file__)
"""


def mpremote(device, *args, timeout=30):
    return subprocess.run([*MPREMOTE, "connect", device, *args], capture_output=True,
                          text=True, timeout=timeout)


def board_files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def run_app(vboard, board_inbox):
    """`import main` on the board: exactly one mail reaches board_inbox, with AUTH."""
    res = mpremote(vboard.device, "resume", "exec", "import main", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    messages = board_inbox.handler.messages
    assert len(messages) == 1, res.stdout
    got = messages[0]
    assert (got["mail_from"], got["rcpt_tos"], got["auth"]) == ("boiler@example.com",
                                                                ["oncall@example.com"], True)
    assert b"Subject: Boiler at 91.5 C" in got["content"]
    assert b"Sent by the virtual board." in got["content"]
    return res.stdout
