# microsmtp: the blocking driver — runs a protocol.Session over a socket. MIT licence.
# Per-phase deadlines (RFC 5321 §4.5.3.2, NetX's defaults) are measured with ticks since
# the command went out, so a server that trickles one byte at a time still times out.
import errno
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
                result = _recv(sock, session, deadline)
            elif op == OP_SEND:
                result = _send(sock, session)
            elif op == OP_CONNECT:
                sock = _connect(net, session)
                result = 0 if sock is not None else session.connect_result
    finally:
        if sock is not None:
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
    code = e.args[0] if e.args else None
    return code == errno.ETIMEDOUT or code == errno.EAGAIN


def _recv(sock, s, deadline):
    left = time.ticks_diff(deadline, time.ticks_ms())
    if left <= 0:
        return ERR_TIMEOUT
    try:
        sock.settimeout(left / 1000)
        n = sock.readinto(s.rx_mv[s.rx_end:s.rx_cap])
    except OSError as e:
        if _timed_out(e):
            return ERR_TIMEOUT
        s.os_error = describe(e)
        return ERR_CLOSED
    if n is None:  # a non-blocking stream with nothing to read
        return ERR_TIMEOUT
    return n


def _send(sock, s):
    mv = s.tx_mv
    n = s.tx_n
    i = 0
    try:
        sock.settimeout(s.io_ms / 1000)
        while i < n:
            k = sock.write(mv[i:n])
            if not k:
                s.wait_ms = s.io_ms
                return ERR_TIMEOUT
            i += k
    except OSError as e:
        if _timed_out(e):
            s.wait_ms = s.io_ms
            return ERR_TIMEOUT
        s.os_error = describe(e)
        return ERR_CLOSED
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
