# A scripted SMTP server behind a fake `net` module, for the scenario tests. It runs on
# CPython and on the MicroPython unix port alike (both runners import this file), and is
# the one mock in the suite: it produces faults a real server cannot be made to produce
# on cue (a stall at an exact step, a reply split at an exact byte, a 9-digit code).
import errno

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1


class ScriptedSocket:
    def __init__(self, net):
        self.net = net
        self.closed = False

    def settimeout(self, seconds):
        pass

    def connect(self, addr):
        how = self.net.connect_mode
        if how == "refused":
            raise OSError(errno.ECONNREFUSED)
        if how == "timeout":
            raise OSError(errno.ETIMEDOUT)

    def write(self, buf):
        net = self.net
        if net.peek() == "wfail":
            net.pos += 1
            raise OSError(errno.ECONNRESET)
        net.written += bytes(buf)
        net.wire += bytes(buf)
        return len(buf)

    def readinto(self, buf):
        net = self.net
        net.check_writes()
        while True:
            ev = net.peek()
            if ev is None:
                return 0
            if ev == "close":
                net.pos += 1
                return 0
            if ev == "stall":
                net.pos += 1
                raise OSError(errno.ETIMEDOUT)
            if ev == "reset":
                net.pos += 1
                raise OSError(errno.ECONNRESET)
            if ev == "S":
                data = net.pending
                n = min(len(buf), len(data))
                buf[:n] = data[:n]
                net.pending = data[n:]
                if not net.pending:
                    net.pos += 1
                    net.load()
                return n
            net.error("client read while the script expected %r" % ev)
            return 0

    def close(self):
        self.net.check_writes()
        self.closed = True


class ScriptedNet:
    """Implements the slice of the `socket` module that microsmtp.transport uses."""

    AF_INET = AF_INET
    AF_INET6 = AF_INET6
    SOCK_STREAM = SOCK_STREAM

    def __init__(self, script, connect_mode="ok", family=AF_INET):
        self.script = script
        self.connect_mode = connect_mode
        self.family = family
        self.pos = 0
        self.written = b""  # client bytes not yet matched against the script
        self.wire = b""  # every client byte
        self.errors = []
        self.sockets = []
        self.load()

    def load(self):
        ev = self.peek()
        if ev == "S":
            self.pending = self.script[self.pos][1].encode()

    def peek(self):
        if self.pos >= len(self.script):
            return None
        return self.script[self.pos][0]

    def error(self, text):
        if len(self.errors) < 3:
            self.errors.append(text)

    def check_writes(self):
        # Match what the client wrote against the script's "C" (exact) and "C*" (anything
        # up to and including the given end) events.
        while self.written:
            ev = self.peek()
            if ev == "C":
                want = self.script[self.pos][1].encode()
                if not self.written.startswith(want):
                    self.error("client wrote %r, script expected %r" % (self.written[:80], want))
                    self.written = b""
                    self.pos = len(self.script)
                    return
                self.written = self.written[len(want):]
            elif ev == "C*":
                end = self.script[self.pos][1].encode()
                k = self.written.find(end)
                if k < 0:
                    return  # more to come
                self.written = self.written[k + len(end):]
            else:
                self.error("client wrote %r where the script had %r" % (self.written[:80], ev))
                self.written = b""
                return
            self.pos += 1
            self.load()

    def getaddrinfo(self, host, port, af=0, type=0, proto=0, flags=0):
        if self.connect_mode == "resolve":
            raise OSError(-2)
        return [(self.family, SOCK_STREAM, 6, "", ("192.0.2.25", port))]

    def socket(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        s = ScriptedSocket(self)
        self.sockets.append(s)
        return s

    def leftover(self):
        return [ev[0] + (" " + ev[1] if len(ev) > 1 else "") for ev in self.script[self.pos:]]


AUTH = {"NONE": 0xFFFF, "LOGIN": 1, "PLAIN": 3}


def make_client(microsmtp, cfg, net):
    return microsmtp.Client(
        cfg.get("server", "mail.test"), cfg.get("port", 25),
        from_address=cfg.get("from", "dev@example.org"),
        username=cfg.get("username"), password=cfg.get("password"),
        client_domain=cfg.get("domain", "dev.example.org"),
        auth=AUTH[cfg.get("auth", "PLAIN")], timeouts=cfg.get("timeouts"), net=net,
        pool=microsmtp.BufferPool(cfg.get("pool_count", 4), cfg.get("pool_size", 536)))


def status_name(microsmtp, status):
    for name in dir(microsmtp):
        if name.isupper() and getattr(microsmtp, name) == status and (
                name.endswith("ERROR") or not name.startswith(("AUTH_", "PRIORITY_"))):
            return name
    return str(status)


def run(microsmtp, sc, ok_scripts):
    """Run one scenario, then a plain send on the same client; return a result dict.

    ok_scripts: {"auth": ..., "noauth": ...}, the follow-up session for the client's config."""
    net = ScriptedNet(sc["script"], sc.get("connect", "ok"))
    cfg = sc.get("client", {})
    client = make_client(microsmtp, cfg, net)
    ok_script = ok_scripts["auth" if cfg.get("username") and cfg.get("auth") != "NONE"
                           else "noauth"]
    send = sc.get("send", {})
    res = {"name": sc["name"], "status": "SUCCESS", "step": None, "reply_code": None,
           "error": None, "refused": None}
    to = send.get("to", "ops@example.org")
    subject = send.get("subject", "Boiler at 92 C")
    body = send.get("body", "Temperature 92 C\n")
    priority = send.get("priority", 2)
    try:
        if send.get("api") == "mail_send":
            res["status"] = status_name(
                microsmtp, client.mail_send(to, priority, subject, body, send.get("body_length")))
        else:
            client.send(to, subject, body, priority)
    except microsmtp.SMTPError as e:
        res["status"] = status_name(microsmtp, e.status)
        res["step"] = e.step
        res["reply_code"] = e.reply_code
        res["error"] = str(e)
        res["temporary"] = e.temporary
        if e.refused:
            res["refused"] = [[r[0], r[1]] for r in e.refused]
    except ValueError as e:
        res["status"] = "ValueError"
        res["error"] = str(e)
    net.check_writes()
    res["wire"] = net.wire.decode()
    res["script_errors"] = net.errors
    res["leftover"] = net.leftover()
    res["sockets_closed"] = all(s.closed for s in net.sockets)
    res["connections"] = len(net.sockets)
    res["pool_full"] = client.pool.available() == client.pool.count
    # The same client must be reusable at once: a new connection, EHLO again, success.
    net2 = ScriptedNet(ok_script)
    client._net = net2
    try:
        client.send("ops@example.org", "next", "next send\n")
        res["next_ok"] = not net2.errors and not net2.leftover()
    except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
        res["next_ok"] = False
        res["next_error"] = repr(e)
    res["pool_full_after_next"] = client.pool.available() == client.pool.count
    return res
