"""SMTPUTF8 (RFC 6531; issue 14, item 4): addresses with UTF-8, on both runtimes through
aiosmtpd (tests/mp_rich.py sends, as for tests/test_rich.py), and the address grammar with
hypothesis.

Checked: a server that offers SMTPUTF8 (aiosmtpd's enable_SMTPUTF8) gets MAIL ... SMTPUTF8
(with BODY=8BITMIME, which it offers) and the UTF-8 addresses in MAIL, RCPT and the headers
as they are (RFC 6532), for To, Cc, Bcc, display names and Reply-To too; one that does not
gets no MAIL at all: the mail's SMTPError (MAIL_REPLY_ERROR, step MAIL, permanent, the
address named) before it, QUIT, every buffer back, and the client sends an ASCII mail
next; an ASCII mail never says SMTPUTF8 and never loads utf8.py, on the same servers and
in the same sessions; injection with UTF-8 addresses (controls, C1 controls, '>', ',',
space) is a ValueError before anything is sent; generated UTF-8 local parts are accepted or
refused as an independent oracle says, on CPython and on the unix port alike."""

import email
import email.policy
import io
import random

import microsmtp
import pytest
import scenarios
import scripted
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import RCPT, SENDER, Recorder, Server
from test_injection import ATEXT, _accepted, _check_address_on_wire, assert_same_verdicts, oracle
from test_outbox import run_ops
from test_rich import BOTH, run

pytestmark = pytest.mark.timeout(120)

ZOE = "zoë@bücher.example"  # a UTF-8 local part and domain
JORG = "jörg@例え.テスト"
REFUSED = "The server does not offer SMTPUTF8 (RFC 6531): the address '%s' cannot be sent; " \
          "nothing was sent (MAIL)."


class QuitRecorder(Recorder):
    """A Recorder whose events list QUIT too: a session that ends politely."""

    async def handle_QUIT(self, server, session, envelope):
        self.events.append("QUIT")
        return "221 Bye"


def serve(**smtp):
    srv = Server(auth=False, handler=QuitRecorder(), **smtp).start()
    return srv


@pytest.fixture
def utf8_server():
    """aiosmtpd offering SMTPUTF8 (and 8BITMIME, as RFC 6531 §3.1 has it)."""
    srv = serve(enable_SMTPUTF8=True)
    yield srv
    srv.stop()


@pytest.fixture
def ascii_server():
    """aiosmtpd without SMTPUTF8: it would answer MAIL ... SMTPUTF8 with 501. (Its
    Controller offers SMTPUTF8 unless told not to.)"""
    srv = serve(enable_SMTPUTF8=False)
    yield srv
    srv.stop()


def heap(runtime, how):
    return "128K" if how == "aio" and runtime == "micropython-ram" else None  # asyncio too


def parsed(message):
    """A message whose headers hold UTF-8 (RFC 6532), parsed as the text it is."""
    return email.message_from_string(message["content"].decode(),
                                     policy=email.policy.default)


def options(srv):
    return [m["mail_options"] for m in srv.handler.messages]


@BOTH
@pytest.mark.parametrize("how", ["send", "session", "aio"])
def test_utf8_addresses_go_with_smtputf8(runtime, how, utf8_server, tmp_path):
    body = "Kessel bei 92 °C.\n"  # 8-bit: BODY=8BITMIME once, as for any 8-bit body
    res = run(runtime, {"port": utf8_server.port, "from": ZOE, "how": how, "sends": [
        {"to": [JORG, RCPT], "subject": "Grüße", "body": body},
        {"to": RCPT, "subject": "ascii to", "body": "ascii\n"}]}, tmp_path, heap(runtime, how))
    assert [r["status"] for r in res] == [0, 0], res
    assert all(r["utf8_loaded"] for r in res), res
    if how != "session":  # (a session holds its buffers till it ends)
        assert all(r["pool_full"] for r in res), res
    first, second = utf8_server.handler.messages
    assert first["mail_from"] == second["mail_from"] == ZOE
    assert first["rcpt_tos"] == [JORG, RCPT] and second["rcpt_tos"] == [RCPT]
    # The sender has UTF-8: both mails need SMTPUTF8, the second with a 7-bit body too.
    size = [o for o in first["mail_options"] if o.startswith("SIZE=")]
    assert first["mail_options"] == size + ["BODY=8BITMIME", "SMTPUTF8"], first
    assert second["mail_options"][1:] == ["BODY=8BITMIME", "SMTPUTF8"], second
    # RFC 6532: the addresses in the headers as they are, UTF-8 bytes on the wire.
    head = first["content"].split(b"\r\n\r\n")[0]
    assert b"From: " + ZOE.encode() + b"\r\n" in head
    assert b"To: " + JORG.encode() + b",\r\n " + RCPT.encode() + b"\r\n" in head
    msg = parsed(first)
    assert [a.addr_spec for a in msg["To"].addresses] == [JORG, RCPT]
    assert msg["From"].addresses[0].addr_spec == ZOE
    assert msg["Subject"] == "Grüße"
    assert first["content"].split(b"\r\n\r\n", 1)[1] == body.replace("\n", "\r\n").encode()
    if how == "session":
        assert utf8_server.handler.sessions == 1


