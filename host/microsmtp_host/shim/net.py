"""A `socket`-like module for microsmtp on CPython: MicroPython's stream methods on CPython
sockets (readinto, write), timeouts raised as OSError(ETIMEDOUT), and TLS failures and
poll() as MicroPython's TLS sockets give them."""

import errno
import select as _select
import socket as _socket
import ssl as _ssl
import types

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
SOCK_STREAM = _socket.SOCK_STREAM
IPPROTO_TCP = _socket.IPPROTO_TCP
TCP_NODELAY = _socket.TCP_NODELAY


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    try:
        return _socket.getaddrinfo(host, port, af, type, proto, flags)
    except _socket.gaierror as e:
        raise OSError(e.errno, e.strerror) from None


def _timeout():
    return OSError(errno.ETIMEDOUT, "ETIMEDOUT")


class HostSocket:
    """The MicroPython socket methods microsmtp uses, over a CPython socket."""

    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0, sock=None):
        self.sock = sock if sock is not None else _socket.socket(af, type, proto)
        self.want = 0  # the poll direction a TLS handshake needs before this call can go on

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    def setblocking(self, flag):
        self.sock.setblocking(flag)

    def fileno(self):  # for select.poll()
        return self.sock.fileno()

    def connect(self, addr):
        try:
            self.sock.connect(addr)
        except _socket.timeout:
            raise _timeout() from None

    def getsockname(self):
        return self.sock.getsockname()

    def setsockopt(self, level, option, value):
        self.sock.setsockopt(level, option, value)

    # Non-blocking like MicroPython's streams: None when nothing can move yet. A TLS socket
    # may want the other direction first (a handshake under way): the same answer, and
    # Poll waits for that direction, as MicroPython's poll() does for its TLS sockets.
    def readinto(self, buf, nbytes=None):
        """MicroPython's stream readinto (py/stream.c, mp_stream_rw): reads on until nbytes
        are in, the socket has nothing more (None if nothing came at all) or is at its end;
        an error raises even after bytes came (they stay in buf, uncounted)."""
        view = memoryview(buf)
        if nbytes is not None:
            view = view[:nbytes]
        done = 0
        while done < len(view):
            n = self._io(self.sock.recv_into, view[done:])
            if n is None:
                return done or None
            if n == 0:
                if not done and isinstance(self.sock, _ssl.SSLSocket) and \
                        self.sock.version() is None:
                    # Closed before the handshake ended: CPython reads that as EOF (ragged
                    # EOFs suppressed), MicroPython raises MBEDTLS_ERR_SSL_CONN_EOF.
                    raise OSError(errno.ECONNABORTED, "TLS: EOF during the handshake")
                return done
            done += n
        return done

    def write(self, buf, off=0, size=None):
        """MicroPython's stream write(buf, off, max_len): no slice needed for an offset."""
        view = memoryview(buf)[off:] if size is None else memoryview(buf)[off:off + size]
        return self._io(self.sock.send, view)

    def _io(self, call, *args):
        self.want = 0
        try:
            return call(*args)
        except _ssl.SSLWantReadError:
            self.want = _select.POLLIN
        except _ssl.SSLWantWriteError:
            self.want = _select.POLLOUT
        except BlockingIOError:
            pass
        except _socket.timeout:
            raise _timeout() from None
        except _ssl.SSLError as e:
            raise _tls_error(e) from None
        return None

    def close(self):
        self.sock.close()


def socket(af=AF_INET, type=SOCK_STREAM, proto=0):
    return HostSocket(af, type, proto)


