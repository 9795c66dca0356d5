# microsmtp: SMTP client for MicroPython boards (ESP32, Pico W) that send alert mail.
# Behaves like the NetX Duo SMTP Client (RFC 5321 + AUTH) on a static buffer pool. MIT licence.
import time

from micropython import const

from . import message, protocol, transport
from .auth import AUTH_AUTO, AUTH_CRAM_MD5, AUTH_LOGIN, AUTH_NONE, AUTH_PLAIN, AUTH_XOAUTH2
from .message import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL
from .pool import BufferPool
from .status import SMTPError

__version__ = "0.1.0"

# Status codes. Defined here, in the package itself, so a board keeps one table of names
# (protocol.py and pool.py inline the values they raise; tests/test_units.py checks them).
SUCCESS = const(0)

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

# NetX Duo's defaults, seconds (NX_SMTP_CLIENT_*_TIMEOUT); QUIT waits at most "quit".
TIMEOUTS = {"connect": 10, "greeting": 10, "envelope": 10, "message": 30, "quit": 5}
_TIMEOUT_KEYS = const(("connect", "greeting", "envelope", "message", "quit"))


def _timeouts_ms(timeouts):
    merged = dict(TIMEOUTS)
    if timeouts is not None:
        if not isinstance(timeouts, dict):
            raise TypeError("timeouts must be a dict such as {'message': 60}")
        for key in timeouts:
            if key not in merged:
                raise ValueError("unknown timeout %r; known: %s" % (key, ", ".join(_TIMEOUT_KEYS)))
            value = timeouts[key]
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError("timeout %r must be a positive number of seconds" % key)
            merged[key] = value
    return tuple(int(merged[k] * 1000) for k in _TIMEOUT_KEYS)


class Client:
    """One SMTP client; each send is a whole session on a new connection (NetX)."""

    def __init__(self, server, port=25, *, from_address, username=None, password=None,
                 client_domain=None, auth=AUTH_AUTO, pool=None, timeouts=None, net=None,
                 tls=None, cadata=None, insecure=False, allow_plaintext_auth=False,
                 oauth_token=None):
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
        if pool is None:
            pool = BufferPool()
        elif not isinstance(pool, BufferPool):
            raise TypeError("pool must be a BufferPool")
        if net is None:
            import socket as net
        self.pool = pool
        self._net = net
        self._session = protocol.Session(server, port, from_address, username, password,
                                         client_domain, auth, _timeouts_ms(timeouts), tls, ca,
                                         allow_plaintext_auth, oauth_token)

    def __repr__(self):  # never shows the password
        s = self._session
        if s is None:
            return "<microsmtp.Client closed>"
        return "<microsmtp.Client %s:%d from %s>" % (s.host, s.port, s.from_address)

    def send(self, recipients, subject, body, priority=PRIORITY_NORMAL):
        """Send one mail; None on success, SMTPError otherwise. ValueError on bad input."""
        recipients = message.check_mail(recipients, subject, priority)
        self._run(recipients, subject, body, None, priority)

    def mail_send(self, recipient, priority, subject, body, body_length=None):
        """NetX's nx_smtp_mail_send: SUCCESS (0) or a status code; raises only on misuse."""
        if priority not in (PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH):
            priority = PRIORITY_NORMAL  # NetX: any other value is normal priority
        if body_length is not None and not isinstance(body_length, int):
            raise TypeError("body_length must be an int")
        try:
            message.check(recipient, "recipient", message.ADDRESS)
            message.check(subject, "subject", message.TEXT, 4096)
            if isinstance(body, (str, bytes, bytearray, memoryview)):
                data = message.as_bytes(body) if isinstance(body, str) else memoryview(body)
                if body_length is not None:
                    if body_length > len(data):
                        raise ValueError("body_length is longer than the body")
                    body = bytes(data[:body_length])  # scannable, exactly the bytes to send
                    body_length = None
                if not len(data):
                    raise ValueError("empty body")
            if body_length is not None and body_length <= 0:
                raise ValueError("body_length must be positive")
        except ValueError:
            return INVALID_PARAM  # NetX: bad input, checked before any connection
        try:
            self._run([recipient], subject, body, body_length, priority)
        except SMTPError as e:
            return e.status
        return SUCCESS

    def close(self):
        """NetX's nx_smtp_client_delete: the client cannot send afterwards."""
        self._session = None

    def _run(self, recipients, subject, body, limit, priority, batch=None, now=None, id=None):
        s = self._session
        if s is None:
            raise SMTPError(CLIENT_NOT_INITIALIZED, "This client was closed; make a new Client.")
        if s.ca is None and (s.tls == TLS_STARTTLS or s.tls == TLS_IMPLICIT):
            # Never a silent fallback to an unverified connection.
            raise SMTPError(TLS_NO_CA, "TLS needs the server's CA certificate to verify it: "
                            "pass cadata= (boards have no CA store), or insecure=True to "
                            "skip the check (CONNECT).", "CONNECT")
        scan = message.scan_body(body) if isinstance(body, (str, bytes, bytearray)) else None
        pool = self.pool
        rx = tx = scratch = None
        try:
            rx = pool.acquire()
            tx = pool.acquire()
            scratch = pool.acquire()
            s.prepare(recipients, subject, body, limit, priority, scan, now or time.gmtime(),
                      rx, tx, scratch)
            s.id = id
            s.batch = batch
            transport.run(s, self._net)
        finally:
            s.batch = None
            # Whatever happened: every buffer back, the session in its initial state.
            s.release()
            pool.release(rx)
            pool.release(tx)
            pool.release(scratch)
