# microsmtp: the blocking driver — runs a protocol.Session over a socket. MIT licence.
# Per-phase deadlines (RFC 5321 §4.5.3.2, NetX's defaults) are measured with ticks since
# the command went out, so a server that trickles one byte at a time still times out.
import errno
import select
import time

from .protocol import (
    ERR_CLOSED,
    ERR_CONNECT,
    ERR_RESOLVE,
    ERR_TIMEOUT,
    OP_CONNECT,
    OP_RECV,
    OP_SEND,
    OP_WAIT,
)


def run(session, net):
    """Drive one session to its end; SMTPError propagates. The socket is always closed."""
    sock = None
    poller = None
    gen = session.run()
    result = None
    deadline = 0
    try:
        while True:
            try:
                op = gen.send(result)
            except StopIteration:
                return
            if op == OP_RECV or op == OP_WAIT:
                if op == OP_WAIT:
                    deadline = time.ticks_add(time.ticks_ms(), session.wait_ms)
                result = _recv(sock, poller, session, deadline)
            elif op == OP_SEND:
                result = _send(sock, poller, session)
            elif op == OP_CONNECT:
                sock = _connect(net, session)
                if sock is None:
                    result = session.connect_result
                else:
                    # Non-blocking from here on: MicroPython's readinto() on a blocking socket
                    # waits until the buffer is full ("no short reads"); a non-blocking one
                    # returns what has arrived, and poll() waits with the phase's deadline.
                    sock.setblocking(False)
                    poller = (getattr(net, "poll", None) or select.poll)()
                    poller.register(sock, select.POLLIN)
                    result = 0
    finally:
        if sock is not None:
            if poller is not None:
                poller.unregister(sock)
            try:
                sock.close()
            except OSError:
                pass


def describe(e):
    """'ECONNREFUSED' rather than '[Errno 111]': what a person can search for."""
    code = e.args[0] if e.args else None
    if isinstance(code, int):
        names = getattr(errno, "errorcode", None)
        if names and code in names:
            return names[code]
        return "OSError %d" % code  # ESP32 lwIP and getaddrinfo give negative numbers
    return str(e) or "OSError"


def _timed_out(e):
    # EAGAIN: a non-blocking socket with nothing to give yet; ETIMEDOUT: a blocking one.
    code = e.args[0] if e.args else None
    return code == errno.ETIMEDOUT or code == errno.EAGAIN or code == errno.EINPROGRESS


def _wait(poller, deadline):
    """Wait until the socket is ready or the deadline passes; False on timeout."""
    left = time.ticks_diff(deadline, time.ticks_ms())
    return left > 0 and bool(poller.poll(left))


def _recv(sock, poller, s, deadline):
    mv = s.rx_mv[s.rx_end:s.rx_cap]
    while True:
        try:
            n = sock.readinto(mv)
        except OSError as e:
            if not _timed_out(e):
                s.os_error = describe(e)
                return ERR_CLOSED
            n = None
        if n is not None:
            return n  # 0: the server closed the connection
        if not _wait(poller, deadline):
            return ERR_TIMEOUT


def _send(sock, poller, s):
    mv = s.tx_mv
    n = s.tx_n
    i = 0
    deadline = time.ticks_add(time.ticks_ms(), s.io_ms)
    poller.modify(sock, select.POLLOUT)
    try:
        while i < n:
            try:
                k = sock.write(mv[i:n])
            except OSError as e:
                if not _timed_out(e):
                    s.os_error = describe(e)
                    return ERR_CLOSED
                k = None
            if k:
                i += k
            elif not _wait(poller, deadline):  # the server stopped reading (slow reader)
                s.wait_ms = s.io_ms
                return ERR_TIMEOUT
    finally:
        poller.modify(sock, select.POLLIN)
    return 0


def _connect(net, s):
    try:
        infos = net.getaddrinfo(s.host, s.port, 0, net.SOCK_STREAM)
    except OSError as e:
        s.os_error = describe(e)
        s.connect_result = ERR_RESOLVE
        return None
    if not infos:  # some ports return [] instead of raising (users then hit IndexError)
        s.os_error = "no address"
        s.connect_result = ERR_RESOLVE
        return None
    s.os_error = None
    for info in infos:  # IPv4 and IPv6, in the resolver's order
        sock = net.socket(info[0], info[1], info[2])
        try:
            sock.settimeout(s.connect_ms / 1000)
            sock.connect(info[4])
        except OSError as e:
            s.os_error = "no answer" if _timed_out(e) else describe(e)
            sock.close()
            continue
        s.local_literal = _local_literal(sock, info[0] == net.AF_INET6)
        return sock
    s.connect_result = ERR_CONNECT
    return None


def _local_literal(sock, v6):
    """RFC 5321 §4.1.4: without a domain name, EHLO names the client's address in brackets."""
    ip = None
    if hasattr(sock, "getsockname"):
        try:
            ip = sock.getsockname()[0]
        except (OSError, TypeError, IndexError):
            ip = None
    if ip is None and not v6:
        try:
            import network  # ESP32 and Pico W: sockets lack getsockname, the interface knows

            ip = network.WLAN(network.STA_IF).ifconfig()[0]
        except (ImportError, OSError, AttributeError):
            ip = None
    if not ip:  # the unix port knows neither: loopback (documented; set client_domain)
        ip = "::1" if v6 else "127.0.0.1"
    return "[IPv6:%s]" % ip if v6 else "[%s]" % ip
