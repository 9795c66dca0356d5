# Outbox operations as data, run the same way on CPython (test_outbox.py) and on the
# MicroPython unix port (mp_outbox.py): put (optional priority), flush, reboot (a new Outbox
# on the same folder), error (the last flush's last_error: status, step, temporary).
# put's recipients may be a number n: r0@example.org ... (small test data for the heap).
def run(microsmtp, outbox, client, path, ops, kwargs):
    box = outbox.Outbox(client, path, **kwargs)
    out = []
    for op in ops:
        if op[0] == "put":
            to = op[1]
            if isinstance(to, int):
                to = ["r%d@example.org" % i for i in range(to)]
            try:
                out.append(["put", box.put(to, op[2], op[3], *op[4:])])
            except microsmtp.SMTPError as e:
                out.append(["put-error", e.status])
            except (ValueError, TypeError) as e:  # refused as Client.send refuses it
                out.append(["put-refused", type(e).__name__])
        elif op[0] == "flush":
            out.append(["flush", box.flush(), box.pending(), box.dead()])
        elif op[0] == "reboot":
            box = outbox.Outbox(client, path, **kwargs)
            out.append(["reboot", box.pending()])
        elif op[0] == "error":
            e = box.last_error
            out.append(["error"] + ([e.status, e.step, e.temporary] if e else []))
    out.append(["pool", client.pool.available() == client.pool.count])
    return out
