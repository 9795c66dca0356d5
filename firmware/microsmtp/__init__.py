# microsmtp: SMTP client for MicroPython boards (ESP32, Pico W) that send alert mail.
# Behaves like the NetX Duo SMTP Client (RFC 5321 + AUTH) on a static buffer pool. MIT licence.
import time

from micropython import const

from . import message, protocol, transport
from .message import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL  # noqa: F401 - public
from .pool import BufferPool
from .status import SMTPError

__version__ = "0.1.0"

# Status codes. Defined here, in the package itself, so a board keeps one table of names
# (protocol.py and pool.py inline the values they raise; tests/test_units.py checks them).
SUCCESS = const(0)

# AUTH mechanisms: NetX Duo's values for LOGIN, CRAM-MD5, PLAIN and NONE; XOAUTH2 and AUTO
# are microsmtp's. Here, not taken from auth.py: that module loads only with credentials.
AUTH_AUTO = const(0)  # the strongest mechanism both sides support
AUTH_LOGIN = const(1)
AUTH_CRAM_MD5 = const(2)
AUTH_PLAIN = const(3)
AUTH_XOAUTH2 = const(4)
AUTH_NONE = const(0xFFFF)

# NetX Duo SMTP Client status codes (nxd_smtp_client.h): same values, "NX_SMTP_" dropped.
AUTHENTICATION_ERROR = const(0xA0)
OVERSIZE_MAIL_DATA = const(0xA1)
INVALID_SERVER_REPLY = const(0xA2)
INTERNAL_ERROR = const(0xA3)
SERVER_ERROR_CODE_RECEIVED = const(0xA4)
INVALID_PARAM = const(0xA5)
PACKET_ALLOCATE_ERROR = const(0xA6)
GREET_REPLY_ERROR = const(0xA7)
HELLO_REPLY_ERROR = const(0xA8)
MAIL_REPLY_ERROR = const(0xA9)
RCPT_REPLY_ERROR = const(0xAA)
MESSAGE_REPLY_ERROR = const(0xAB)
DATA_REPLY_ERROR = const(0xAC)
AUTH_REPLY_ERROR = const(0xAD)
SERVER_ERROR_REPLY = const(0xAE)
TRANSMIT_ERROR = const(0xAF)
INVALID_SERVER_CHALLENGE = const(0xB0)
OVERSIZE_SERVER_REPLY = const(0xB1)
CLIENT_NOT_INITIALIZED = const(0xB2)

# microsmtp's own range. NetX hands back the TCP layer's raw status for these; a person
# needs to know which of them happened, and an outbox needs to know they are temporary.
RESOLVE_ERROR = const(0xC0)  # getaddrinfo found no address for the server name
CONNECT_ERROR = const(0xC1)  # refused, unreachable, or no answer within the connect timeout
TIMEOUT_ERROR = const(0xC2)  # the server did not answer within the phase's timeout
CONNECTION_CLOSED = const(0xC3)  # the server closed or reset the connection mid-session
DELIVERY_UNKNOWN = const(0xC4)  # lost after "." before the reply: it may have been delivered
MESSAGE_FORMAT_ERROR = const(0xC5)  # a streamed body could not be sent as valid mail
OUTBOX_FULL = const(0xC6)  # outbox.py: put() into a full outbox (REFUSE_NEW)

# TLS (RFC 3207, RFC 8314) and the credentials policy.
TLS_NOT_OFFERED = const(0xD0)  # TLS required, the server does not offer STARTTLS
TLS_REFUSED = const(0xD1)  # STARTTLS answered with anything but 220
TLS_HANDSHAKE_ERROR = const(0xD2)  # the handshake failed (no TLS there, protocol error)
TLS_CERT_ERROR = const(0xD3)  # the certificate or its name did not verify
TLS_NO_CA = const(0xD4)  # TLS asked for, but no cadata to verify the server with
TLS_INJECTION = const(0xD5)  # bytes after STARTTLS's 220 in the same read (an attack)
PLAINTEXT_AUTH_REFUSED = const(0xD6)  # credentials not sent over an unencrypted connection


