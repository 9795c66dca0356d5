# microsmtp: the other ways to send — several mails over one connection (Client.session(),
# the outbox's way) and NetX's Client.mail_send. MIT licence.
# Loaded at a client's first session() or mail_send(): a board that sends its alerts with
# Client.send never holds this bytecode (.mpy files load into RAM on stock firmware).
from micropython import const

from . import message
from .message import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL
from .status import SMTPError

# __init__.py's values: no session open (or its connection gone); a status code.
_OVER = const(0)
_INVALID_PARAM = const(0xA5)


class ClientSession:
    """Several mails over one connection: Client.session(). A mail refused (by the server
    or for its body) raises SMTPError and the session goes on with the next; once the
    connection is gone (`alive` false), every send raises the error that ended it."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        self.client._begin(False)
        return self

    def __exit__(self, *exc):
        self.client._end()

    @property
    def alive(self):
        return self.client._state != _OVER

    def send(self, recipients, subject, body, priority=PRIORITY_NORMAL, date=None,
             message_id=None, **rich):
        """As Client.send (rich mails too); date: seconds since the epoch for the Date
        header (the time the mail was made, e.g. queued), message_id: the Message-ID's part
        before "@"; envelope (a rich keyword, sessions only): a list of the mail's own
        addresses, the only ones it goes to (RCPT TO), its headers unchanged (the outbox's
        retry for the recipients a server refused)."""
        if rich or message.rich(recipients):
            recipients = self._rich(recipients, body, rich)
            body = self.client._session.head.body
        recipients = message.check_mail(recipients, subject, priority)
        if message_id is not None:
            message.check(message_id, "message_id", message.DOMAIN, 64)
        if date is not None and not isinstance(date, int):
            raise TypeError("date must be an int: seconds since the epoch")
        # (This frame, with its 7 parameters, is the one a session's mail takes from the
        # heap: ~150 B; all below it run on the C stack.)
        c = self.client
        s = c._session
        s.load(recipients, subject, body)
        s.head.priority = priority
        s.head.time = date
        s.head.id = message_id
        c._deliver()

    def _rich(self, recipients, body, rich):
        """Client.rich, and envelope= (apart: a plain mail's frame stays as small)."""
        rcpt = rich.pop("envelope", None)
        recipients = self.client.rich(recipients, body, rich)
        if rcpt is not None:
            from .mime import only

            head = self.client._session.head
            if head.to is None:  # To is written from the envelope: from the whole one
                head.to = recipients
            recipients = head.armed = only(recipients, rcpt)  # armed: Mail.start's own
        return recipients


def mail_send(client, recipient, priority, subject, body, body_length=None):
    """Client.mail_send (its method, once loaded): NetX's nx_smtp_mail_send, SUCCESS (0) or
    a status code; raises only on misuse."""
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
        return _INVALID_PARAM  # NetX: bad input, checked before any connection
    try:
        s = client._begin(True)
        s.load((recipient,), subject, body)
        s.head.priority = priority
        if body_length is not None:
            s.body.left = body_length
        client._single()
    except SMTPError as e:
        return e.status
    return 0  # SUCCESS

