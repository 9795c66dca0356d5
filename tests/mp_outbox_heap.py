# tests/test_outbox_rich.py's heap measurement on the MicroPython unix port: bytes allocated
# (micropython.mem_total) by a plain put, by rich puts whose attachment (a file, copied
# into the outbox) is 1 KB and 48 KB, and by the flush of each, after a first round of the
# same (imports and first-use allocations out of the way). argv[1]: a JSON config file
# {"port", "path", "small", "big", "cam"}; prints one JSON line.
import gc
import json
import sys

import micropython
import microsmtp
from microsmtp import outbox

with open(sys.argv[1]) as f:
    cfg = json.load(f)
client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="boiler@example.org",
                          client_domain="boiler.example.org", tls=microsmtp.TLS_NONE,
                          timeouts={"connect": 2, "greeting": 2, "envelope": 2, "message": 3})
box = outbox.Outbox(client, cfg["path"], max_bytes=1 << 20)


def put(data):
    if data is None:
        return box.put("ops@example.org", "Door", "Back door opened.\n")
    with open(data, "rb") as f:
        return box.put("ops@example.org", "Door", "Back door opened.\n",
                       cc="pager@example.org", attachments=[
                           ("data.bin", "application/octet-stream", f),
                           ("cam.jpg", "image/jpeg", outbox.Path(cfg["cam"]))])


def measure(fn):
    gc.collect()
    before = micropython.mem_total()
    fn()
    return micropython.mem_total() - before


out = {}
for kind in ("plain", "small", "big", "plain", "small", "big"):
    data = None if kind == "plain" else cfg[kind]
    out["put " + kind] = measure(lambda: put(data))  # noqa: B023 - called at once
    out["flush " + kind] = measure(lambda: box.flush())
    out["sent " + kind] = box.last_error is None and not box.pending()
    if box.last_error is not None:
        out["error " + kind] = str(box.last_error)
gc.collect()
out["free"] = gc.mem_free()
print(json.dumps(out))
