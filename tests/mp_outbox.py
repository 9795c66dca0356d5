# MicroPython runner for outbox_ops.py: argv[1] is a JSON file {"port", "path", "ops",
# "kwargs"}; prints the results as one JSON line.
import json
import sys

import microsmtp
import outbox_ops
from microsmtp import outbox

with open(sys.argv[1]) as f:
    cfg = json.load(f)
client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org",
                          client_domain="boiler.example.org", tls=microsmtp.TLS_NONE,
                          timeouts={"connect": 2, "greeting": 2, "envelope": 2, "message": 3})
print(json.dumps(outbox_ops.run(microsmtp, outbox, client, cfg["path"], cfg["ops"],
                                cfg.get("kwargs", {}))))
