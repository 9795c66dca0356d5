# microsmtp: SMTPUTF8 (RFC 6531) — a mail whose addresses hold UTF-8, and a server that does
# not offer it. MIT licence.
# The plain path checks such addresses (message.check), finds them in a mail (Head.start)
# and writes their bytes in RCPT, From and To (message.encode; RFC 6532 has them in headers
# as they are). MAIL's parameters and the refusal are here, loaded at the first such mail:
# a board whose alerts go to ASCII addresses never holds this bytecode or its sentence.
from micropython import const

_CAP_8BITMIME = const(1)  # protocol.py's EHLO keyword bits (tests/test_units.py checks)
_CAP_SMTPUTF8 = const(32)
_CTE_8BIT = const(1)  # message.py's CTE_8BIT: BODY=8BITMIME is on the line already
_MAIL_REPLY_ERROR = const(0xA9)  # the package's status code


def start(s):
    """MAIL's parameters of such a mail (protocol.Session._mail_from, s the session, its
    line in tx up to them): SMTPUTF8 (RFC 6531 §3.4), and BODY=8BITMIME where 8BITMIME is
    offered (UTF-8 headers are 8-bit data; RFC 6531 §3.1 has an SMTPUTF8 server offer
    8BITMIME; the body keeps its own transfer encoding). A server that does not offer
    SMTPUTF8 gets no MAIL: RFC 6531 has a client never send it an address with UTF-8,
    and there is no downgrade (the address is the mailbox). The mail's SMTPError then,
    the line in tx let go (protocol.Session._failed): MAIL_REPLY_ERROR, step MAIL, no
    reply code, as such a server would refuse MAIL (553, X.6.7: "non-ASCII addresses not
    permitted") without the round trip; permanent, as the same server answers the same
    way next time (an outbox moves the mail to dead/); the session goes on."""
    if s.caps & _CAP_SMTPUTF8:
        if s.caps & _CAP_8BITMIME and s.head.cte != _CTE_8BIT:
            s.put(b" BODY=8BITMIME")
        s.put(b" SMTPUTF8")
        return
    s.step = "MAIL"
    s.code = 0
    raise s.refusal(_MAIL_REPLY_ERROR, "The server does not offer SMTPUTF8 (RFC 6531): the "
                    "address '%s' cannot be sent; nothing was sent" % first(s.head))


def first(head):
    """The mail's first address with UTF-8: the sender, a recipient (To, Cc, Bcc: the
    envelope) or a Reply-To (mime.py's Mail keeps that one)."""
    for a in [bytes(head.from_address).decode()] + list(head.recipients):
        for c in a:
            if ord(c) > 127:
                return a
    return getattr(head, "wide_reply", None)
