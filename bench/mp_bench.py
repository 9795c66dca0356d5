# MicroPython side of `make bench`: sends as the JSON config file argv[1] says ("port",
# "body_file", "repeat"; for TLS "server", "tls", "cadata"), printing the heap allocated
# (micropython.mem_total delta) and the wall time per message.
import gc
import json
import sys
import time

import micropython
import microsmtp

with open(sys.argv[1]) as f:
    cfg = json.load(f)
client = microsmtp.Client(cfg.get("server", "127.0.0.1"), cfg["port"],
                          from_address="bench@example.org", username="bench",
                          password=cfg["password"], client_domain="bench.example.org",
                          tls=cfg.get("tls", microsmtp.TLS_NONE), cadata=cfg.get("cadata"),
                          allow_plaintext_auth=True)
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