@BOTH
@pytest.mark.parametrize("how", ["send", "session", "aio"])
def test_ascii_mails_never_say_smtputf8(runtime, how, utf8_server, tmp_path):
    """From an ASCII sender: ASCII mails (an 8-bit body, a rich one with a non-ASCII
    display name) go without SMTPUTF8 and load no utf8.py, before and after a mail to a
    UTF-8 address on the same client (the same connection with session)."""
    plain = {"to": RCPT, "subject": "plain", "body": "Kessel bei 92 °C.\n"}
    rich = {"to": RCPT, "subject": "rich", "rich": {"cc": "Zoë Müller <zoe@example.org>"}}
    wide = {"to": [RCPT, JORG], "subject": "wide"}
    res = run(runtime, {"port": utf8_server.port, "how": how,
                        "sends": [plain, rich, wide, plain, rich]}, tmp_path, heap(runtime, how))
    assert [r["status"] for r in res] == [0] * 5, res
    if runtime != "cpython":  # (one CPython process runs every test: loaded before)
        assert [r["utf8_loaded"] for r in res] == [False, False, True, True, True], res
    opts = options(utf8_server)
    assert [("SMTPUTF8" in o) for o in opts] == [False, False, True, False, False], opts
    assert [o[1:] for o in opts] == [["BODY=8BITMIME"], [], ["BODY=8BITMIME", "SMTPUTF8"],
                                     ["BODY=8BITMIME"], []], opts
    assert [m["rcpt_tos"] for m in utf8_server.handler.messages] == [
        [RCPT], [RCPT, "zoe@example.org"], [RCPT, JORG], [RCPT], [RCPT, "zoe@example.org"]]


@BOTH
@pytest.mark.parametrize("how", ["send", "session"])
@pytest.mark.parametrize("where, mail", [
    ("to", {"to": [RCPT, JORG]}),
    ("from", {"to": RCPT}),
    ("bcc", {"to": RCPT, "rich": {"cc": "pager@example.org", "bcc": [RCPT, JORG]}}),
    ("reply_to", {"to": RCPT, "rich": {"reply_to": ["help@example.org", "Zoë <%s>" % ZOE]}}),
], ids=["to", "from", "bcc", "reply_to"])
def test_refused_before_mail_without_smtputf8(runtime, how, where, mail, ascii_server,
                                              tmp_path):
    """No MAIL for the mail, a clear permanent SMTPError naming the address, every buffer
    back (send), QUIT; an ASCII mail after it goes (on the same connection with session). A
    Reply-To with UTF-8 is only a header, yet one RFC 6532 allows only with SMTPUTF8."""
    sender = ZOE if where == "from" else SENDER
    after = {"to": RCPT, "subject": "after"}
    sends = [dict(mail, subject="wide"), after] if where != "from" else [mail]
    res = run(runtime, {"port": ascii_server.port, "from": sender, "how": how,
                        "sends": sends}, tmp_path)
    named = {"to": JORG, "from": ZOE, "bcc": JORG, "reply_to": ZOE}[where]
    assert res[0]["status"] == microsmtp.MAIL_REPLY_ERROR, res
    assert res[0]["error"] == REFUSED % named, res
    assert res[0]["step"] == "MAIL" and res[0]["temporary"] is False, res
    if how != "session":  # (a session holds its buffers till it ends)
        assert all(r["pool_full"] for r in res), res
    h = ascii_server.handler
    if where == "from":  # every mail of this client needs SMTPUTF8: nothing ever goes
        assert h.events == ["QUIT"] and h.mail_froms == [] and h.sessions == 1
        return
    assert res[1]["status"] == 0, res
    assert h.mail_froms == [SENDER] and h.subjects == ["after"]
    assert h.events == (["QUIT", "MAIL", "RCPT", "DATA", "QUIT"] if how == "send" else
                        ["MAIL", "RCPT", "DATA", "QUIT"]), h.events
    assert h.sessions == (2 if how == "send" else 1)
    assert "SMTPUTF8" not in h.messages[0]["mail_options"]


