# One virtual device of tests/test_fleet.py (issue 12, item 5), on the MicroPython unix port:
# queue cfg["alerts"] alerts in its own outbox, then flush until the outbox is empty or the
# deadline passes, retrying on the outbox's own backoff. Config is the JSON file argv[1]
# (the unix port wheel crashes on arguments over 255 characters): port, path, device,
# alerts, backoff (seconds), deadline (seconds), timeouts. Prints one JSON line: the alerts
# as [Message-ID's unique part of alert k], the flushes, the errors that ended one (by status
# and step), the alerts (k) whose connection was lost after "." (DELIVERY_UNKNOWN: at least
# once, they are sent again and may arrive twice), and what is left queued or dead.
import gc
import json
import sys
import time

import microsmtp
from microsmtp import outbox

with open(sys.argv[1]) as f:
    cfg = json.load(f)
client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org",
                          client_domain="device%d.example.org" % cfg["device"],
                          tls=microsmtp.TLS_NONE, timeouts=cfg.get("timeouts"))
box = outbox.Outbox(client, cfg["path"], max_messages=cfg["alerts"] + 4,
                    backoff=cfg["backoff"])
ids = []  # alert k's Message-ID unique part; its subject is "fleet dDDD aKK"
for k in range(cfg["alerts"]):
    name = box.put(["ops@example.org"], "fleet d%03d a%02d" % (cfg["device"], k),
                   "Device %d, alert %d.\n" % (cfg["device"], k))
    with open(cfg["path"] + "/" + name) as f:  # the outbox's head line keeps the id
        ids.append(json.loads(f.readline())["id"])
# The mail in flight when a flush ends: the outbox reads each mail just before it sends it.
# (Its due() taken here can differ from the one flush() takes a moment later, when a retry
# falls due in between; so the mail is recorded as flush() reads it, not guessed after.)
in_flight = [None]
read = box._read


def read_and_note(name):
    mail = read(name)
    in_flight[0] = mail and mail[6]["id"]
    return mail


box._read = read_and_note
gc.collect()
errors = {}
unknown = []
flushes = sent = 0
end = time.ticks_add(time.ticks_ms(), int(cfg["deadline"] * 1000))
while box.pending() and time.ticks_diff(end, time.ticks_ms()) > 0:
    if not box.due():
        time.sleep_ms(20)
        continue
    flushes += 1
    sent += box.flush()
    e = box.last_error
    if e is None:
        continue
    key = "%d:%s" % (e.status, e.step)
    errors[key] = errors.get(key, 0) + 1
    if e.status == microsmtp.DELIVERY_UNKNOWN:
        # flush() stops at a lost session: the mail it was sending is the last one it read.
        unknown.append(ids.index(in_flight[0]))
gc.collect()
print(json.dumps({"device": cfg["device"], "ids": ids, "flushes": flushes, "sent": sent,
                  "errors": errors, "unknown": unknown, "pending": len(box.pending()),
                  "dead": len(box.dead())}))
