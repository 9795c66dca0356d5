# MicroPython side of `make bench` for microsmtp.aio (bench/bench.py runs it as it runs
# mp_bench.py, same config and output keys). A driver of its own so that mp_bench.py's
# heap figures are not moved by this one's code and names. Every send is awaited inside
# one running event loop, as in an app: the allocation measured is the send's own.
import gc
import json
import sys
import time

import micropython

with open(sys.argv[1]) as f:
    cfg = json.load(f)
RCPT = "sink@example.org"

gc.collect()
h0 = gc.mem_alloc()
import asyncio  # noqa: E402

import microsmtp  # noqa: E402
from microsmtp import aio  # noqa: E402

gc.collect()
h1 = gc.mem_alloc()
user = "bench" if cfg.get("auth") else None
client = aio.Client(cfg.get("server", "127.0.0.1"), cfg["port"],
                    from_address="bench@example.org", username=user,
                    password=cfg["password"] if user else None,
                    client_domain="bench.example.org",
                    tls=cfg.get("tls", microsmtp.TLS_NONE), cadata=cfg.get("cadata"),
                    allow_plaintext_auth=True)
gc.collect()
print(json.dumps({"heap": [h0, h1, gc.mem_alloc()], "version": sys.implementation.version,
                  "build": sys.version}))


async def send(c):
    with open(cfg["body_file"], "rb") as body:
        await c.send(RCPT, "bench", body)


async def batch(n, session):
    t0 = time.ticks_ms()
    if session:
        async with client.session() as s:
            for _ in range(n):
                await send(s)
    else:
        for _ in range(n):
            await send(client)
    return time.ticks_diff(time.ticks_ms(), t0)


async def main():
    alloc = 0
    for _ in range(cfg["warm"]):  # the last of `warm` sends, each after a collection
        gc.collect()
        before = micropython.mem_total()
        await send(client)
        alloc = micropython.mem_total() - before
    mods = sorted(k for k in sys.modules if k.startswith("microsmtp"))
    print(json.dumps({"alloc": alloc, "modules": mods,
                      "pool_full": client.pool.available() == client.pool.count}))
    if cfg.get("count"):  # the timed runs (mp_timed.py's keys)
        for session, key in ((False, "new_total_ms"), (True, "session_total_ms")):
            if session and not cfg.get("session"):
                break
            out = []
            for _ in range(cfg.get("batches", 1)):
                out.append(await batch(cfg["count"], session))
            print(json.dumps({key: out}))


asyncio.run(main())
