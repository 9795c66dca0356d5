# The app of tests/test_powercut.py, on the MicroPython unix port: queue alerts in the
# outbox and flush, printing "put <subject>" once put() has returned (the message is then
# durable). The test kills this process at random moments. argv: config file, trial.
# cfg "rich": rich alerts instead (tests/test_outbox_rich.py).
import json
import sys

import microsmtp
from microsmtp import outbox

with open(sys.argv[1]) as f:
    cfg = json.load(f)
trial = sys.argv[2]
client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org",
                          client_domain="boiler.example.org", tls=microsmtp.TLS_NONE,
                          timeouts={"connect": 2, "greeting": 2, "envelope": 2, "message": 2})
box = outbox.Outbox(client, cfg["path"], max_messages=1000, max_bytes=1 << 20)
if trial == "drain":
    box.flush()
    print("left", len(box.pending()), box.last_error)
else:
    rich = cfg.get("rich")  # {"data": a file copied into the outbox, "path": one by Path}
    for k in range(cfg["per_trial"]):
        subject = "%s-%d" % (trial, k)
        if rich:
            print("putting", subject)  # a kill before "put": cut during put()
            with open(rich["data"], "rb") as data:
                box.put("ops@example.org", subject, "Alert %s\n" % subject,
                        bcc="audit@example.org", attachments=[
                            ("data.bin", "application/octet-stream", data),
                            ("cam.jpg", "image/jpeg", outbox.Path(rich["path"]))])
        else:
            box.put("ops@example.org", subject, "Alert %s\n" % subject)
        print("put", subject)
        box.flush()
        print("flushed", subject)