class Poll:
    """select.poll() over HostSockets. A socket whose TLS handshake needs the other
    direction is waited on for that one and reported ready for the one asked, so the
    caller retries its read or write (MicroPython's TLS sockets: modtls_mbedtls.c,
    poll_mask); without it a write waiting for the server's handshake would spin."""

    def __init__(self):
        self.poller = _select.poll()
        self.asked = {}  # fd -> (socket, the events asked for)

    def register(self, sock, mask):
        self.asked[sock.fileno()] = (sock, mask)
        self.poller.register(sock, mask)

    modify = register

    def unregister(self, sock):
        self.asked.pop(sock.fileno(), None)
        self.poller.unregister(sock)

    def poll(self, timeout_ms=-1):
        # Bytes a TLS socket has decrypted already are readable now, though the socket
        # has nothing new (MicroPython: modtls_mbedtls.c, mbedtls_ssl_check_pending).
        pending = [(sock, mask) for sock, mask in self.asked.values()
                   if mask & _select.POLLIN and isinstance(sock.sock, _ssl.SSLSocket)
                   and sock.sock.pending()]
        if pending:
            return pending
        for sock, mask in self.asked.values():
            self.poller.register(sock, sock.want or mask)
        return [(self.asked[fd][0], self.asked[fd][1] if self.asked[fd][0].want else events)
                for fd, events in self.poller.poll(timeout_ms)]

    ipoll = poll  # MicroPython's allocation-free twin; here the same list


def poll():
    return Poll()


async def aio_wait(sock, readable, timeout_ms):
    """microsmtp.aio's wait on CPython: True once sock can be read (readable) or written,
    False after timeout_ms; what MicroPython's asyncio does with its poller. As Poll: bytes
    a TLS socket has decrypted already are readable now, and a handshake under way waits
    for the direction it wants."""
    import asyncio

    if readable and isinstance(sock.sock, _ssl.SSLSocket) and sock.sock.pending():
        return True
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    reading = (sock.want or (_select.POLLIN if readable else _select.POLLOUT)) == _select.POLLIN
    (loop.add_reader if reading else loop.add_writer)(
        fd, lambda: ready.done() or ready.set_result(True))
    try:
        return await asyncio.wait_for(ready, max(timeout_ms, 0) / 1000)
    except asyncio.TimeoutError:
        return False
    finally:
        (loop.remove_reader if reading else loop.remove_writer)(fd)


def _tls_error(e):
    """A TLS failure as MicroPython raises it: a rejected certificate as ValueError with
    the reason, anything else as OSError."""
    if isinstance(e, _ssl.SSLCertVerificationError):
        return ValueError(e.verify_message)
    return OSError(errno.ECONNABORTED, "TLS: %s" % (getattr(e, "reason", None) or e))


class SSLContext:
    """MicroPython's ssl.SSLContext over CPython's: DER cadata, verify_mode, wrap_socket.

    Failures are raised as MicroPython raises them: a certificate that does not verify as
    ValueError with the reason, any other handshake failure as OSError."""

    def __init__(self, protocol):
        self.ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)  # no system CAs: like a board

    @property
    def verify_mode(self):
        return self.ctx.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        if mode == _ssl.CERT_NONE:
            self.ctx.check_hostname = False
        self.ctx.verify_mode = mode

    def load_verify_locations(self, cadata):
        try:
            self.ctx.load_verify_locations(cadata=bytes(cadata))
        except _ssl.SSLError as e:
            raise ValueError("invalid cert: %s" % e.reason) from None

    def wrap_socket(self, sock, server_hostname=None, do_handshake_on_connect=True):
        try:
            return HostSocket(sock=self.ctx.wrap_socket(
                sock.sock, server_hostname=server_hostname,
                do_handshake_on_connect=do_handshake_on_connect))
        except _socket.timeout:
            raise _timeout() from None
        except (_ssl.SSLError, ConnectionError) as e:
            raise _tls_error(e) from None


ssl = types.SimpleNamespace(SSLContext=SSLContext, PROTOCOL_TLS_CLIENT=_ssl.PROTOCOL_TLS_CLIENT,
                            CERT_NONE=_ssl.CERT_NONE, CERT_REQUIRED=_ssl.CERT_REQUIRED)
