# MicroPython side of `make bench`, the timed sends (imported by mp_bench.py when the config
# has "count"): `batches` batches of `count` sends, on new connections, then in one session
# if the client has one. Prints the total ms of each batch (bench.py takes the median).
import json
import time

NO_SESSION = "n/a (no session API yet)"


def timed(client, cfg, send, session):
    n = cfg["count"]
    out = []
    for _ in range(cfg.get("batches", 1)):
        t0 = time.ticks_ms()
        if session:
            with client.session() as s:
                for _ in range(n):
                    send(s)
        else:
            for _ in range(n):
                send(client)
        out.append(time.ticks_diff(time.ticks_ms(), t0))
    return out


def run(client, cfg, send):
    print(json.dumps({"new_total_ms": timed(client, cfg, send, False)}))
    if not cfg.get("session"):
        return
    # Feature-detected: client.session() lands later in issue 10. Assumed shape: a context
    # manager whose send() is Client.send on the open connection.
    if not hasattr(client, "session"):
        print(json.dumps({"session": NO_SESSION}))
        return
    try:
        print(json.dumps({"session_total_ms": timed(client, cfg, send, True)}))
    except Exception as e:  # the bench reports it instead of losing the other figures
        print(json.dumps({"session": "error: %r" % e}))
