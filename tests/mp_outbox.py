# MicroPython runner for outbox_ops.py: argv[1] is a JSON file {"port", "path", "ops",
# "kwargs", "client", "aio"}; prints the results as one JSON line. "client": Client
# arguments that replace or add to the defaults below (test_outbox.py's run_ops has the
# same); "aio": a microsmtp.aio.Client (flush ops then await aflush()).
import json
import sys

import microsmtp
import outbox_ops
from microsmtp import outbox

with open(sys.argv[1]) as f:
    cfg = json.load(f)
args = {"client_domain": "boiler.example.org", "tls": microsmtp.TLS_NONE,
        "timeouts": {"connect": 2, "greeting": 2, "envelope": 2, "message": 3}}
args.update(cfg.get("client", {}))
if cfg.get("aio"):
    from microsmtp import aio

    client = aio.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org", **args)
else:
    client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org",
                              **args)
print(json.dumps(outbox_ops.run(microsmtp, outbox, client, cfg["path"], cfg["ops"],
                                cfg.get("kwargs", {}))))
