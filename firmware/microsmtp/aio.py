# microsmtp.aio: the same client for asyncio apps. MIT licence.
# Loaded only when imported. The protocol is protocol.py's engine and the I/O loop is
# transport.Driver's, resumed here (docs/ENGINE.md): where that loop waits on its socket
# (_IO_IN, _IO_OUT) this driver awaits instead of polling, so a sensor task, a button and
# a watchdog go on while a mail goes. The server's name is still resolved blocking
# (MicroPython has no asynchronous getaddrinfo): give its address to avoid the wait.
import asyncio

from micropython import const

from . import PRIORITY_NORMAL, SMTPError, _out_of_memory
from . import Client as _Client

_OVER = const(0)  # __init__.py's session states and protocol.py's OP_MAIL
_OPEN = const(2)
_MAIL = const(6)
_IO_IN = const(8)  # transport.py's: the loop waits to read (or to write: 9)


class Client(_Client):
    """microsmtp.Client for asyncio, with the same constructor: `await client.send(...)`,
    `await client.mail_send(...)`, `async with client.session() as s: await s.send(...)`.
    Cancelling any of them closes the connection at once (no QUIT, and a message cut
    before its "." is never delivered) and gives every buffer back; the client goes on."""

    async def send(self, recipients, subject, body, priority=PRIORITY_NORMAL):
        """As Client.send."""
        _Client.send(self, recipients, subject, body, priority)  # checked, loaded, ready
        try:
            await self._run()
        finally:
            await self._quit()

    async def mail_send(self, recipient, priority, subject, body, body_length=None):
        """As Client.mail_send (NetX's nx_smtp_mail_send): SUCCESS (0) or a status code."""
        try:
            from .session import mail_send
        except MemoryError:
            return _out_of_memory().status
        status = mail_send(self, recipient, priority, subject, body, body_length)
        if status:  # refused before a connection
            return status
        try:
            await self._run()
        except SMTPError as e:
            status = e.status
        finally:
            await self._quit()
        return status

    def session(self):
        """Several mails over one connection: `async with client.session() as s:`."""
        try:  # session.py: loaded at the first session, as for the blocking client
            from .session import ClientSession
        except MemoryError:
            raise _out_of_memory() from None
        return Session(ClientSession(self))

    # Client.send, session.py's send and mail_send end in _single() or _deliver(): here
    # they only make the mail ready (the buffers back if that fails); _run() sends it.
    def _single(self):
        try:
            _Client._deliver(self, 0)
        except BaseException:
            self._end()
            raise

    def _deliver(self, more=0):
        _Client._deliver(self, 0)

    async def _run(self):
        """The mail made ready, through the driver; SMTPError for it."""
        self._state = _OPEN if await self._step(1) == _MAIL else _OVER
        if self._session.error is not None:
            raise self._session.error

    async def _quit(self):
        """QUIT if the session is open; every buffer back (Client._end's)."""
        try:
            if self._state == _OPEN:
                await self._step(0)
        finally:
            self._state = _OVER
            self._end()

    async def _step(self, more):
        """transport.Driver.step, awaiting where it polls."""
        d = self._driver
        try:
            op = d.loop.send(more)
            while op >= _IO_IN:
                op = d.loop.send(await _wait(self._net, d.sock, op, d.timeout))
            return op
        except MemoryError:  # as Client._drive: the engine is over, the client goes on
            self._session.engine = None
            self._state = _OVER
            raise _out_of_memory() from None
        except BaseException:  # a cancellation (or a bug): the socket closes now
            if d.loop is not None:
                d.loop.close()  # its handler closes the connection
            self._session.engine = None
            self._state = _OVER
            raise


async def _wait(net, sock, op, ms):
    """True once sock can be read (op _IO_IN) or written, False after ms. On CPython the
    shim's net module knows how (asyncio's event loop, TLS that wants the other way)."""
    wait = getattr(net, "aio_wait", None)
    if wait is not None:
        return await wait(sock, op == _IO_IN, ms)
    try:
        await asyncio.wait_for_ms(_io(sock, op), ms)
        return True
    except asyncio.TimeoutError:
        return False


def _io(sock, op):
    # MicroPython's asyncio: the task sleeps in the scheduler's poller until sock is ready
    # (as asyncio's own Stream.read does).
    queue = asyncio.core._io_queue
    yield queue.queue_read(sock) if op == _IO_IN else queue.queue_write(sock)


class Session:
    """client.session() of an aio.Client: session.py's ClientSession, awaited."""

    def __init__(self, inner):
        self.inner = inner

    async def __aenter__(self):
        self.inner.__enter__()
        return self

    async def __aexit__(self, *exc):
        await self.inner.client._quit()

    @property
    def alive(self):
        return self.inner.alive

    async def send(self, recipients, subject, body, priority=PRIORITY_NORMAL, date=None,
                   message_id=None):
        """As ClientSession.send."""
        self.inner.send(recipients, subject, body, priority, date, message_id)  # ready
        await self.inner.client._run()