# TLS modes; protocol.py has the same values.
TLS_NONE = const(0)
TLS_STARTTLS = const(1)
TLS_IMPLICIT = const(2)

# A session of the client: none open (or its connection gone), open but not connected yet
# (or between mails), connected.
_OVER = const(0)
_IDLE = const(1)
_OPEN = const(2)
_MAIL = const(6)  # protocol.py's OP_MAIL: what Driver.loop yields between mails
_F_SINGLE = const(64)  # protocol.py's Session.flags bit: one mail, QUIT may go with its "."
_OUT_OF_MEMORY = const("Out of memory during the session; the connection was closed (SESSION).")
_NET = const("net must be a MicroPython socket module (on CPython: microsmtp_host.Client)")

# NetX Duo's defaults, seconds (NX_SMTP_CLIENT_*_TIMEOUT); QUIT waits at most "quit".
TIMEOUTS = {"connect": 10, "greeting": 10, "envelope": 10, "message": 30, "quit": 5}
_TIMEOUT_KEYS = const(("connect", "greeting", "envelope", "message", "quit"))


def _out_of_memory():
    # A constant sentence: no heap. Made here, so the calls that raise it stay small.
    return SMTPError(PACKET_ALLOCATE_ERROR, _OUT_OF_MEMORY, "SESSION")


