# microsmtp: the one exception type. MIT licence.
# The status codes themselves are public names of the package (__init__.py); here only the
# two the classification below needs, as private consts.
from micropython import const

_PACKET_ALLOCATE_ERROR = const(0xA6)
_RESOLVE_ERROR = const(0xC0)
_DELIVERY_UNKNOWN = const(0xC4)


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
        # A dropped or silent connection counts as 451 (§3.8); no buffer or heap free now
        # (the outbox reports a MemoryError as PACKET_ALLOCATE_ERROR) may be free later.
        return _RESOLVE_ERROR <= self.status <= _DELIVERY_UNKNOWN or \
            self.status == _PACKET_ALLOCATE_ERROR
