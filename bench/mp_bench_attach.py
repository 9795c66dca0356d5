# MicroPython side of `make bench`'s rich-mail figure (issue 14): a 1 KB alert (the text of
# argv[1]'s body_file) with attach_file as its attachment, sent `warm` times, the last one's
# allocation reported (mem_total, after a collection), then `count` timed sends on new
# connections (mp_timed.py). A driver of its own, as mp_bench_aio.py: bench/mp_bench.py's
# figures (the smallest heaps above all) stay those of a plain alert's code and names.
import gc
import json
import sys

import micropython
import microsmtp

with open(sys.argv[1]) as f:
    cfg = json.load(f)
with open(cfg["body_file"]) as f:
    ALERT = f.read()
client = microsmtp.Client(cfg.get("server", "127.0.0.1"), cfg["port"],
                          from_address="bench@example.org", client_domain="bench.example.org",
                          tls=microsmtp.TLS_NONE)


def send(c):
    with open(cfg["attach_file"], "rb") as data:
        c.send("sink@example.org", "bench", ALERT,
               attachments=[("readings.txt", "text/plain", data)])


for _ in range(cfg["warm"]):
    gc.collect()
    before = micropython.mem_total()
    send(client)
    alloc = micropython.mem_total() - before
print(json.dumps({"alloc": alloc, "pool_full": client.pool.available() == client.pool.count}))

if cfg.get("count"):
    import mp_timed

    mp_timed.run(client, cfg, send)
