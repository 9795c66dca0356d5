# microsmtp: status codes and the one exception type. MIT licence.
from micropython import const

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

# TLS (RFC 3207, RFC 8314) and the credentials policy.
TLS_NOT_OFFERED = const(0xD0)  # TLS required, the server does not offer STARTTLS
TLS_REFUSED = const(0xD1)  # STARTTLS answered with anything but 220
TLS_HANDSHAKE_ERROR = const(0xD2)  # the handshake failed (no TLS there, protocol error)
TLS_CERT_ERROR = const(0xD3)  # the certificate or its name did not verify
TLS_NO_CA = const(0xD4)  # TLS asked for, but no cadata to verify the server with
TLS_INJECTION = const(0xD5)  # bytes after STARTTLS's 220 in the same read (an attack)
PLAINTEXT_AUTH_REFUSED = const(0xD6)  # credentials not sent over an unencrypted connection


class SMTPError(Exception):
    """Every failure of a send: .status, .step, .reply_code, .reply; str() is one sentence."""

    def __init__(self, status, sentence, step=None, reply_code=None, reply=""):
        super().__init__(sentence)
        self.status = status
        self.step = step
        self.reply_code = reply_code
        self.reply = reply
        self.refused = None  # per-recipient results [(address, code, reply)] for RCPT failures

    @property
    def temporary(self):
        """True when trying again later may work (an outbox retries these)."""
        code = self.reply_code
        if code is not None:
            # RFC 5321 §4.2.1: 4yz is transient; §4.5.3.1.10: 552 to RCPT means "too many
            # recipients", to be treated as 452.
            return 400 <= code < 500 or code == 552 and self.step == "RCPT"
        # A dropped or silent connection counts as 451 (§3.8).
        return RESOLVE_ERROR <= self.status <= DELIVERY_UNKNOWN
