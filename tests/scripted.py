# A scripted SMTP server behind a fake `net` module, for the scenario tests. It runs on
# CPython and on the MicroPython unix port alike (both runners import this file), and is
# the one mock in the suite: it produces faults a real server cannot be made to produce
# on cue (a stall at an exact step, a reply split at an exact byte, a 9-digit code, a
# pipelined group refused at MAIL). "W" events assert what one write holds: RFC 2920's
# groups are about writes, which "C" events cannot see (they match the byte stream).
# Lean on purpose: under MicroPython it shares a 32 KB heap with microsmtp, so client bytes
# are matched as they are written and go to a file, never collected in RAM.
import errno
import select


class ScriptedSocket:
    def __init__(self, net):
        self.net = net
        self.closed = False
        self.handshake = False  # a deferred TLS handshake: the next read or write runs it
        self.reset = False  # the connection was reset (a "reset" event was read)

    def settimeout(self, seconds):
        pass

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        how = self.net.connect_mode
        if how == "refused":
            raise OSError(errno.ECONNREFUSED)
        if how == "timeout":
            raise OSError(errno.ETIMEDOUT)

    def write(self, buf, off=0, n=None):  # MicroPython's stream write(buf, off, max_len)
        net = self.net
        if self.handshake:
            self.handshake = False
            net.ssl.handshake()
        if self.reset:  # a write after a reset fails too
            raise OSError(errno.ECONNRESET)
        if net.peek() == "wfail":
            net.pos += 1
            raise OSError(errno.ECONNRESET)
        n = len(buf) - off if n is None else n
        data = bytes(buf[off:off + n])
        if net.wire is not None:
            net.wire.write(data)
        net.feed(data)
        return n

    def readinto(self, buf, nbytes=None):
        """MicroPython's stream readinto (py/stream.c, mp_stream_rw): reads on while bytes
        are there, at most nbytes; None when none are yet, 0 once closed. An "S" event is
        one segment: a read takes what is left of it and stops (the next has not come yet,
        EAGAIN), unless a "reset" is right behind it, which the same read meets: it raises,
        and the bytes it had read stay in buf, uncounted, as on MicroPython."""
        net = self.net
        if self.handshake:
            self.handshake = False
            net.ssl.handshake()
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        done = 0
        while True:
            ev = net.peek()
            if ev == "reset":
                net.pos += 1
                self.reset = True
                raise OSError(errno.ECONNRESET)
            if done or ev == "stall":  # stall: nothing yet; ScriptedPoll.poll() times out
                return done or None
            if ev is None:
                return 0
            if ev == "close":
                net.pos += 1
                return 0
            if ev != "S" and ev != "S1":  # "S1": the same bytes, one per read
                net.error("client read while the script expected " + ev)
                return 0
            data = net.pending
            done = min(n, len(data), 1 if ev == "S1" else len(data))
            buf[:done] = data[:done]
            net.pending = data[done:]
            if net.pending:
                return done
            net.next()

    def close(self):
        self.closed = True


class ScriptedPoll:
    """select.poll() for the scripted socket: a "stall" is a poll that times out at once."""

    def register(self, sock, mask):
        self.sock = sock
        self.mask = mask

    def modify(self, sock, mask):
        self.mask = mask

    def unregister(self, sock):
        self.mask = 0

    def poll(self, timeout_ms):
        net = self.sock.net
        if self.mask & select.POLLIN and net.peek() == "stall":
            net.pos += 1
            return []
        return [(self.sock, self.mask)]

    ipoll = poll  # MicroPython's allocation-free twin; here the same list


class ScriptedSSL:
    """ssl for the scripted socket: the handshake is a ["tls"] event in the script; ["tls",
    "cert"] fails verification and ["tls", "fail"] the handshake, as MicroPython reports them
    (ValueError with the reason, OSError), in wrap_socket() or, deferred, in the next read
    or write."""

    PROTOCOL_TLS_CLIENT = 0
    CERT_NONE = 0
    CERT_REQUIRED = 2

    def __init__(self, net):
        self.net = net

    def SSLContext(self, protocol):  # noqa: N802 - the ssl module's name
        return self

    def load_verify_locations(self, cadata):
        pass

    def wrap_socket(self, sock, server_hostname=None, do_handshake_on_connect=True):
        self.net.feed(b"")
        if do_handshake_on_connect:
            self.handshake()
        else:
            sock.handshake = True
        return sock

    def handshake(self):
        net = self.net
        if net.peek() != "tls":
            net.error("TLS handshake where the script had %s" % net.peek())
            raise OSError(-29312, "MBEDTLS_ERR_SSL_CONN_EOF")
        how = net.script[net.pos][1] if len(net.script[net.pos]) > 1 else "ok"
        net.next()
        if how == "cert":
            raise ValueError("\nThe certificate validity has expired\n")
        if how == "fail":
            raise OSError(-29184, "MBEDTLS_ERR_SSL_INVALID_RECORD")
        net.secure = True