@BOTH
def test_utf8_in_rich_mails(runtime, utf8_server, tmp_path):
    """To with a display name, Cc, Bcc and Reply-To with UTF-8 addresses: the envelope
    holds To, Cc and Bcc; the headers To, Cc and Reply-To as they are, Bcc in none."""
    rich = {"cc": ["Zoë Müller <%s>" % ZOE, "pager@example.org"], "bcc": JORG,
            "reply_to": '"Hilfe, 2. Ebene" <hilfe@bücher.example>',
            "attachments": [{"name": "Übersicht.csv", "type": "text/csv", "text": "t,v\n"}]}
    res = run(runtime, {"port": utf8_server.port, "sends": [
        {"to": ['"Ops" <ops@example.org>', "Jörg <%s>" % JORG], "subject": "Kessel",
         "rich": rich}]}, tmp_path)
    assert res[0]["status"] == 0 and res[0]["pool_full"], res
    m = utf8_server.handler.messages[0]
    assert m["rcpt_tos"] == ["ops@example.org", JORG, ZOE, "pager@example.org", JORG]
    assert "SMTPUTF8" in m["mail_options"] and "BODY=8BITMIME" in m["mail_options"]
    msg = parsed(m)
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Ops", "ops@example.org"), ("Jörg", JORG)]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Zoë Müller", ZOE), ("", "pager@example.org")]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        ("Hilfe, 2. Ebene", "hilfe@bücher.example")]
    assert msg["Bcc"] is None
    head = m["content"].split(b"\r\n\r\n")[0]
    assert ZOE.encode() in head and "hilfe@bücher.example".encode() in head
    assert head.count(JORG.encode()) == 1  # in To only: Bcc is the envelope's
    files = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk()
             if p.get_filename()}
    assert files == {"Übersicht.csv": b"t,v\n"}


INJECTED = ["zoë\r\n@bücher.example", "zoë@bücher.example\r\nBcc: eve@example.org",
            "zoë\x85@bücher.example", "zoë@bücher\x9f.example", "zoë@bücher.example>",
            "zoë@bücher.example> SMTPUTF8 AUTH=<>", "zoë,eve@bücher.example",
            "zoë eve@bücher.example", "zoë@bücher.example,eve@example.org", "zoë\x00@x.org",
            "zoë@[bücher.example]", '"zoë> X=Y"@bücher.example', "zoë@bücher..example",
            "é" * 33 + "@bücher.example"]  # 66 bytes before "@"


@BOTH
@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
def test_injection_with_utf8_addresses_refused(runtime, field, utf8_server, tmp_path):
    """Each value: ValueError before anything is sent, every buffer back, and the client
    sends an ASCII mail after it (the only mail the server gets)."""
    sends = []
    for bad in INJECTED:
        sends.append({"to": bad} if field == "to" else {"to": RCPT, "rich": {field: bad}})
        sends.append({"to": RCPT, "subject": "after"})
    res = run(runtime, {"port": utf8_server.port, "sends": sends}, tmp_path)
    for bad, refused, after in zip(INJECTED, res[::2], res[1::2], strict=True):
        assert str(refused["status"]).startswith("ValueError: "), (bad, refused)
        assert refused["pool_full"] and after["status"] == 0, (bad, refused, after)
    assert utf8_server.handler.subjects == ["after"] * len(INJECTED)
    assert utf8_server.handler.mail_froms == [SENDER] * len(INJECTED)


@pytest.mark.parametrize("bad", INJECTED)
def test_injected_from_address_refused(bad):
    with pytest.raises(ValueError):
        microsmtp.Client("mail.test", from_address=bad, auth=microsmtp.AUTH_NONE)


def test_ehlo_domain_stays_ascii():
    with pytest.raises(ValueError, match="punycode"):
        microsmtp.Client("mail.test", from_address=ZOE, client_domain="bücher.example",
                         auth=microsmtp.AUTH_NONE)
    microsmtp.Client("mail.test", from_address=ZOE, client_domain="xn--bcher-kva.example",
                     auth=microsmtp.AUTH_NONE, net=scripted.ScriptedNet([]))


@pytest.mark.parametrize("runtime", ["cpython", pytest.param(
    "micropython", marks=pytest.mark.unixport)])
