# microsmtp: the blocking driver — runs a protocol.Session over a socket. MIT licence.
# Per-phase deadlines (RFC 5321 §4.5.3.2, NetX's defaults) are measured with ticks from the
# start of the phase and never restarted by progress, so a server (or a path) that trickles
# one byte at a time still times out: a reply, a command's write, the whole message, and
# the TLS handshake, which runs inside the first read or write after the wrap.
import errno
import select
import sys
import time

from micropython import const

# protocol.py's values (tests/test_units.py checks they match): requests and results.
_OP_CONNECT = const(1)
_OP_SEND = const(2)
_OP_WAIT = const(3)
_OP_STARTTLS = const(5)
_ERR_TIMEOUT = const(-1)
_ERR_CLOSED = const(-2)
_ERR_RESOLVE = const(-3)
_ERR_CONNECT = const(-4)
_ERR_TLS = const(-5)
_ERR_CERT = const(-6)
_TLS_IMPLICIT = const(2)
_LINE_MAX = const(512)  # a reply line, RFC 5321 §4.5.3.1.5: reads never go past it
_T_CONNECT = const(0)  # index of the connect timeout in Session.timeouts


def run(session, net):
    """Drive one session to its end; SMTPError propagates. The socket is always closed."""
    s = session
    sock = raw = poller = result = None
    gen = s.run()
    deadline = op = 0
    tls = False  # a TLS handshake is under way (secure.wrap leaves it to the next I/O)
    try:
        while True:
            last = op
            try:
                op = gen.send(result)
            except StopIteration:
                return
            if op == _OP_CONNECT or op == _OP_STARTTLS:
                if op == _OP_CONNECT:
                    sock = raw = result = _connect(net, s)
                    if isinstance(sock, int):
                        sock = raw = None
                        continue
                    # Non-blocking from here on: MicroPython's readinto() on a blocking
                    # socket waits until the buffer is full ("no short reads"); a
                    # non-blocking one returns what has come, and poll() waits with the
                    # phase's deadline.
                    sock.setblocking(False)
                if op == _OP_STARTTLS or s.tls == _TLS_IMPLICIT:
                    if poller:
                        poller.unregister(sock)
                        poller = None
                    from .secure import wrap  # only when TLS is used

                    result = wrap(net, sock, s)
                    if isinstance(result, int):
                        continue  # the plain socket is closed below
                    sock = result
                    tls = True
                poller = (getattr(net, "poll", None) or select.poll)()
                poller.register(sock, select.POLLIN)
                result = 0
            else:
                # One deadline a phase: a reply's starts at its _OP_WAIT (its _OP_RECVs go
                # on with it); a write's at the first _OP_SEND after any other request, and
                # the _OP_SENDs that follow share it: a command, or the whole message from
                # the 354 to "." (protocol.py sets io_ms to the message timeout for it), so
                # a server that reads a byte a second cannot stretch the send.
                if op == _OP_WAIT or op == _OP_SEND and last != _OP_SEND:
                    deadline = time.ticks_add(time.ticks_ms(),
                                              s.io_ms if op == _OP_SEND else s.wait_ms)
                result = _io(sock, poller, s, deadline, op == _OP_SEND, tls)
                tls = tls and result < 0  # bytes moved: the handshake is over
    finally:
        if poller:
            poller.unregister(sock)
        # Both: a TLS socket whose handshake failed has let go of the plain one
        # (modtls_mbedtls.c sets its sock to NULL), so closing it would not close that.
        for c in (sock, raw):
            if c:
                try:
                    c.close()
                except OSError:
                    pass


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


def _ready(poller, ms):
    # MicroPython's ipoll() reuses one result tuple; poll() makes a list each call.
    if hasattr(poller, "ipoll"):
        for _ in poller.ipoll(ms):
            return True
        return False
    return bool(poller.poll(ms))


def _reason(e):
    # mbedTLS's verification text: one reason a line, made one sentence (OpenSSL's, through
    # the shim, ends with its own "." already).
    return " ".join(str(e).split()).rstrip(".") or "verification failed"


