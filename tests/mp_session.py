# Several mails over one client.session(), one driver for both runtimes: tests/test_engine.py
# and tests/test_smtp_sink.py call run() on CPython (with the shim's net); the MicroPython
# unix port runs this module with a JSON config file as argv[1] (its wheel crashes on
# arguments over 255 characters) and prints one JSON line a result: one a mail, then the end.
import json
import sys

import microsmtp


def run(cfg, report, net=None):
    client = microsmtp.Client(cfg["server"], cfg["port"], from_address=cfg["from"],
                              client_domain=cfg["client_domain"], auth=microsmtp.AUTH_NONE,
                              timeouts=cfg["timeouts"], net=net)
    with client.session() as s:
        for m in cfg["mails"]:
            e = None
            try:
                s.send(m["to"], m["subject"], m["body"], date=m.get("date"),
                       message_id=m.get("message_id"))
            except microsmtp.SMTPError as err:
                e = err
            report({"status": e.status if e else 0, "step": e and e.step,
                    "reply_code": e and e.reply_code, "error": e and str(e),
                    "refused": e and e.refused and [[r[0], r[1]] for r in e.refused],
                    "alive": s.alive})
            e = None
    report({"end": True, "alive": s.alive,
            "pool_full": client.pool.available() == client.pool.count})


if sys.implementation.name == "micropython":
    with open(sys.argv[1]) as f:
        run(json.load(f), lambda res: print(json.dumps(res)))
