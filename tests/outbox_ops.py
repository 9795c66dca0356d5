# Outbox operations as data, run the same way on CPython (test_outbox.py) and on the
# MicroPython unix port (mp_outbox.py): put, flush, reboot (a new Outbox on the same folder).
def run(microsmtp, outbox, client, path, ops, kwargs):
    box = outbox.Outbox(client, path, **kwargs)
    out = []
    for op in ops:
        if op[0] == "put":
            try:
                out.append(["put", box.put(op[1], op[2], op[3])])
            except microsmtp.SMTPError as e:
                out.append(["put-error", e.status])
        elif op[0] == "flush":
            out.append(["flush", box.flush(), box.pending(), box.dead()])
        elif op[0] == "reboot":
            box = outbox.Outbox(client, path, **kwargs)
            out.append(["reboot", box.pending()])
    out.append(["pool", client.pool.available() == client.pool.count])
    return out
