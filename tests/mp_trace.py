# Sends with Client(trace=...) on both runtimes, one driver: tests/test_trace.py calls run()
# on CPython (with the shim's net); the MicroPython unix port runs this module with a JSON
# config file as argv[1] (its wheel crashes on arguments over 255 characters) and prints
# each traced line as "<direction> <hex>", then one JSON line with the send's result.
import json
import sys

import microsmtp


def run(cfg, report, net=None):
    lines = []
    raised = []
    fail = cfg.get("raise_on")  # [direction, the line's start]: ValueError there, once

    def trace(direction, line):
        lines.append((direction, line))
        if fail and not raised and direction == fail[0] and line.startswith(fail[1]):
            raised.append(line)
            raise ValueError("trace failed on purpose")

    if fail:
        fail = [fail[0], fail[1].encode()]
    client = microsmtp.Client(
        cfg["server"], cfg["port"], from_address=cfg["from"], username=cfg.get("username"),
        password=cfg.get("password"), client_domain=cfg.get("client_domain"),
        auth=getattr(microsmtp, "AUTH_" + (cfg.get("auth") or "AUTO")),
        timeouts=cfg.get("timeouts"), tls=cfg.get("tls"), cadata=cfg.get("cadata"),
        oauth_token=cfg.get("oauth_token"),
        allow_plaintext_auth=cfg.get("allow_plaintext_auth", True), net=net,
        trace=trace if cfg.get("trace", True) else None)
    for _ in range(cfg.get("sends", 1)):
        e = None
        try:
            body = cfg["body"]
            if isinstance(body, list):  # a streamed body: an iterator of chunks
                body = iter(body)
            client.send(cfg["to"], cfg["subject"], body)
        except microsmtp.SMTPError as err:
            e = err
        report({"status": e.status if e else 0, "step": e and e.step,
                "reply_code": e and e.reply_code, "error": e and str(e),
                "trace": lines[:], "raised": len(raised),
                "trace_loaded": "microsmtp.trace" in sys.modules,
                "pool_full": client.pool.available() == client.pool.count})
        del lines[:]
        e = None


def show(res):
    import binascii

    for direction, line in res.pop("trace"):  # a line at a time: a small heap
        print(direction, binascii.hexlify(line).decode())
    print(json.dumps(res))


if sys.implementation.name == "micropython":
    with open(sys.argv[1]) as f:
        run(json.load(f), show)
