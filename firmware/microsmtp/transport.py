# microsmtp: the blocking driver — runs a Session's engine over a socket. MIT licence.
# The requests and results are protocol.py's table. Per-phase deadlines (RFC 5321
# §4.5.3.2, NetX's defaults) are measured with ticks from the start of the phase and never
# restarted by progress, so a server (or a path) that trickles one byte at a time still
# times out: a reply, a command's write, the whole message, and the TLS handshake, which
# runs inside the first read or write after the wrap.
# Heap: Driver.run() is one call a mail; inside it no call allocates per read or write
# but sock.recv() (MicroPython's sockets have no single-read readinto: readinto reads on to
# fill the buffer and, when the server's last reply is followed by a reset (smtp-sink -A),
# raises ECONNRESET and drops the reply it had).
import errno
import select
import sys
import time

from micropython import const

# protocol.py's values (tests/test_units.py checks they match): requests and results.
_OP_CONNECT = const(1)
_OP_SEND = const(2)
_OP_WAIT = const(3)
_OP_RECV = const(4)
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
_LINE_MAX = const(512)  # a reply line, RFC 5321 §4.5.3.1.5: reads never go past it
_READ = const(128)  # at most a read: a small block is easy to find in a full heap
_T_CONNECT = const(0)  # index of the connect timeout in Session.timeouts


class Driver:
    """One client's connection: resolves, connects, wraps in TLS, reads and writes for the
    engine of its Session, and closes. Made once a client; run() once a mail."""

    def __init__(self, net):
        self.net = net
        self.sock = self.raw = self.poller = None
        self.network = True  # the network module may tell our address (_local_literal)

    def run(self, s, more):
        """Resume s.engine with `more` (1: a mail is loaded, 0: end the session) until it
        yields OP_MAIL (a mail is over: the caller's turn) or OP_CLOSE (the session is over:
        the connection closed); that op."""
        gen = s.engine
        net = self.net
        sock = self.sock
        poller = self.poller
        op = deadline = 0
        result = more
        handshake = False  # a TLS handshake under way in the reads and writes (secure.py)
        try:
            while True:
                last = op
                op = gen.send(result)
                result = 0
                if op == _OP_MAIL:
                    return op
                if op == _OP_CLOSE:
                    self.close()
                    return op
                if op == _OP_CONNECT or op == _OP_STARTTLS:
                    if op == _OP_CONNECT:
                        self.close()
                        sock = self.raw = self._connect(s)
                        if isinstance(sock, int):
                            result = sock
                            sock = self.raw = None
                            continue
                        # Non-blocking from here on: MicroPython's readinto() on a blocking
                        # socket waits until the buffer is full ("no short reads"); poll()
                        # waits with the phase's deadline instead.
                        sock.setblocking(False)
                    if op == _OP_STARTTLS or s.tls == _TLS_IMPLICIT:
                        if poller:
                            poller.unregister(sock)
                            poller = None
                        from .secure import wrap  # only when TLS is used

                        result = wrap(net, sock, s)
                        if isinstance(result, int):
                            continue  # the plain socket is closed with the session
                        sock = result
                        handshake = True
                        result = 0
                    poller = (getattr(net, "poll", None) or select.poll)()
                    poller.register(sock, select.POLLIN)
                    self.sock = sock
                    self.poller = poller
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
                while True:
                    # Poll first: a read with nothing there raises EAGAIN (an exception
                    # object). Not before a TLS handshake's first read: that read sends the
                    # ClientHello, and poll() knows which way the handshake waits only after.
                    if not sending and (i or not handshake):
                        left = time.ticks_diff(deadline, time.ticks_ms())
                        poller.modify(sock, select.POLLIN)
                        if left <= 0 or not _ready(poller, left):
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
                            data = sock.recv(min(_READ, _LINE_MAX - s.rx_end))
                            if data is not None:  # None: TLS, a record not whole yet
                                result = len(data)
                                s.rx[s.rx_end:s.rx_end + result] = data
                                break
                    except OSError as e:
                        if not _blocked(e):
                            s.os_error = _name(e)
                            result = _ERR_TLS if handshake else _ERR_CLOSED
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
                        left = time.ticks_diff(deadline, time.ticks_ms())
                        poller.modify(sock, select.POLLOUT)
                        if left <= 0 or not _ready(poller, left):
                            s.wait_ms = s.io_ms  # the server stopped reading
                            result = _ERR_TIMEOUT
                            break
                handshake = handshake and result < 0  # bytes moved: the handshake is over
        except BaseException:
            self.close()  # never an open socket behind an exception (a bug, KeyboardInterrupt)
            raise

    def _connect(self, s):
        """A connected socket, or _ERR_RESOLVE / _ERR_CONNECT (os_error: why)."""
        net = self.net
        try:
            infos = net.getaddrinfo(s.host, s.port, 0, net.SOCK_STREAM)
        except OSError as e:
            infos = None
            s.os_error = _name(e)
        if not infos:  # some ports return [] instead of raising (users then hit IndexError)
            s.os_error = s.os_error or "no address"
            return _ERR_RESOLVE
        for info in infos:  # IPv4 and IPv6, in the resolver's order
            sock = net.socket(info[0], info[1], info[2])
            try:
                sock.settimeout(s.timeouts[_T_CONNECT] / 1000)
                sock.connect(info[4])
            except OSError as e:
                s.os_error = "no answer" if _blocked(e) else _name(e)
                sock.close()
                continue
            # Nagle + delayed ACK: a message's second write waits for an ACK the server holds
            # 40 ms (44 ms a message, against any server). ESP32 and lwIP ports name the
            # option (their values differ: take them from the module); the unix port's module
            # names neither, and Linux's values are fixed (IPPROTO_TCP 6, TCP_NODELAY 1).
            opt = getattr(net, "TCP_NODELAY", None)
            if opt is None and sys.platform == "linux":
                opt = 1
            if opt is not None:
                try:
                    sock.setsockopt(getattr(net, "IPPROTO_TCP", 6), opt, 1)
                except (OSError, AttributeError):
                    pass  # a socket without options (a test's): Nagle stays on
            if s.domain is None:  # RFC 5321 §4.1.4: EHLO names our address in brackets
                self._local_literal(s, sock, info[0] == net.AF_INET6)
            return sock
        return _ERR_CONNECT

    def _local_literal(self, s, sock, v6):
        ip = None
        try:
            ip = sock.getsockname()[0]
        except (AttributeError, OSError, TypeError, IndexError):
            # ESP32 and Pico W sockets lack getsockname; the interface knows. Tried once: a
            # port without the module (unix) searches the filesystem for it on every import.
            if self.network:
                try:
                    import network

                    ip = None if v6 else network.WLAN(network.STA_IF).ifconfig()[0]
                except ImportError:
                    self.network = False
                except (OSError, AttributeError):
                    pass
        # The unix port knows neither: loopback (documented; set client_domain).
        ip = ip or ("::1" if v6 else "127.0.0.1")
        s.local_literal = "[IPv6:%s]" % ip if v6 else "[%s]" % ip

    def close(self):
        if self.poller:
            try:
                self.poller.unregister(self.sock)
            except (OSError, KeyError):
                pass
        # Both: a TLS socket whose handshake failed has let go of the plain one
        # (modtls_mbedtls.c sets its sock to NULL), so closing it would not close that.
        for c in (self.sock, self.raw):
            if c:
                try:
                    c.close()
                except OSError:
                    pass
        self.sock = self.raw = self.poller = None


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