class Client:
    """One SMTP client; each send is a whole session on a new connection (NetX)."""

    def __init__(self, server, port=25, *, from_address, username=None, password=None,
                 client_domain=None, auth=AUTH_AUTO, pool=None, timeouts=None, net=None,
                 tls=None, cadata=None, insecure=False, allow_plaintext_auth=False,
                 oauth_token=None, trace=None):
        check = message.check
        check(server, "server")
        if not server or " " in server:
            raise ValueError("server must be a host name or an IPv4/IPv6 address")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("port must be an int from 1 to 65535")
        check(from_address, "from_address", message.ADDRESS)
        if username is not None:
            check(username, "username")
        if password is not None:
            check(password, "password")
            if username is None:
                raise ValueError("a password was given without a username")
        if oauth_token is not None:
            check(oauth_token, "oauth_token", message.TEXT, 8000)
            if username is None:
                raise ValueError("oauth_token needs the username (the mailbox) too")
        if client_domain is not None:
            check(client_domain, "client_domain", message.DOMAIN)
        if auth not in (AUTH_AUTO, AUTH_NONE, AUTH_LOGIN, AUTH_PLAIN, AUTH_CRAM_MD5,
                        AUTH_XOAUTH2):
            raise ValueError("auth must be one of the AUTH_* constants")
        if auth == AUTH_XOAUTH2 and oauth_token is None:
            raise ValueError("AUTH_XOAUTH2 needs oauth_token")
        # RFC 8314 / 6409 ports: 465 speaks TLS at once, 587 must STARTTLS. On any other
        # port (25) a CA or insecure=True asks for TLS, so STARTTLS is required: "when
        # offered" would let a man in the middle strip it from EHLO (RFC 3207 §6) and read
        # the mail, and the password too. Plaintext only without either, or with TLS_NONE.
        if tls is None:
            tls = TLS_IMPLICIT if port == 465 else TLS_STARTTLS if port == 587 or \
                cadata is not None or insecure else TLS_NONE
        elif tls not in (TLS_NONE, TLS_STARTTLS, TLS_IMPLICIT):
            raise ValueError("tls must be TLS_NONE, TLS_STARTTLS or TLS_IMPLICIT")
        # ca: DER certificates; [] = insecure (no checks); None = no CA to check with.
        ca = []
        if not insecure:
            ca = None
            if cadata is not None:
                from .secure import ca_certs  # only for clients that use TLS

                ca = ca_certs(cadata)
        if net is None:
            import socket as net
        # Checked here, not met at the first write deep in a send: a module without a
        # resolver, or one whose socket class lacks MicroPython's stream methods (CPython's).
        k = getattr(net, "socket", None)
        if not hasattr(net, "getaddrinfo") or k is None or \
                isinstance(k, type) and not hasattr(k, "readinto"):
            raise TypeError(_NET)
        if pool is None:
            pool = BufferPool()
        elif not isinstance(pool, BufferPool):
            raise TypeError("pool must be a BufferPool")
        self.pool = pool
        # (Here, not in a function of its own: one function object less held by a board.)
        merged = dict(TIMEOUTS)
        if timeouts is not None:
            if not isinstance(timeouts, dict):
                raise TypeError("timeouts must be a dict such as {'message': 60}")
            for key in timeouts:
                if key not in merged:
                    raise ValueError("unknown timeout %r; known: %s" % (
                        key, ", ".join(_TIMEOUT_KEYS)))
                value = timeouts[key]
                if not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError("timeout %r must be a positive number of seconds" % key)
                merged[key] = value
        timeouts = tuple(int(merged[k] * 1000) for k in _TIMEOUT_KEYS)  # ms, in Session's order
        self._net = net
        self._driver = None  # transport.Driver, made at the first mail
        self._state = _OVER
        # (trace: checked by trace.py, which loads with it; a wrong one is a TypeError here)
        self._session = protocol.Session(server, port, from_address, username, password,
                                         client_domain, auth, timeouts, tls, ca,
                                         allow_plaintext_auth, oauth_token, trace)

    def __repr__(self):  # never shows the password
        s = self._session
        if s is None:
            return "<microsmtp.Client closed>"
        return "<microsmtp.Client %s:%d from %s>" % (s.host, s.port,
                                                     bytes(s.head.from_address).decode())

    def send(self, recipients, subject, body, priority=PRIORITY_NORMAL, **rich):
        """Send one mail; None on success, SMTPError otherwise. ValueError on bad input.
        Keywords cc, bcc, reply_to, headers, html, attachments, and recipients with
        display names ("Name" <addr>), make a rich mail: mime.py, loaded then."""
        if rich or message.rich(recipients):
            recipients = self.rich(recipients, body, rich)
            body = self._session.head.body  # the Mail itself, for a mail with parts
        recipients = message.check_mail(recipients, subject, priority)
        # Six arguments' words and a stack of five at most: this frame stays on the C stack
        # (a call of load's four arguments here would take it from the heap, 136 B a send).
        self._begin(True).load(recipients, subject, body)  # (load cannot fail)
        self._session.head.priority = priority
        self._single()

    def rich(self, recipients, body, rich):
        """send()'s step for a rich mail, not an API of its own: its arguments checked
        (nothing sent) and kept by mime.py's rich(), loaded at the first rich mail, which
        then takes this method's place (no import statement in later sends: 24 B each).
        The envelope's recipients; the body to load is then the session's head.body.
        (Named as **rich is: a name of its own would cost a board heap.)"""
        try:
            from .mime import rich as load
        except MemoryError:
            raise _out_of_memory() from None
        Client.rich = load
        return load(self, recipients, body, rich)

    def session(self):
        """Several mails over one connection (one EHLO, TLS and AUTH):
        `with client.session() as s: s.send(...); s.send(...)`."""
        try:  # session.py: loaded at a client's first session (Client.send never needs it)
            from .session import ClientSession
        except MemoryError:
            raise _out_of_memory() from None
        return ClientSession(self)

    def mail_send(self, recipient, priority, subject, body, body_length=None):
        """NetX's nx_smtp_mail_send: SUCCESS (0) or a status code; raises only on misuse."""
        # session.py's, loaded at the first call (Client.send never needs it), which then
        # takes this method's place: later calls go straight there, without an import
        # statement (24 B each time it runs) or a second frame of six arguments (from the
        # heap: 150 B).
        try:
            from .session import mail_send
        except MemoryError:
            return PACKET_ALLOCATE_ERROR
        Client.mail_send = mail_send
        return mail_send(self, recipient, priority, subject, body, body_length)

    def close(self):
        """NetX's nx_smtp_client_delete: the client cannot send afterwards."""
        self._session = None

    # --- a session: the pool's buffers, the engine driven mail by mail -------------------
    # After the first send, what a send does here allocates nothing of its own: these are
    # small functions (a call with more than 11 words of locals and stack, a try costing
    # about 6, takes its frame from the heap: py/objfun.c, VM_MAX_STATE_ON_STACK), the
    # mail's arguments wait in the session (Session.load) instead of being handed down,
    # and the engine and the driver's loop are generators made once. Few names, too:
    # past 300 interned names (with auth.py's) a board's heap takes another 3.8 KB pool.

    def _begin(self, single):
        """A new session: the pool's buffers taken, the engine and the driver ready; the
        session (Session). Refused after close(), for TLS without a CA, or while one is
        open."""
        s = self._session
        if s is None:
            raise SMTPError(CLIENT_NOT_INITIALIZED, "This client was closed; make a new Client.")
        if s.ca is None and (s.tls == TLS_STARTTLS or s.tls == TLS_IMPLICIT):
            # Never a silent fallback to an unverified connection.
            raise SMTPError(TLS_NO_CA, "TLS needs the server's CA certificate to verify it: "
                            "pass cadata= (boards have no CA store), or insecure=True to "
                            "skip the check (CONNECT).", "CONNECT")
        if s.rx is not None:
            raise SMTPError(INTERNAL_ERROR, "This client's session is still open: send through "
                            "it, or close it first (SESSION).", "SESSION")
        pool = self.pool
        if pool.available() < 3:  # all three or none: nothing to give back on the way
            raise pool.error()
        s.buffers(pool.acquire(), pool.acquire(), pool.acquire())
        s.flags = _F_SINGLE if single else 0
        self._state = _IDLE
        return s

    def _single(self):
        """Client.send's session: the loaded mail on a connection of its own, and every
        buffer back after it, whatever happens."""
        try:
            self._deliver()
        finally:
            self._end()

    def _deliver(self):
        """The loaded mail over the open session; SMTPError for it (the session may go on)."""
        if self._state == _OVER:  # the connection is gone: so is every mail after it
            raise self._session.error or SMTPError(CONNECTION_CLOSED, "The session is over "
                                                   "(SESSION).", "SESSION")
        try:
            if self._session.engine is None:  # an exception ended the last one
                self._session.restart()
            if self._driver is None or self._driver.loop is None or \
                    self._driver.net is not self._net:  # the first mail, or after one
                self._driver = transport.Driver(self._net, self._session)
            self._session.start(time.gmtime)
        except MemoryError:  # nothing sent of this mail; the session can go on
            raise _out_of_memory() from None
        self._state = _OPEN if self._drive(1) == _MAIL else _OVER
        if self._session.error is not None:
            raise self._session.error

    def _drive(self, more):
        try:
            return self._driver.step(more)
        # The engine cannot go on after either (the driver's loop ended with it): dropped,
        # not replaced here, as a new one takes heap, which may be what ran out (_deliver
        # makes it for the next mail). No `except ... as e` here: its extra block would
        # take this call's frame from the heap, twice a send.
        except MemoryError:  # a fragmented heap: an SMTPError all the same, temporary (an
            # outbox tries again later)
            self._session.engine = None
            self._state = _OVER
            raise _out_of_memory() from None
        except BaseException:  # KeyboardInterrupt, a bug
            self._session.engine = None
            self._state = _OVER
            raise

    def _end(self):
        """QUIT if the session is open; every buffer back, the engine waiting again."""
        try:
            if self._state == _OPEN:
                self._drive(0)
        finally:
            if self._driver is not None:  # (none before a session's first mail)
                self._driver.close()
            self._state = _OVER
            self.pool.release(self._session.rx)
            self.pool.release(self._session.tx)
            self.pool.release(self._session.scratch)
            self._session.release()
