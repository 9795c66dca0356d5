"""One mail from a computer, sent by microsmtp's own firmware code on CPython (through the
host shim): `python3 examples/send_from_computer.py config.json`.

config.json as a board's (docs/CONFIG.md), with smtp.cadata the CA file's path on this
computer (or null for a plaintext LAN relay). `microsmtp send --config F` does the same
with more options."""

import json
import sys

from microsmtp_host import PRIORITY_HIGH, Client, SMTPError

with open(sys.argv[1] if len(sys.argv) > 1 else "config.json", encoding="utf-8") as f:
    smtp = json.load(f)["smtp"]
client = Client(smtp["server"], smtp["port"], from_address=smtp["from"],
                username=smtp.get("username"), password=smtp.get("password"),
                cadata=smtp.get("cadata"))
try:
    client.send(smtp["to"], "Test from microsmtp", "Sent from a computer.\n", PRIORITY_HIGH)
    print("sent")
except SMTPError as e:
    sys.exit(str(e))  # one line, exit status 1