class ScriptedNet:
    """The slice of the `socket` module (plus poll and ssl) that microsmtp.transport uses."""

    AF_INET = 2
    AF_INET6 = 10
    SOCK_STREAM = 1

    def __init__(self, script, connect_mode="ok", wire=None):
        self.script = script
        self.connect_mode = connect_mode
        self.wire = wire  # a file that receives every client byte, or None
        self.pos = -1
        self.errors = []
        self.sockets = []
        self.secure = False
        self.ssl = ScriptedSSL(self)
        self.next()

    def next(self):
        self.pos += 1
        self.got = 0  # bytes of the current "C" event matched so far
        self.tail = b""  # the last bytes seen while looking for a "C*" end
        if self.peek() in ("S", "S1", "C", "C*", "W", "W*"):
            self.pending = self.script[self.pos][1].encode()

    def peek(self):
        return self.script[self.pos][0] if self.pos < len(self.script) else None

    def error(self, text):
        if len(self.errors) < 3:
            self.errors.append(text)
        self.pos = len(self.script)

    def feed(self, data):
        """Match client bytes against "C" (exact), "C*" (anything up to this end), "W" (one
        whole write, exact) and "W*" (one whole write ending so); data is one write."""
        i = 0
        while i < len(data) and not self.errors:
            ev = self.peek()
            want = self.pending
            if ev == "C":
                take = min(len(want) - self.got, len(data) - i)
                if data[i:i + take] != want[self.got:self.got + take]:
                    self.error("client wrote %r, script expected %r" % (data[i:i + 60], want))
                    return
                self.got += take
                i += take
                if self.got == len(want):
                    self.next()
            elif ev == "C*":
                seen = self.tail + data[i:]
                k = seen.find(want)
                if k < 0:
                    self.tail = seen[-len(want):]
                    return
                i += k + len(want) - len(self.tail)
                self.next()
            elif ev == "W" or ev == "W*":
                # i > 0: this write began with the bytes of an earlier event, so the
                # boundary the script asserts is not there.
                if i or (data != want if ev == "W" else not data.endswith(want)):
                    self.error("client wrote %r in one write, script expected %s %r" % (
                        data[i:i + 60] if ev == "W" else data[-60:], ev, want))
                    return
                i = len(data)
                self.next()
            else:
                self.error("client wrote %r where the script had %s" % (data[i:i + 60], ev))

    def getaddrinfo(self, host, port, af=0, type=0, proto=0, flags=0):
        if self.connect_mode == "resolve":
            raise OSError(-2)
        return [(self.AF_INET, self.SOCK_STREAM, 6, "", ("192.0.2.25", port))]

    def poll(self):
        return ScriptedPoll()

    async def aio_wait(self, sock, readable, timeout_ms):
        """microsmtp.aio's wait (the shim's aio_wait on CPython), as ScriptedPoll.poll: a
        "stall" is a wait that times out at once."""
        if readable and self.peek() == "stall":
            self.pos += 1
            return False
        return True

    def socket(self, af=2, type=1, proto=0):
        s = ScriptedSocket(self)
        self.sockets.append(s)
        return s

    def leftover(self):
        return [" ".join(ev) for ev in self.script[self.pos:]]  # e.g. "S 221 bye", "tls"


def _session(microsmtp, client, mails, to, subject, body, do, aio):
    """send["mails"] (to, body each) through client.session(): [status of each (0: sent)]
    and the first SMTPError. With aio, each step is a coroutine `do` runs (asyncio.run):
    the session's __aenter__, sends and __aexit__, as `async with` would call them."""
    out = []
    first = None
    s = client.session()
    do(s.__aenter__() if aio else s.__enter__())
    try:
        for m in mails:
            try:
                do(s.send(m.get("to", to), subject, m.get("body", body)))
                out.append(0)
            except microsmtp.SMTPError as e:
                out.append(e.status)
                first = first or e
    finally:
        do(s.__aexit__(None, None, None) if aio else s.__exit__(None, None, None))
    return out, first


