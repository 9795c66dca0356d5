# Outbox operations as data, run the same way on CPython (test_outbox.py) and on the
# MicroPython unix port (mp_outbox.py): put (optional priority), rich (put with send()'s
# rich keywords, see keywords() below, then the optional priority), flush (aflush() with
# a microsmtp.aio client), reboot (a new Outbox on the same folder), error (the last
# flush's last_error: status, step, temporary), unlink (remove a file: a Path attachment
# gone), modules (is mime.py loaded). put's recipients may be a number n: r0@example.org
# ... (small test data for the heap).
import binascii
import sys


def keywords(outbox, rich, opened):
    """put()'s rich keywords from their JSON form: attachments are {name, type, and one
    of text, hex, chunks (an iterator of str), file (a path: the file open, copied at
    put), path (outbox.Path: read at flush), cid}; headers a list of [name, value]."""
    out = {}
    for key in rich:
        value = rich[key]
        if key == "attachments":
            value = [attachment(outbox, a, opened) for a in value]
        elif key == "headers" and isinstance(value, list):
            value = [tuple(h) for h in value]
        out[key] = value
    return out


def attachment(outbox, a, opened):
    if "text" in a:
        data = a["text"]
    elif "hex" in a:
        data = binascii.unhexlify(a["hex"])
    elif "chunks" in a:
        data = iter(a["chunks"])
    elif "path" in a:
        data = outbox.Path(a["path"])
    else:
        data = open(a["file"], "rb")
        opened.append(data)
    return (a["name"], a["type"], data, a["cid"]) if "cid" in a else \
        (a["name"], a["type"], data)


def flush(box):
    if hasattr(box.client, "_step"):  # a microsmtp.aio client
        import asyncio

        return asyncio.run(box.aflush())
    return box.flush()


def run(microsmtp, outbox, client, path, ops, kwargs):
    box = outbox.Outbox(client, path, **kwargs)
    out = []
    for op in ops:
        if op[0] == "put" or op[0] == "rich":
            to = op[1]
            if isinstance(to, int):
                to = ["r%d@example.org" % i for i in range(to)]
            opened = []
            try:
                if op[0] == "rich":
                    out.append(["put", box.put(to, op[2], op[3], *op[5:],
                                               **keywords(outbox, op[4], opened))])
                else:
                    out.append(["put", box.put(to, op[2], op[3], *op[4:])])
            except microsmtp.SMTPError as e:
                out.append(["put-error", e.status])
            except (ValueError, TypeError) as e:  # refused as Client.send refuses it
                out.append(["put-refused", type(e).__name__])
            for f in opened:
                f.close()
        elif op[0] == "flush":
            out.append(["flush", flush(box), box.pending(), box.dead()])
        elif op[0] == "reboot":
            box = outbox.Outbox(client, path, **kwargs)
            out.append(["reboot", box.pending()])
        elif op[0] == "error":
            e = box.last_error
            out.append(["error"] + ([e.status, e.step, e.temporary] if e else []))
        elif op[0] == "unlink":
            import os

            os.remove(op[1])
            out.append(["unlink"])
        elif op[0] == "modules":
            out.append(["modules", "microsmtp.mime" in sys.modules])
    out.append(["pool", client.pool.available() == client.pool.count])
    return out
