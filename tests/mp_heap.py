# MicroPython only (tests/test_engine.py): what a send takes from the heap once its client
# has sent before (issue 10, deliverable 10). argv[1]: a JSON config file (the unix port
# wheel crashes on arguments over 255 characters) whose "sends" lists the sends made on one
# client, in order, one JSON line each:
#   "lock": a 100 KB file body read under micropython.heap_lock() from its first byte to its
#   last: any allocation meanwhile raises MemoryError, which a send reports as
#   PACKET_ALLOCATE_ERROR;
#   "count": the same body unlocked, mem_total() read at its first byte and at its end: a
#   call frame too big for the C stack falls back to it under the lock (py/objfun.c) but
#   comes from the heap, and is counted, without it;
#   "alert": a 1 KB text alert in memory; every send has mem_total() around it whole.
import gc
import json
import sys

import micropython
import microsmtp


class Body:
    """A file whose readinto() locks the heap (lock=True) or reads mem_total() (False) at
    the body's first byte and unlocks or reads it again at its end. No tell(): the client
    takes it for a stream, read once, so it is read only while it is sent."""

    def __init__(self, f, lock):
        self.f = f
        self.lock = lock
        self.state = 0  # 1: being read, 2: read to its end, 3: the send ended before it
        self.size = self.start = self.end = 0

    def readinto(self, buf):
        if not self.state:
            self.state = 1
            if self.lock:
                micropython.heap_lock()
            else:
                self.start = micropython.mem_total()
        n = self.f.readinto(buf)
        if n:
            self.size += n
        else:
            self.over(2)
        return n

    def over(self, state):
        if self.state == 1:
            self.state = state
            if self.lock:
                micropython.heap_unlock()
            else:
                self.end = micropython.mem_total()


with open(sys.argv[1]) as f:
    cfg = json.load(f)
with open(cfg["alert_file"]) as f:
    alert = f.read()
gc.collect()
client = microsmtp.Client(cfg["server"], cfg["port"], from_address="boiler@example.com",
                          client_domain="boiler.example.com", auth=microsmtp.AUTH_NONE,
                          timeouts=cfg["timeouts"])
for kind in cfg["sends"]:
    f = body = e = None
    if kind != "alert":
        f = open(cfg["body_file"], "rb")
        body = Body(f, kind == "lock")
    gc.collect()
    before = micropython.mem_total()
    try:
        client.send("ops@example.org", kind, body or alert)
    except Exception as err:  # noqa: BLE001 - any of them: under the lock nothing is made
        e = err
    if body:
        body.over(3)  # the lock is off before anything is made for the report
    delta = micropython.mem_total() - before
    res = {"kind": kind, "mem_total_delta": delta,
           "status": e.status if isinstance(e, microsmtp.SMTPError) else repr(e) if e else 0,
           "error": e and str(e), "pool_full": client.pool.available() == client.pool.count}
    if body:
        res.update(body_bytes=body.size, body_over=body.state == 2,
                   body_mem_total=body.end - body.start)
        f.close()
    print(json.dumps(res))
