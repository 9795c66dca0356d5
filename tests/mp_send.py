# MicroPython driver for tests/test_integration.py: one real send (or "repeat" sends on the
# same Client) to the server named in the JSON config file argv[1]; one JSON result line a
# send. Kept tiny: it runs under the capped heap of a small board. Config through a file,
# not argv: the unix port wheel crashes on arguments over 255 characters.
import gc
import json
import sys

import micropython
import microsmtp

with open(sys.argv[1]) as f:
    cfg = json.load(f)
body = cfg["body"]
if cfg.get("body_text_file"):
    # A kilobyte in-memory body, read into one block while the heap is whole (its size
    # known: one allocation, no regrowing), as an app keeps its alert texts.
    import os

    with open(cfg["body_text_file"]) as f:
        body = f.read(os.stat(cfg["body_text_file"])[6])


def chunks(f):
    while True:
        chunk = f.read(512)
        if not chunk:
            return
        yield chunk


gc.collect()  # the parser's garbage, before the Client's long-lived objects
client = microsmtp.Client(
    cfg["server"], cfg["port"], from_address=cfg["from"], username=cfg.get("username"),
    password=cfg.get("password"), client_domain=cfg.get("client_domain"),
    auth=getattr(microsmtp, "AUTH_" + (cfg.get("auth") or "AUTO")),
    timeouts=cfg.get("timeouts"), tls=cfg.get("tls"), cadata=cfg.get("cadata"),
    insecure=cfg.get("insecure", False), oauth_token=cfg.get("oauth_token"),
    allow_plaintext_auth=cfg.get("allow_plaintext_auth", True))
for _ in range(cfg.get("repeat") or 1):
    f = open(cfg["body_file"], "rb") if cfg.get("body_file") else None
    e = None
    gc.collect()
    before = micropython.mem_total()
    src = f or body
    if f and cfg.get("body_chunks"):
        # The file as an iterator of chunks: its size unknown to the client (no SIZE=).
        src = chunks(f)
    try:
        client.send(cfg["to"], cfg["subject"], src,
                    cfg.get("priority", microsmtp.PRIORITY_NORMAL))
    except microsmtp.SMTPError as err:
        e = err
    delta = micropython.mem_total() - before
    res = {"status": e.status if e else 0, "step": e and e.step, "error": e and str(e),
           "reply_code": e and e.reply_code, "mem_total_delta": delta}
    if e:  # for the credential-leak checks of tests/test_tls.py
        res["reply"] = e.reply
        res["repr"] = repr(e)
    res["mem_peak"] = micropython.mem_peak()
    res["pool_full"] = client.pool.available() == client.pool.count
    if f:
        f.close()
    print(json.dumps(res))
    res = e = f = src = None