def _blocking(result):
    return result


AUTH = {"NONE": 0xFFFF, "LOGIN": 1, "PLAIN": 3, "CRAM_MD5": 2, "XOAUTH2": 4, "AUTO": 0}


def run(microsmtp, sc, ok_script, wire=None, aio=None):
    """Run one scenario, then a plain send on the same client; return a result dict.

    ok_script("auth" or "noauth"): the follow-up session for the client's config (loaded
    only when needed, to keep the MicroPython heap small); wire: a file for the client's
    bytes of the scenario; aio: microsmtp.aio, to run it all through the asyncio driver
    (each call awaited in asyncio.run)."""
    net = ScriptedNet(sc["script"], sc.get("connect", "ok"), wire)
    cfg = sc.get("client", {})
    do = _blocking
    if aio is not None:
        import asyncio

        do = asyncio.run
    client = (aio or microsmtp).Client(
        "mail.test", 25, from_address="dev@example.org", username=cfg.get("username"),
        password=cfg.get("password"), client_domain="dev.example.org",
        auth=AUTH[cfg.get("auth", "PLAIN")], timeouts=cfg.get("timeouts"), net=net,
        pool=microsmtp.BufferPool(cfg.get("pool_count", 4)), tls=cfg.get("tls"),
        insecure=cfg.get("insecure", False), cadata=cfg.get("cadata"),
        oauth_token=cfg.get("oauth_token"),
        allow_plaintext_auth=cfg.get("allow_plaintext_auth", True))
    send = sc.get("send", {})
    res = {"name": sc["name"], "status": 0, "step": None, "reply_code": None, "error": None,
           "refused": None}
    to = send.get("to", "ops@example.org")
    subject = send.get("subject", "Boiler at 92 C")
    body = send.get("body", "Temperature 92 C\n")
    if "body_repeat" in send:  # an iterator of chunks; never the whole body in RAM
        chunk, count = send["body_repeat"]
        body = (chunk for _ in range(count))
    try:
        if send.get("api") == "mail_send":
            res["status"] = do(client.mail_send(to, send.get("priority", 2), subject, body,
                                                send.get("body_length")))
        elif "mails" in send:  # several mails over one session: each one's status
            res["mails"], first = _session(microsmtp, client, send["mails"], to, subject,
                                           body, do, aio is not None)
            if first is not None:
                raise first  # the first mail's error, for the checks below
        else:
            do(client.send(to, subject, body, send.get("priority", 2)))
    except microsmtp.SMTPError as e:
        res["status"] = e.status
        res["step"] = e.step
        res["reply_code"] = e.reply_code
        res["error"] = str(e)
        res["temporary"] = e.temporary
        res["reply"] = e.reply
        res["repr"] = repr(e)
        if e.refused:
            res["refused"] = [[r[0], r[1]] for r in e.refused]
    except ValueError as e:
        res["status"] = "ValueError"
        res["error"] = str(e)
    res["script_errors"] = net.errors
    res["leftover"] = net.leftover()
    res["sockets_closed"] = all(s.closed for s in net.sockets)
    res["connections"] = len(net.sockets)
    res["secure"] = net.secure
    res["pool_full"] = client.pool.available() == client.pool.count
    net = None
    # The same client must be reusable at once: a new connection, EHLO again, success.
    auth = cfg.get("username") and cfg.get("auth") != "NONE"
    kind = {1: "starttls", 2: "implicit"}.get(cfg.get("tls"), "auth" if auth else "noauth")
    kind = sc.get("next", kind)  # a follow-up script of its own (OK_SCRIPTS' keys)
    net2 = ScriptedNet(ok_script(kind))
    client._net = net2
    try:
        do(client.send("ops@example.org", "next", "next send\n"))
        res["next_ok"] = not net2.errors and not net2.leftover()
    except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
        res["next_ok"] = False
        res["next_error"] = repr(e)
    res["pool_full_after_next"] = client.pool.available() == client.pool.count
    return res