def _io(sock, poller, s, deadline, sending, tls):
    """Receive into rx (-> bytes read, 0 when closed) or send all of tx (-> 0); or ERR_*.

    tls: the TLS handshake is still under way inside these reads and writes; a failure is
    then _ERR_TLS, or _ERR_CERT when the certificate was rejected."""
    i = 0
    while True:
        try:
            if not sending:
                if hasattr(sock, "recv"):
                    # One read. MicroPython's readinto() keeps reading to fill the buffer and,
                    # when the server sends its last reply and then resets (smtp-sink -A),
                    # raises ECONNRESET and drops the reply it already had.
                    # At most 128 bytes a read: a small block is easy to find in a full heap.
                    data = sock.recv(min(128, _LINE_MAX - s.rx_end))
                    k = None if data is None else len(data)  # None: TLS, nothing yet
                    if k:
                        s.rx_mv[s.rx_end:s.rx_end + k] = data
                else:  # the CPython shim: its readinto is one recv_into
                    k = sock.readinto(s.rx_mv[s.rx_end:_LINE_MAX])
            elif i == 0 and s.tx_n == len(s.tx):  # a full buffer: no slice object
                k = sock.write(s.tx)
            else:
                k = sock.write(s.tx_mv[i:s.tx_n])
        except OSError as e:
            if not _blocked(e):
                s.os_error = _name(e)
                return _ERR_TLS if tls else _ERR_CLOSED
            k = None
        except ValueError as e:
            if not tls:
                raise
            # MicroPython raises a rejected certificate as ValueError with mbedTLS's
            # reason, from the read or write that ran the handshake (modtls_mbedtls.c,
            # ssl_check_async_handshake_failure); the CPython shim does the same.
            s.os_error = _reason(e)
            return _ERR_CERT
        if sending and k:
            i += k
            if i >= s.tx_n:
                return 0
            continue
        if k is not None and not sending:
            return k
        left = time.ticks_diff(deadline, time.ticks_ms())
        poller.modify(sock, select.POLLOUT if sending else select.POLLIN)
        if left <= 0 or not _ready(poller, left):
            if sending:  # the server stopped reading (a slow reader): no unbounded wait
                s.wait_ms = s.io_ms
            return _ERR_TIMEOUT


def _nodelay(net, sock):
    """Nagle + delayed ACK: a message's second write waits for an ACK the server holds
    40 ms (44 ms a message, against any server). ESP32 and lwIP ports name the option (their
    values differ: take them from the module); the unix port's module names neither, and
    Linux's values are fixed (IPPROTO_TCP 6, TCP_NODELAY 1)."""
    opt = getattr(net, "TCP_NODELAY", None)
    level = getattr(net, "IPPROTO_TCP", 6)
    if opt is None and sys.platform == "linux":
        opt = 1
    if opt is not None:
        try:
            sock.setsockopt(level, opt, 1)
        except (OSError, AttributeError):
            pass  # a socket without options (a test's): Nagle stays on


def _local_literal(net, s, sock, v6):
    ip = None
    try:
        ip = sock.getsockname()[0]
    except (AttributeError, OSError, TypeError, IndexError):
        # ESP32 and Pico W sockets lack getsockname; the interface knows. Tried once: a
        # port without the module (unix) searches the filesystem for it on every import.
        if s.network:
            try:
                import network

                ip = None if v6 else network.WLAN(network.STA_IF).ifconfig()[0]
            except ImportError:
                s.network = False
            except (OSError, AttributeError):
                pass
    # The unix port knows neither: loopback (documented; set client_domain).
    ip = ip or ("::1" if v6 else "127.0.0.1")
    s.local_literal = "[IPv6:%s]" % ip if v6 else "[%s]" % ip


def _connect(net, s):
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
        _nodelay(net, sock)
        if s.domain is None:  # RFC 5321 §4.1.4: EHLO names our address in brackets
            _local_literal(net, s, sock, info[0] == net.AF_INET6)
        return sock
    return _ERR_CONNECT
