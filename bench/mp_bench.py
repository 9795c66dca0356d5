# MicroPython side of `make bench`: one send per line of the JSON config file argv[1]
# ({"port", "body_file", "repeat"}), printing heap allocated (micropython.mem_total delta)
# and wall time per message.
import gc
import json
import sys
import time

import micropython
import microsmtp

with open(sys.argv[1]) as f:
    cfg = json.load(f)
client = microsmtp.Client("127.0.0.1", cfg["port"], from_address="bench@example.org",
                          username="bench", password=cfg["password"],
                          client_domain="bench.example.org", allow_plaintext_auth=True)
for _ in range(cfg["repeat"]):
    body = open(cfg["body_file"], "rb")
    gc.collect()
    before = micropython.mem_total()
    t0 = time.ticks_ms()
    client.send("sink@example.org", "bench", body)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    delta = micropython.mem_total() - before
    body.close()
    print(json.dumps({"alloc": delta, "ms": ms, "pool_full": client.pool.available() == 4}))
