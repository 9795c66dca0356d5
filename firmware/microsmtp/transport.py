# microsmtp: the blocking driver — runs a Session's engine over a socket. MIT licence.
# The requests and results are protocol.py's table. Per-phase deadlines (RFC 5321
# §4.5.3.2, NetX's defaults) are measured with ticks from the start of the phase and never
# restarted by progress, so a server (or a path) that trickles one byte at a time still
# times out: a reply, a command's write, the whole message, and the TLS handshake, which
# runs inside the first read or write after the wrap.
# Heap: after a client's first send nothing here allocates per mail, read or write but what
# the platform makes (the resolver's answer, the socket, its poll entry, the TLS object):
# the loop is one generator a Driver (a call with more than 11 words of locals and stack,
# py/objfun.c VM_MAX_STATE_ON_STACK, takes its frame from the heap: 320 B, twice a send),
# the poll object is kept, and replies are read into the session's rx buffer with
# readinto() (recv() made a bytes object of each read: ~1 KB a send).
import errno
import select
import sys
import time

from micropython import const

from .native import clear  # buf[pos:pos + n] = zeros, without a slice of zeros

# protocol.py's values (tests/test_units.py checks they match): requests and results.
_OP_CONNECT = const(1)
_OP_SEND = const(2)
_OP_WAIT = const(3)  # OP_RECV (4), the other read, needs no test of its own here
_OP_STARTTLS = const(5)
_OP_MAIL = const(6)
_OP_CLOSE = const(7)
_ERR_TIMEOUT = const(-1)
_ERR_CLOSED = const(-2)
_ERR_RESOLVE = const(-3)
_ERR_CONNECT = const(-4)
_ERR_TLS = const(-5)
_ERR_CERT = const(-6)
_TLS_IMPLICIT = const(2)
# What the loop yields to its owner when it must wait on its socket (self.sock) for at
# most self.timeout ms: readable, or writable (a connection, a full send buffer). The
# owner answers True when it can go on, False when the time is up: step() below polls,
# aio.py's driver awaits, so one loop serves both.
_IO_IN = const(8)
_IO_OUT = const(9)
_LINE_MAX = const(512)  # a reply line, RFC 5321 §4.5.3.1.5: reads never go past it
_T_CONNECT = const(0)  # index of the connect timeout in Session.timeouts


