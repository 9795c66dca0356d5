# Rich mails (issue 14: Cc/Bcc, display names, headers, HTML, attachments), one driver for
# both runtimes: tests/test_rich.py calls run() on CPython (with the shim's net); the
# MicroPython unix port runs this module with a JSON config file as argv[1] (its wheel
# crashes on arguments over 255 characters) and prints one JSON line a send.
#
# cfg: server, port, from, how ("send", "session": every send over one connection, "aio"),
# sends: a list of {to, subject, body, rich}. rich holds send()'s keywords as JSON: html (a
# str, or {"file": path}); attachments a list of {name, type, and one of text, hex, file
# (a path: the file open, read as it is sent), chunks (a list of str: an iterator), locked
# (a path: read with the heap locked from its first byte to its last, MicroPython), cid}.
# A send may say "measure": mem_total() around it whole (MicroPython; Client.send, its rich
# holding attachments only, or nothing); with how "session",
# "date" (seconds) and "message_id": the mail's Date and Message-ID.
# Each result: status (0 or the SMTPError's, or "ValueError: ..." for refused input),
# error, step and temporary (an SMTPError's), mem (bytes allocated, or None), locked_ok,
# pool_full, mime_loaded, utf8_loaded (tests/test_smtputf8.py).
import gc
import json
import sys

import microsmtp

try:
    import micropython

    mem_total = micropython.mem_total
except (ImportError, AttributeError):  # CPython: nothing to count
    micropython = mem_total = None


class Locked:
    """A file read with the heap locked from its first byte to its last (all `size` of
    them): an allocation meanwhile raises MemoryError, which the send reports."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.size = self.f.seek(0, 2)
        self.f.seek(0)
        self.read = 0
        self.state = 0  # 1 locked, 2 read to its end

    def tell(self):
        return self.f.tell()

    def seek(self, pos, whence=0):
        return self.f.seek(pos, whence)

    def readinto(self, buf):
        if self.state == 0 and micropython:
            micropython.heap_lock()
            self.state = 1
        n = self.f.readinto(buf)
        self.read += n
        if self.read >= self.size:
            self.unlock(2)
        return n

    def unlock(self, state):
        if self.state == 1 and micropython:
            micropython.heap_unlock()
        if self.state != 2:
            self.state = state

    def close(self):
        self.unlock(3)
        self.f.close()


def hexbytes(text):
    out = bytearray(len(text) // 2)
    for i in range(len(out)):
        out[i] = int(text[2 * i:2 * i + 2], 16)
    return bytes(out)


def keywords(rich, opened):
    """send()'s keywords from their JSON form; files opened onto `opened`."""
    out = {}
    for key in rich:
        value = rich[key]
        if key == "html" and isinstance(value, dict):
            value = open(value["file"], "rb")
            opened.append(value)
        elif key == "attachments":
            value = [attachment(a, opened) for a in value]
        elif key == "headers" and isinstance(value, list):
            value = [tuple(h) for h in value]
        out[key] = value
    return out


def attachment(a, opened):
    if "text" in a:
        data = a["text"]
    elif "hex" in a:
        data = hexbytes(a["hex"])
    elif "chunks" in a:
        data = iter(a["chunks"])
    elif "locked" in a:
        data = Locked(a["locked"])
        opened.append(data)
    else:
        data = open(a["file"], "rb")
        opened.append(data)
    return (a["name"], a["type"], data, a["cid"]) if "cid" in a else \
        (a["name"], a["type"], data)


def result(client, e, mem, opened):
    locked = [f for f in opened if isinstance(f, Locked)]
    for f in opened:
        f.close()
    step = temporary = None
    if isinstance(e, microsmtp.SMTPError):
        status = e.status
        step = e.step
        temporary = e.temporary
    elif e is not None:
        status = "%s: %s" % (type(e).__name__, e)
    else:
        status = 0
    return {"status": status, "error": e and str(e), "mem": mem, "step": step,
            "temporary": temporary,
            "locked_ok": all(f.state == 2 for f in locked) if locked else None,
            "pool_full": client.pool.available() == client.pool.count,
            "mime_loaded": "microsmtp.mime" in sys.modules,
            "utf8_loaded": "microsmtp.utf8" in sys.modules}


def run(cfg, emit, net=None):
    options = {"from_address": cfg.get("from", "boiler@example.com"),
               "client_domain": "boiler.example.com", "auth": microsmtp.AUTH_NONE}
    if net is not None:
        options["net"] = net
    if cfg.get("how") == "aio":
        from microsmtp import aio

        return run_aio(aio.Client(cfg["server"], cfg["port"], **options), cfg, emit)
    client = microsmtp.Client(cfg["server"], cfg["port"], **options)
    if cfg.get("how") == "session":
        results = []
        with client.session() as s:
            for one in cfg["sends"]:
                results.append(send(client, s.send, one))
        for res in results:  # the pool as the session left it
            res["pool_full"] = client.pool.available() == client.pool.count
            emit(res)
    else:
        for one in cfg["sends"]:
            emit(send(client, client.send, one))


def send(client, how, one):
    opened = []
    e = mem = None
    try:
        rich = keywords(one.get("rich", {}), opened)
        if "date" in one:  # a session's send: the Date and Message-ID given (the same bytes)
            rich["date"] = one["date"]
            rich["message_id"] = one["message_id"]
        body = one.get("body", "Boiler at 92 C.\n")
        to, subject = one["to"], one.get("subject", "Boiler alert")
        gc.collect()
        if mem_total and one.get("measure"):
            # Called as an app calls it: through client.send itself (a bound method kept
            # in `how` copies its arguments to the heap when it has a keyword, 48 B), and
            # no **rich (which copies the dict): what is counted is the client's.
            before = mem_total()
            if rich:
                client.send(to, subject, body, attachments=rich["attachments"])
            else:
                client.send(to, subject, body)
            mem = mem_total() - before
        else:
            how(to, subject, body, **rich)
    except Exception as err:  # noqa: BLE001 - reported, as the test expects it or not
        e = err
    return result(client, e, mem, opened)


def run_aio(client, cfg, emit):
    import asyncio

    async def main():
        for one in cfg["sends"]:
            opened = []
            e = None
            try:
                await client.send(one["to"], one.get("subject", "Boiler alert"),
                                  one.get("body", "Boiler at 92 C.\n"),
                                  **keywords(one.get("rich", {}), opened))
            except Exception as err:  # noqa: BLE001 - reported
                e = err
            emit(result(client, e, None, opened))

    asyncio.run(main())


if sys.implementation.name == "micropython" or __name__ == "__main__":
    try:
        from microsmtp_host.shim import net as host_net  # CPython, in a process of its own
    except ImportError:
        host_net = None  # MicroPython: its own socket module
    with open(sys.argv[1]) as f:
        config = json.load(f)
    run(config, lambda r: print(json.dumps(r)), host_net)
