"""A `socket`-like module for microsmtp on CPython: MicroPython's stream methods on CPython
sockets (readinto, write), and timeouts raised as OSError(ETIMEDOUT) as MicroPython does."""

import errno
import socket as _socket

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

    # Non-blocking like MicroPython's streams: None when nothing can move yet.
    def readinto(self, buf, nbytes=None):
        try:
            return self.sock.recv_into(buf, nbytes or 0)
        except BlockingIOError:
            return None
        except _socket.timeout:
            raise _timeout() from None

    def write(self, buf):
        try:
            return self.sock.send(buf)
        except BlockingIOError:
            return None
        except _socket.timeout:
            raise _timeout() from None

    def close(self):
        self.sock.close()


def socket(af=AF_INET, type=SOCK_STREAM, proto=0):
    return HostSocket(af, type, proto)