class Driver:
    """One client's connection: resolves, connects, wraps in TLS, reads and writes for the
    engine of its Session s, and closes. Made once a client (again after an exception);
    its loop resumed once a mail."""

    def __init__(self, net, s):
        self.net = net
        self.sock = self.raw = None
        # select.poll(), made at the first connection and kept: each connection only
        # registers its socket (a new poll object, its table and its ipoll() result tuple
        # were 200 B a connection).
        self.poller = None
        self.network = True  # the network module may tell our address (EHLO's literal)
        self.timeout = 0  # ms: how long the owner may wait at an _IO_IN or _IO_OUT
        # The driver loop, a generator: loop.send(more) resumes s.engine with `more` (1: a
        # mail is loaded, 0: end the session) until it yields OP_MAIL (a mail is over: the
        # caller's turn) or OP_CLOSE (the session is over, the connection closed), and
        # returns that op. None once an exception ended it (the caller makes a new Driver).
        self.loop = self.run(s)
        next(self.loop)

    def run(self, s):
        """The driver loop (self.loop): one generator a Driver, resumed once a mail, resuming
        the engine once a request; its frame is made once, with it."""
        net = self.net
        op = deadline = 0
        result = yield 0  # primed by __init__: its first `more` comes with the first send()
        sock = self.sock
        handshake = False  # a TLS handshake under way in the reads and writes (secure.py)
        try:
            while True:
                last = op
                op = s.engine.send(result)  # a new engine after an exception: s.engine
                result = 0
                if op == _OP_MAIL or op == _OP_CLOSE:
                    if op == _OP_CLOSE:
                        self.close()
                    result = yield op  # the caller's turn; back with the next `more`
                    sock = self.sock  # the caller may have closed the connection
                    op = 0
                    continue
                if op == _OP_CONNECT or op == _OP_STARTTLS:
                    if op == _OP_CONNECT:
                        # Here, not in methods: their try blocks would take those calls'
                        # frames from the heap, once a connection.
                        self.close()
                        s.os_error = None
                        try:
                            infos = net.getaddrinfo(s.host, s.port, 0, net.SOCK_STREAM)
                        except OSError as e:
                            infos = None
                            s.os_error = _name(e)
                        if not infos:  # some ports return [] instead of raising
                            s.os_error = s.os_error or "no address"
                            result = _ERR_RESOLVE
                            continue
                        if self.poller is None:
                            self.poller = (getattr(net, "poll", None) or select.poll)()
                        sock = None
                        for info in infos:  # IPv4 and IPv6, in the resolver's order
                            sock = net.socket(info[0], info[1], info[2])
                            self.sock = self.raw = sock
                            self.poller.register(sock, select.POLLOUT)
                            # Non-blocking from the start, as asyncio's open_connection:
                            # MicroPython's readinto() on a blocking socket waits until
                            # the buffer is full ("no short reads"), and the owner waits
                            # for the connection (step() polls, aio awaits).
                            sock.setblocking(False)
                            try:
                                try:
                                    sock.connect(info[4])
                                except OSError as e:
                                    if not e.args or e.args[0] != errno.EINPROGRESS:
                                        raise
                                    self.timeout = s.timeouts[_T_CONNECT]
                                    if not (yield _IO_OUT):
                                        raise OSError(errno.ETIMEDOUT) from None
                                    # Writable: connected, or refused (POLLERR/POLLHUP),
                                    # whose reason the second connect() raises.
                                    for _ in self.poller.ipoll(0):
                                        if _[1] & (select.POLLERR | select.POLLHUP):
                                            sock.connect(info[4])
                                            raise OSError(errno.ECONNREFUSED) from None
                                break
                            except OSError as e:
                                s.os_error = "no answer" if _blocked(e) else _name(e)
                                self.close()
                                sock = None
                        if sock is None:
                            result = _ERR_CONNECT
                            continue
                        # Nagle + delayed ACK: a message's second write waits for an ACK
                        # the server holds 40 ms (44 ms a message, against any server).
                        # ESP32 and lwIP ports name the option (their values differ: take
                        # them from the module); the unix port's module names neither, and
                        # Linux's values are fixed (IPPROTO_TCP 6, TCP_NODELAY 1).
                        k = getattr(net, "TCP_NODELAY", None)
                        if k is None and sys.platform == "linux":
                            k = 1
                        if k is not None:
                            try:
                                sock.setsockopt(getattr(net, "IPPROTO_TCP", 6), k, 1)
                            except (OSError, AttributeError):
                                pass  # a socket without options (a test's): Nagle stays on
                        if s.domain is None:  # RFC 5321 §4.1.4: EHLO names our address
                            ip = None
                            v6 = info[0] == net.AF_INET6
                            try:  # ESP32 and Pico W sockets lack it: no exception for that
                                if hasattr(sock, "getsockname"):
                                    ip = sock.getsockname()[0]
                            except (OSError, TypeError, IndexError):
                                pass
                            if ip is None and self.network:
                                # The interface knows. Tried once: a port without the module
                                # (unix) searches the filesystem for it on every import.
                                try:
                                    import network

                                    ip = None if v6 else network.WLAN(network.STA_IF).ifconfig()[0]
                                except ImportError:
                                    self.network = False
                                except (OSError, AttributeError):
                                    pass
                            # The unix port knows neither: loopback (documented; set
                            # client_domain).
                            ip = ip or ("::1" if v6 else "127.0.0.1")
                            s.local_literal = "[IPv6:%s]" % ip if v6 else "[%s]" % ip
                    if op == _OP_STARTTLS or s.tls == _TLS_IMPLICIT:
                        self.poller.unregister(sock)  # the plain socket leaves the table
                        self.sock = None
                        result = s.secure.wrap(net, sock, s)  # secure.py: TLS clients only
                        if isinstance(result, int):
                            continue  # the plain socket is closed with the session
                        sock = result
                        handshake = True
                        result = 0
                    self.poller.register(sock, select.POLLIN)  # (again: modifies)
                    self.sock = sock
                    continue
                # One deadline a phase: a reply's starts at its OP_WAIT (its OP_RECVs go on
                # with it); a write's at the first OP_SEND after any other request, and the
                # OP_SENDs that follow share it: a command, or the whole message from the
                # 354 to "." (io_ms is then the message timeout), so a server that reads a
                # byte a second cannot stretch the send.
                if op == _OP_WAIT or op == _OP_SEND and last != _OP_SEND:
                    deadline = time.ticks_add(time.ticks_ms(),
                                              s.io_ms if op == _OP_SEND else s.wait_ms)
                sending = op == _OP_SEND
                i = 0  # bytes of tx written; reads tried
                at = s.rx_end  # where a read goes: rx[at:_LINE_MAX]
                while True:
                    # Poll first, with the phase's deadline. Not before a TLS handshake's
                    # first read: that read sends the ClientHello, and poll() knows which
                    # way the handshake waits only after.
                    if not sending and (i or not handshake):
                        self.timeout = time.ticks_diff(deadline, time.ticks_ms())
                        self.poller.modify(sock, select.POLLIN)
                        if self.timeout <= 0 or not (yield _IO_IN):
                            result = _ERR_TIMEOUT
                            break
                    try:
                        if sending:
                            k = sock.write(s.tx, i, s.tx_n - i)  # an offset: no slice object
                            if k:
                                i += k
                            if i >= s.tx_n:
                                result = 0
                                break
                        else:
                            i += 1
                            # Into rx itself, which a reply usually starts at 0 (a view of
                            # its tail, 32 B, only for a line split over reads). readinto
                            # reads on while bytes are there: cleared first, so what it put
                            # there still shows if a reset ends it (below).
                            clear(s.rx, at, _LINE_MAX - at)
                            k = sock.readinto(memoryview(s.rx)[at:] if at else s.rx,
                                              _LINE_MAX - at)
                            if k is not None:  # None: nothing yet (TLS: a record not whole)
                                result = k
                                break
                    except OSError as e:
                        if not _blocked(e):
                            s.os_error = _name(e)
                            result = _ERR_TLS if handshake else _ERR_CLOSED
                            if not sending and not handshake:
                                # MicroPython's readinto() reads on after a whole reply and
                                # raises the reset that followed it (a server that hung up
                                # with a 550, smtp-sink -A): the reply counts, the reset is
                                # the next read's answer.
                                k = _LINE_MAX - at  # up to the last byte not zero
                                while k and not s.rx[at + k - 1]:
                                    k -= 1
                                result = k or result
                            break
                    except ValueError as e:
                        if not handshake:
                            raise
                        # MicroPython raises a rejected certificate as ValueError with
                        # mbedTLS's reason, from the read or write that ran the handshake
                        # (modtls_mbedtls.c, ssl_check_async_handshake_failure); the shim too.
                        s.os_error = " ".join(str(e).split()).rstrip(".") or \
                            "verification failed"
                        result = _ERR_CERT
                        break
                    if sending:  # the socket did not take it all: wait until it can
                        self.timeout = time.ticks_diff(deadline, time.ticks_ms())
                        self.poller.modify(sock, select.POLLOUT)
                        if self.timeout <= 0 or not (yield _IO_OUT):
                            s.wait_ms = s.io_ms  # the server stopped reading
                            result = _ERR_TIMEOUT
                            break
                handshake = handshake and result < 0  # bytes moved: the handshake is over
        except BaseException:
            # Never an open socket behind an exception (a bug, MemoryError,
            # KeyboardInterrupt); the generator is over with it: the next mail makes another.
            self.loop = None
            self.close()
            raise

    def step(self, more):
        """The blocking owner's resume: the loop until it yields OP_MAIL or OP_CLOSE,
        polling where it waits on its socket."""
        op = self.loop.send(more)
        while op >= _IO_IN:
            op = self.loop.send(_ready(self.poller, self.timeout))
        return op

    def close(self):
        # (self's attributes, not locals: a try with more of them would take this call's
        # frame from the heap, a few times a send.)
        if self.sock is not None:
            self.poller.unregister(self.sock)  # registered whenever it is self.sock
            try:
                self.sock.close()
            except OSError:
                pass
        # The plain one too: a TLS socket whose handshake failed has let go of it
        # (modtls_mbedtls.c sets its sock to NULL), so closing that would not close this.
        if self.raw is not None and self.raw is not self.sock:
            try:
                self.raw.close()
            except OSError:
                pass
        self.sock = self.raw = None


def _name(e):
    """'ECONNREFUSED' rather than '[Errno 111]': what a person can search for."""
    code = e.args[0] if e.args else 0
    if len(e.args) > 1 and isinstance(e.args[1], str):
        return e.args[1]  # mbedTLS errors come with their name
    names = getattr(errno, "errorcode", None) or {}
    # ESP32's lwIP and getaddrinfo give negative numbers that have no name.
    return names.get(code) or "OSError %s" % code


def _blocked(e):
    # EAGAIN: non-blocking and nothing to move yet; ETIMEDOUT: a blocking socket timed out.
    code = e.args[0] if e.args else 0
    return code == errno.EAGAIN or code == errno.ETIMEDOUT or code == errno.EINPROGRESS


def _ready(poller, timeout):
    # ipoll() reuses one result tuple where poll() makes a list each call.
    for _ in poller.ipoll(timeout):
        return True
    return False
