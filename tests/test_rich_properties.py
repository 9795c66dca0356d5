"""Injection through a rich mail's fields, hypothesis-generated (issue 14): any text as a
display name, a header's name or value, a filename, a content type or a content ID either
is refused before anything is sent (ValueError / TypeError) or arrives neutralised: the
envelope and the set of header lines are exactly what the mail asked for, and the value
reads back as it was given. CPython through the shim against aiosmtpd (the firmware's own
code; tests/test_rich.py runs the fixed cases on MicroPython too)."""

import email
import email.header
import email.policy
import email.utils

import microsmtp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from microsmtp_host.shim import net
from servers import SENDER, Server

RCPT = "ops@example.org"
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Text with what an attacker reaches for: line ends, quotes, angle brackets, encoded-word
# markers, commas, colons, non-ASCII.
HOSTILE = st.text(st.sampled_from(list("ab \t\r\n\"\\<>,;:=?@_()[]é€\x00\x7f")) |
                  st.characters(blacklist_categories=("Cs",)), max_size=40)  # (no lone
# surrogates: a CPython str only; MicroPython's are UTF-8 always)
BASE_HEADERS = {"Date", "From", "To", "Subject", "Message-ID", "MIME-Version",
                "Content-Type", "Content-Transfer-Encoding"}


@pytest.fixture(scope="module")
def server():
    srv = Server(auth=False).start()
    yield srv
    srv.stop()


def send(server, to, **rich):
    """The mail as it arrived (parsed), or the exception that refused it before sending."""
    client = microsmtp.Client(server.host, server.port, from_address=SENDER,
                              client_domain="b.example.org", auth=microsmtp.AUTH_NONE, net=net)
    before = len(server.handler.messages)
    try:
        client.send(to, "prop", "Boiler at 92 C.\n", **rich)
    except (ValueError, TypeError) as e:
        event("refused")
        assert len(server.handler.messages) == before, "refused, yet something was sent"
        assert client.pool.available() == client.pool.count
        return e
    event("sent")
    m = server.handler.messages[-1]
    return email.message_from_bytes(m["content"], policy=email.policy.default), m


def unquoted(name):
    """The display name a reader should see for `name <addr>` as given."""
    name = name.strip(" ")
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name


@SETTINGS
@given(name=HOSTILE)
def test_any_display_name(server, name):
    got = send(server, "%s <%s>" % (name, RCPT))
    if isinstance(got, Exception):
        assert "control character" in str(got) or "display name" in str(got), got
        return
    msg, m = got
    assert m["rcpt_tos"] == [RCPT]
    assert set(msg.keys()) == BASE_HEADERS
    (addr,) = msg["To"].addresses
    assert addr.addr_spec == RCPT
    assert rfc2047_name(m["content"]) == unquoted(name)


def rfc2047_name(content):
    """To's display name decoded as RFC 2047 §6.2 reads it: the space between two encoded
    words dropped (Python 3.11's address parser keeps it; mail readers drop it), through
    the email package's own decode_header."""
    raw = email.message_from_bytes(content, policy=email.policy.compat32)["To"]
    name, _ = email.utils.parseaddr(raw.replace("\r\n", ""))
    return str(email.header.make_header(email.header.decode_header(name)))


# A header name: mostly field characters (RFC 5322 ftext), with the hostile ones mixed in.
FIELD = st.text(st.sampled_from(list("XYab-_.09!#~")) | st.sampled_from(list(": \r\n\té")),
                min_size=1, max_size=20).map(lambda t: "X-" + t)


@SETTINGS
@given(name=FIELD, value=HOSTILE)
def test_any_header(server, name, value):
    got = send(server, RCPT, headers=[(name, value)])
    if isinstance(got, Exception):
        return
    msg, m = got
    assert m["rcpt_tos"] == [RCPT]
    assert set(msg.keys()) == BASE_HEADERS | {name}
    assert msg[name].strip() == value.strip()


def sent_part(server, filename="still.jpg", ctype="image/jpeg", cid="still"):
    """The one attachment of an HTML mail as it arrived, or the refusal."""
    got = send(server, RCPT, html="<p>x</p>",
               attachments=[(filename, ctype, b"\x00\xff data", cid)])
    if isinstance(got, Exception):
        return got
    msg, m = got
    assert m["rcpt_tos"] == [RCPT]
    assert set(msg.keys()) == BASE_HEADERS
    parts = [p for p in msg.walk() if p.get_filename() is not None]
    assert len(parts) == 1
    assert set(parts[0].keys()) == {"Content-Type", "Content-Disposition", "Content-ID",
                                    "Content-Transfer-Encoding"}
    assert parts[0].get_payload(decode=True) == b"\x00\xff data"
    return parts[0]


@SETTINGS
@given(filename=HOSTILE)
def test_any_filename(server, filename):
    part = sent_part(server, filename=filename)
    if not isinstance(part, Exception):
        assert part.get_filename() == filename


# A valid value with hostile text spliced in somewhere (or nothing: then it must pass).
SPLICE = st.text(st.sampled_from(list("ab.-") + list(" ;=\"\r\n()<>@,:\\[]?/é\x00")),
                 max_size=4)


def spliced(valid):
    return st.tuples(st.integers(0, len(valid)), SPLICE).map(
        lambda t: valid[:t[0]] + t[1] + valid[t[0]:])


@SETTINGS
@given(ctype=spliced("image/jpeg"))
def test_any_content_type(server, ctype):
    part = sent_part(server, ctype=ctype)
    if not isinstance(part, Exception):
        assert part.get_content_type() == ctype.lower()


@SETTINGS
@given(cid=spliced("still.1") | spliced("still@example.org"))
def test_any_content_id(server, cid):
    part = sent_part(server, cid=cid)
    if not isinstance(part, Exception):
        assert part["Content-ID"] == "<%s>" % cid