@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8", "without"])
def test_outbox(runtime, smtputf8, mp_box, tmp_path):
    """The outbox keeps a UTF-8 address (its JSON line) and flushes it in the session of
    the rest: with SMTPUTF8 delivered; without, to dead/ (permanent) with the sentence
    beside it, no MAIL for it, and the ASCII mail after it goes."""
    srv = serve(enable_SMTPUTF8=smtputf8)
    try:
        res = run_ops(runtime, srv.port, tmp_path / "outbox", [
            ["put", [JORG], "wide", "Kessel 92 C\n"], ["put", [RCPT], "ascii", "ok\n"],
            ["flush"]], mp_box, tmp_path)
        h = srv.handler
        assert h.sessions == 1 and res[-1] == ["pool", True], res
        if smtputf8:
            assert res[2] == ["flush", 2, [], []], res
            assert h.subjects == ["wide", "ascii"]
            assert [m["rcpt_tos"] for m in h.messages] == [[JORG], [RCPT]]
            assert ["SMTPUTF8" in m["mail_options"] for m in h.messages] == [True, False]
        else:
            assert res[2] == ["flush", 1, [], ["00000001.msg"]], res
            assert h.subjects == ["ascii"] and len(h.mail_froms) == 1
            reply = (tmp_path / "outbox" / "dead" / "00000001.reply").read_text("utf-8")
            assert reply == REFUSED % JORG
    finally:
        srv.stop()


@pytest.mark.parametrize("cid", ["logo@bücher.example", "lögo"])
def test_content_id_stays_ascii(cid):
    """A Content-ID is checked as an address or a domain, yet it is no mailbox: no UTF-8
    there (a header RFC 6532 would allow only with SMTPUTF8, for an id a cid: URL names)."""
    client = microsmtp.Client("mail.test", from_address=SENDER, auth=microsmtp.AUTH_NONE,
                              net=scripted.ScriptedNet([]))
    with pytest.raises(ValueError, match="non-ASCII"):
        client.send(RCPT, "s", "b", html="<img src='cid:x'>",
                    attachments=[("logo.png", "image/png", b"x", cid)])
    assert client.pool.available() == client.pool.count


# --- transcripts (tests/scripted.py): the exact lines ---------------------------------------

def _script(caps, mail_line):
    return [scenarios.S(scenarios.GREETING), scenarios.C(scenarios.EHLO), scenarios.S(caps)] \
        + scenarios.envelope(to=(JORG,), mail=mail_line) + scenarios.QUIT


@pytest.mark.parametrize("caps, params", [
    ("250-mail.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n", " BODY=8BITMIME SMTPUTF8"),
    ("250-mail.test\r\n250 SMTPUTF8\r\n", " SMTPUTF8"),  # (no 8BITMIME: a broken server)
    ("250-mail.test\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 smtputf8\r\n",
     " SIZE=611 BODY=8BITMIME SMTPUTF8"),  # EHLO keywords in any case (RFC 5321 §2.4)
], ids=["8bitmime", "no-8bitmime", "size"])
def test_mail_line_exact(caps, params):
    wire = io.BytesIO()
    net = scripted.ScriptedNet(_script(caps, "MAIL FROM:<%s>%s\r\n" % (ZOE, params)),
                               wire=wire)
    microsmtp.Client("mail.test", from_address=ZOE, client_domain="dev.example.org", net=net,
                     auth=microsmtp.AUTH_NONE).send(JORG, "Grüße", "ascii body\n")
    assert not net.errors and not net.leftover(), net.errors
    assert ("RCPT TO:<%s>\r\n" % JORG).encode() in wire.getvalue()


@pytest.mark.parametrize("caps", [
    "250-mail.test\r\n250-8BITMIME\r\n250 DSN\r\n",
    "250-mail.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
], ids=["plain", "pipelining"])
def test_no_mail_on_the_wire_without_smtputf8(caps):
    """After EHLO the client's next line is QUIT: nothing of the mail (a pipelining server
    would get MAIL, RCPT and DATA in one write)."""
    wire = io.BytesIO()
    net = scripted.ScriptedNet([scenarios.S(scenarios.GREETING), scenarios.C(scenarios.EHLO),
                                scenarios.S(caps)] + scenarios.QUIT, wire=wire)
    client = microsmtp.Client("mail.test", from_address=SENDER, client_domain="dev.example.org",
                              net=net, auth=microsmtp.AUTH_NONE)
    with pytest.raises(microsmtp.SMTPError) as e:
        client.send([RCPT, JORG], "Grüße", "x\n")
    assert e.value.status == microsmtp.MAIL_REPLY_ERROR and e.value.step == "MAIL"
    assert e.value.reply_code is None and not e.value.temporary
    assert str(e.value) == REFUSED % JORG
    assert not net.errors and not net.leftover(), net.errors
    assert wire.getvalue() == (scenarios.EHLO + "QUIT\r\n").encode()
    assert client.pool.available() == client.pool.count


