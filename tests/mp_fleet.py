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
gc.collect()
errors = {}
unknown = []
flushes = sent = 0
end = time.ticks_add(time.ticks_ms(), int(cfg["deadline"] * 1000))
while box.pending() and time.ticks_diff(end, time.ticks_ms()) > 0:
    due = box.due()
    if not due:
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
        # flush() sends the due mails in order and stops at a lost session: the mail it was
        # sending is the first of them still queued.
        left = box.pending()
        for n in due:
            if n in left:
                with open(cfg["path"] + "/" + n) as f:
                    unknown.append(ids.index(json.loads(f.readline())["id"]))
                break
gc.collect()
print(json.dumps({"device": cfg["device"], "ids": ids, "flushes": flushes, "sent": sent,
                  "errors": errors, "unknown": unknown, "pending": len(box.pending()),
                  "dead": len(box.dead())}))
