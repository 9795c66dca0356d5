# microsmtp: BufferPool, NetX's packet pool in MicroPython terms. MIT licence.
# All wire bytes go through these buffers, made once, so a send never grows the heap with
# the size of the message and never ends in MemoryError halfway through a session.
from micropython import const

from .status import SMTPError

_PACKET_ALLOCATE_ERROR = const(0xA6)  # the package's PACKET_ALLOCATE_ERROR

# RFC 5321 §4.5.3.1.4/5: command and reply lines are at most 512 octets with CRLF.
MIN_SIZE = 512


class BufferPool:
    def __init__(self, count=4, size=536):
        if not isinstance(count, int) or not isinstance(size, int):
            raise TypeError("count and size must be int")
        if count < 1:
            raise ValueError("a BufferPool needs at least one buffer")
        if size < MIN_SIZE:
            raise ValueError("buffers must hold a 512-byte SMTP line (size >= 512)")
        self.count = count
        self.size = size
        self._own = tuple(bytearray(size) for _ in range(count))
        self._free = list(self._own)

    def available(self):
        return len(self._free)

    def acquire(self):
        if not self._free:
            raise self.error()
        return self._free.pop()

    def error(self):
        """The SMTPError of a pool with no free buffer (raised by acquire())."""
        return SMTPError(_PACKET_ALLOCATE_ERROR, "No free buffer in the pool (all %d in use); "
                         "use a bigger BufferPool or one per client (POOL)." % self.count,
                         "POOL")

    def release(self, buf):
        # NetX regression 9 (docs/NETX.md) released a packet twice; a double release here
        # is ignored so the free count can never exceed what the pool owns.
        for b in self._free:
            if b is buf:
                return
        for b in self._own:  # only our own buffers come back in
            if b is buf:
                self._free.append(buf)
