# microsmtp.aio: the same client for asyncio apps. MIT licence.
# Loaded only when imported. The protocol is protocol.py's engine and the I/O loop is
# transport.Driver's, resumed here (docs/ENGINE.md): where that loop waits on its socket
# (_IO_IN, _IO_OUT) this driver awaits instead of polling, so a sensor task, a button and
# a watchdog go on while a mail goes. The server's name is still resolved blocking
# (MicroPython has no asynchronous getaddrinfo): give its address to avoid the wait.
import asyncio
import time

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

    # MicroPython only (_step): the awaitable every wait reuses, made at the first; the
    # timer task of the send under way.
    _ready = None
    _timer = None

    async def send(self, recipients, subject, body, priority=PRIORITY_NORMAL, **rich):
        """As Client.send (rich mails too)."""
        _Client.send(self, recipients, subject, body, priority, **rich)  # checked, ready
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

    # Client.send, session.py's send and mail_send end in Client._deliver(), whose _drive()
    # is this class's: the mail is made ready there, and _run() sends it, awaiting. (No
    # method of Client's own for that: a name more in the plain path is heap on a board.)
    def _single(self):
        try:
            self._deliver()
        except BaseException:  # not made ready: every buffer back
            self._end()
            raise

    def _drive(self, more):
        return _MAIL  # (Client._deliver then leaves the session open for _run)

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
            timer = self._timer
            if timer is not None:  # _step's, on MicroPython: the send is over
                self._timer = None
                timer.cancel()

    async def _watch(self):
        """The timer of _step's waits: cancels the waiting task if it still waits at its
        deadline. Wakes at least every 50 ms (sleep_ms allocates nothing): a later wait may
        have an earlier deadline than the one it slept for (a 10 s connect, then a
        greeting of 0.5 s)."""
        while True:
            left = time.ticks_diff(self._until, time.ticks_ms())
            if left <= 0 and self._waiting:
                self._waiting = False
                self._expired = True
                self._task.cancel()
            await asyncio.sleep_ms(left if 0 < left < 50 else 50)

    async def _step(self, more):
        """transport.Driver.step, awaiting where it polls."""
        d = self._driver
        try:
            op = d.loop.send(more)
            while op >= _IO_IN:
                # Until d.sock is readable (op _IO_IN) or writable, at most d.timeout ms.
                # On CPython the shim's net knows how (the event loop; TLS that wants the
                # other way). On MicroPython the task sleeps in the scheduler's poller and
                # this send's timer task ends the wait at its deadline by cancelling it:
                # asyncio.wait_for makes two tasks and a timer a wait, 1.6 KB each time.
                wait = getattr(self._net, "aio_wait", None)
                if wait is not None:
                    op = d.loop.send(await wait(d.sock, op == _IO_IN, d.timeout))
                    continue
                self._until = time.ticks_add(time.ticks_ms(), d.timeout)
                if self._ready is None:
                    self._ready = _Ready()
                if self._timer is None:
                    self._timer = asyncio.create_task(self._watch())
                self._task = asyncio.current_task()  # (a session's mails may change task)
                self._ready.sock = d.sock
                self._ready.op = op
                self._waiting = True
                self._expired = False
                try:
                    await self._ready
                    op = True
                except asyncio.CancelledError:
                    if not self._expired:  # the app's cancellation
                        raise
                    op = False
                finally:
                    self._waiting = False
                op = d.loop.send(op)
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


class _Ready:
    """`await` it: the task sleeps in MicroPython's asyncio poller until sock is ready (as
    asyncio's Stream.read does). Made once a client and awaited again each wait, as
    asyncio's own SingletonGenerator (sleep_ms): a generator a wait would be heap."""

    def __init__(self):
        self.sock = None
        self.op = 0
        self.stop = StopIteration()

    def __iter__(self):
        return self

    def __next__(self):
        if self.sock is not None:  # the first step: into the poller, and sleep
            queue = asyncio.core._io_queue
            (queue.queue_read if self.op == _IO_IN else queue.queue_write)(self.sock)
            self.sock = None
            return None
        self.stop.__traceback__ = None  # the second: done, with the one StopIteration
        raise self.stop


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
                   message_id=None, **rich):
        """As ClientSession.send (rich mails too)."""
        self.inner.send(recipients, subject, body, priority, date, message_id, **rich)
        await self.inner.client._run()