def test_utf8_module_without_memory():
    """utf8.py loads at the first mail that needs it, in the session after EHLO: no heap
    for it is an SMTPError PACKET_ALLOCATE_ERROR (temporary) with every buffer back, as
    for the other modules loaded when used, and the next send loads it and goes."""
    from unit_cases import _NoMemoryFor

    caps = "250-mail.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
    net = scripted.ScriptedNet([scenarios.S(scenarios.GREETING), scenarios.C(scenarios.EHLO),
                                scenarios.S(caps)] + _script(
        caps, "MAIL FROM:<%s> BODY=8BITMIME SMTPUTF8\r\n" % SENDER))
    client = microsmtp.Client("mail.test", from_address=SENDER, client_domain="dev.example.org",
                              net=net, auth=microsmtp.AUTH_NONE)
    with _NoMemoryFor("utf8"):
        with pytest.raises(microsmtp.SMTPError) as e:
            client.send(JORG, "Grüße", "x\n")
    assert e.value.status == microsmtp.PACKET_ALLOCATE_ERROR and e.value.temporary
    assert client.pool.available() == client.pool.count
    client.send(JORG, "Grüße", "x\n")
    assert not net.errors and not net.leftover(), net.errors


# --- the grammar: generated UTF-8 local parts ---------------------------------------------

# Non-ASCII characters of every UTF-8 length (2, 3 and 4 bytes), none a control.
WIDE = "éßøĳжשًअ中文字한글€✓\U0001F600\U00010348"
# What no local part may hold outside a quoted string (and none a quoted one may: controls,
# C1 controls, space, '<', '>', ','), each refused wherever it is put.
FORBIDDEN = [" ", "<", ">", ",", "(", ")", "[", "]", ":", ";", "\\", '"', "\r", "\n", "\x00",
             "\t", "\x7f", "\x80", "\x85", "\x9f"]
ONE_LINE = [c for c in FORBIDDEN if c not in "\r\n"]  # (the unix port reads them a line each)


@st.composite
def local_parts(draw):
    """A dot-atom of atext and UTF-8 (RFC 6531 §3.3), 1 to 70 bytes (over 64: refused),
    some with a forbidden character spliced in."""
    atoms = draw(st.lists(st.text(ATEXT + WIDE, min_size=1, max_size=8), min_size=1,
                          max_size=5))
    local = ".".join(atoms)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(local)))
        local = local[:at] + draw(st.sampled_from(FORBIDDEN)) + local[at:]
    return local


@settings(max_examples=300, deadline=None)
@given(local=local_parts(), domain=st.sampled_from(["bücher.example", "example.org",
                                                     "例え.テスト", "[192.0.2.1]"]))
def test_generated_utf8_local_parts(local, domain):
    """Accepted exactly when the oracle (RFC 5321 + RFC 6531, written apart) says so, and
    then sent as one path with SMTPUTF8; refused otherwise, zero bytes sent."""
    addr = local + "@" + domain
    valid = oracle(addr)
    assert _accepted(addr) == valid, addr
    if not set(local) & set(FORBIDDEN) and len(local.encode()) <= 64:
        assert valid, addr  # a dot-atom of atext and UTF-8 is an address
    if set(local) & set(FORBIDDEN):
        assert not valid, addr
    _check_address_on_wire(addr)


@pytest.mark.unixport
def test_micropython_checks_utf8_addresses_as_cpython_does(tmp_path):
    """The same verdicts on the unix port (tests/mp_check.py) for 400 seeded UTF-8
    addresses, valid and not."""
    rnd = random.Random(6531)
    cases = []
    while len(cases) < 400:
        local = ".".join("".join(rnd.choice(ATEXT + WIDE) for _ in range(rnd.randint(1, 8)))
                         for _ in range(rnd.randint(1, 5)))
        if rnd.random() < 0.5:
            at = rnd.randint(0, len(local))
            local = local[:at] + rnd.choice(ONE_LINE) + local[at:]
        cases.append(local + "@" + rnd.choice(["bücher.example", "例え.テスト", "x.org"]))
    assert_same_verdicts(cases, tmp_path)
