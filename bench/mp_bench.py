# MicroPython side of `make bench` (bench/bench.py runs it on the unix port, capped heap).
# argv[1]: a JSON file: port, body_file, warm (sends measured one by one), auth, password;
# for TLS: server, tls, cadata; count for timed sends (mp_timed.py). Prints one JSON object a
# line. Small on purpose: it shares the capped heap with the library (the heap bisection
# runs it alone) and uses only microsmtp's public API.
import gc
import json
import sys

import micropython

with open(sys.argv[1]) as f:
    cfg = json.load(f)
RCPT = "sink@example.org"

# Heap held by the import and by a Client: what stays allocated, after a collection.
gc.collect()
h0 = gc.mem_alloc()
import microsmtp  # noqa: E402

gc.collect()
h1 = gc.mem_alloc()
user = "bench" if cfg.get("auth") else None
client = microsmtp.Client(cfg.get("server", "127.0.0.1"), cfg["port"],
                          from_address="bench@example.org", username=user,
                          password=cfg["password"] if user else None,
                          client_domain="bench.example.org",
                          tls=cfg.get("tls", microsmtp.TLS_NONE), cadata=cfg.get("cadata"),
                          allow_plaintext_auth=True)
gc.collect()
print(json.dumps({"heap": [h0, h1, gc.mem_alloc()], "version": sys.implementation.version,
                  "build": sys.version}))


def send(c):
    with open(cfg["body_file"], "rb") as body:
        c.send(RCPT, "bench", body)


# Allocation of a send: the last of `warm` sends, each after a collection (the first one
# also pays for names interned on first use).
for _ in range(cfg["warm"]):
    gc.collect()
    before = micropython.mem_total()
    send(client)
    alloc = micropython.mem_total() - before
mods = sorted(k for k in sys.modules if k.startswith("microsmtp"))
print(json.dumps({"alloc": alloc, "pool_full": client.pool.available() == client.pool.count,
                  "modules": mods}))

if cfg.get("count"):  # the timed runs only: the bisection's heap holds none of it
    import mp_timed

    mp_timed.run(client, cfg, send)
