"""A `socket`-like module for microsmtp on CPython: MicroPython's stream methods on CPython
sockets (readinto, write), and timeouts raised as OSError(ETIMEDOUT) as MicroPython does."""

import errno
import socket as _socket
import ssl as _ssl
import types

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
SOCK_STREAM = _socket.SOCK_STREAM


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

    # Non-blocking like MicroPython's streams: None when nothing can move yet (a TLS
    # socket may also want the other direction first: the same answer).
    def readinto(self, buf, nbytes=None):
        try:
            return self.sock.recv_into(buf, nbytes or 0)
        except (BlockingIOError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError):
            return None
        except _socket.timeout:
            raise _timeout() from None

    def write(self, buf):
        try:
            return self.sock.send(buf)
        except (BlockingIOError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError):
            return None
        except _socket.timeout:
            raise _timeout() from None

    def close(self):
        self.sock.close()


def socket(af=AF_INET, type=SOCK_STREAM, proto=0):
    return HostSocket(af, type, proto)


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

    def wrap_socket(self, sock, server_hostname=None):
        try:
            return HostSocket(sock=self.ctx.wrap_socket(sock.sock,
                                                        server_hostname=server_hostname))
        except _ssl.SSLCertVerificationError as e:
            raise ValueError(e.verify_message) from None
        except _socket.timeout:
            raise _timeout() from None
        except (_ssl.SSLError, ConnectionError) as e:
            raise OSError(errno.ECONNABORTED, "TLS: %s" % (getattr(e, "reason", None) or e)) \
                from None


ssl = types.SimpleNamespace(SSLContext=SSLContext, PROTOCOL_TLS_CLIENT=_ssl.PROTOCOL_TLS_CLIENT,
                            CERT_NONE=_ssl.CERT_NONE, CERT_REQUIRED=_ssl.CERT_REQUIRED)
