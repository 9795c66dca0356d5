"""Injection and smuggling (issue 5, point 6; RELIABILITY.md cases 1-3).

- A C0 control (incl. CR, LF, TAB, NUL) or DEL anywhere in a user-supplied field: ValueError,
  no connection, zero bytes on the wire (and the client still sends afterwards).
- RFC 2047 look-alikes in a subject never make a header (parsed with the `email` package).
- Bodies made of every smuggling sequence of case 3 go to a real aiosmtpd on loopback
  through a proxy that records the raw client bytes: one message, only CRLF line endings,
  the body byte-exact after normalisation. CPython with hypothesis; a fixed list of the
  case-3 sequences on the MicroPython unix port too."""

import email
import email.policy
import io
import re
import socket
import threading

import microsmtp
import pytest
import runtimes
import scenarios
import scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from microsmtp_host.shim import net as real_net
from sending import config, normalised, send_micropython
from servers import RCPT, SENDER, ListeningThread, Server

CONTROLS = [chr(c) for c in range(32)] + ["\x7f"]
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def injected(draw, base):
    """`base` with 1-3 control characters (or a whole "\\r\\nBcc: x@y") at random places."""
    value = base
    for _ in range(draw(st.integers(1, 3))):
        bad = draw(st.one_of(st.sampled_from(CONTROLS),
                             st.sampled_from(["\r\nBcc: evil@x", "\r\n", "\nRCPT TO:<e@x>"])))
        at = draw(st.integers(0, len(value)))
        value = value[:at] + bad + value[at:]
    return value


class RecordingNet(scripted.ScriptedNet):
    """ScriptedNet that also records name lookups."""

    def __init__(self, script, wire=None):
        super().__init__(script, wire=wire)
        self.lookups = []

    def getaddrinfo(self, host, *args, **kw):
        self.lookups.append(host)
        return super().getaddrinfo(host, *args, **kw)


BASE = {"server": "mail.test", "from_address": "dev@example.org", "username": "alice",
        "password": "s3cret", "client_domain": "dev.example.org", "oauth_token": "ya29.tok"}


def _client(net, **kw):
    args = dict(from_address="dev@example.org", client_domain="dev.example.org", net=net,
                auth=microsmtp.AUTH_NONE)
    args.update(kw)
    return microsmtp.Client(args.pop("server", "mail.test"), 25, **args)


# --- case 1: control characters in every user-supplied field -----------------------------------

@pytest.mark.parametrize("field", sorted(BASE))
@FAST
@given(data=st.data())
def test_constructor_fields_refuse_controls(field, data):
    value = data.draw(injected(BASE[field]))
    net = RecordingNet([])
    kw = {"server": "mail.test"}
    if field in ("username", "password", "oauth_token"):
        kw.update(username="alice", auth=microsmtp.AUTH_AUTO)
    kw[field] = value
    with pytest.raises(ValueError):
        _client(net, **kw)
    assert net.lookups == [] and net.sockets == [], "a connection was attempted"


def _send_refused(**send):
    """send() with bad input: ValueError, nothing on the wire; then the same client sends."""
    wire = io.BytesIO()
    net = RecordingNet(scenarios.session(), wire)
    client = _client(net)
    with pytest.raises(ValueError):
        client.send(send.get("to", "ops@example.org"), send.get("subject", "Boiler"),
                    "Temperature 92 C\n")
    assert wire.getvalue() == b"" and net.sockets == [] and net.lookups == []
    # NetX's API: the status instead of the exception, equally before any connection.
    assert client.mail_send(send.get("to", "ops@example.org"), 2, send.get("subject", "Boiler"),
                            "x\n") == microsmtp.INVALID_PARAM
    assert wire.getvalue() == b"" and net.sockets == []
    assert client.pool.available() == client.pool.count
    client.send("ops@example.org", "Boiler at 92 C", "Temperature 92 C\n")  # still usable
    assert not net.errors and not net.leftover(), (net.errors, net.leftover())


@FAST
@given(rcpt=injected("ops@example.org"))
def test_recipient_refuses_controls(rcpt):
    _send_refused(to=rcpt)


@FAST
@given(rcpt=injected("ops@example.org"), at=st.integers(0, 2))
def test_recipient_in_list_refuses_controls(rcpt, at):
    to = ["a@example.org", "b@example.org"]
    to.insert(at, rcpt)
    wire = io.BytesIO()
    net = RecordingNet(scenarios.session(), wire)
    client = _client(net)
    with pytest.raises(ValueError):
        client.send(to, "Boiler", "x\n")
    assert wire.getvalue() == b"" and net.sockets == [] and net.lookups == []


@FAST
@given(subject=injected("Boiler at 92 C"))
def test_subject_refuses_controls(subject):
    _send_refused(subject=subject)


# --- case 2: encoded-word look-alikes never make a header ----------------------------------------

LOOKALIKES = ["=?UTF-8?Q?=0A?=Bcc: x@y", "=?UTF-8?Q?=0D=0A?=Bcc: x@y",
              "=?utf-8?q?a=0D=0ABcc:_x@y?=", "=?UTF-8?B?DQpCY2M6IHhAeQ==?=",
              "x =?UTF-8?Q?=0A=0A?= Bcc: x@y", "caf\u00e9 =?UTF-8?Q?=0ABcc:x@y?=",
              "=?", "?=", "Bcc: x@y"]
EXPECTED = {"date", "from", "to", "subject", "message-id", "mime-version", "content-type",
            "content-transfer-encoding"}


def _sent_message(wire):
    """The message between DATA's 354 and ".", dot-stuffing undone."""
    data = wire.split(b"DATA\r\n", 1)[1]
    data = data[:data.index(b"\r\n.\r\n") + 2]
    return data.replace(b"\r\n..", b"\r\n.")


def _check_subject(subject):
    wire = io.BytesIO()
    net = scripted.ScriptedNet(scenarios.session(), wire=wire)
    _client(net).send("ops@example.org", subject, "Temperature 92 C\n")
    assert not net.errors and not net.leftover(), net.errors
    raw = _sent_message(wire.getvalue())
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")
             if line[:1] not in (b" ", b"\t")]
    assert not any(n.startswith(b"bcc") for n in names), head
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert {k.lower() for k in msg.keys()} <= EXPECTED, msg.keys()
    assert len(msg.keys()) == len(set(msg.keys())), "a header appears twice"
    assert msg["Bcc"] is None and msg.get_all("To") == ["ops@example.org"]
    # The reader sees the subject as written (whitespace runs aside: folding).
    assert " ".join(str(msg["Subject"]).split()) == " ".join(subject.split())


@pytest.mark.parametrize("subject", LOOKALIKES)
def test_encoded_word_lookalikes(subject):
    _check_subject(subject)


@FAST
@given(st.lists(st.sampled_from(["=?UTF-8?Q?", "=?utf-8?B?", "?=", "=0A", "=0D", "=0D=0A",
                                 "Bcc:", " x@y", ":", " ", "_", "To: z@z", "\u00e9", "=?",
                                 "DQpCY2M6", "ok"]), min_size=1, max_size=20).map("".join))
def test_encoded_word_lookalikes_generated(subject):
    if not subject.strip():
        subject = "x" + subject
    _check_subject(subject)


# --- case 3: smuggling bodies to a real server, raw bytes recorded ------------------------------

class CaptureProxy(ListeningThread):
    """A loopback TCP proxy in front of a server; keeps every byte clients sent, per
    connection, and the event of each client's end (EOF)."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.host = "127.0.0.1"
        self.conns = []
        super().__init__()

    def handle(self, c):
        rec = {"data": bytearray(), "done": threading.Event()}
        self.conns.append(rec)
        s = socket.create_connection(self.target)
        threading.Thread(target=self._pump, args=(c, s, rec), daemon=True).start()
        threading.Thread(target=self._pump, args=(s, c, None), daemon=True).start()

    def _pump(self, src, dst, rec):
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if rec is not None:
                    rec["data"] += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if rec is not None:
                rec["done"].set()

    def take(self):
        """The raw client bytes of the one connection made since the last take()."""
        assert len(self.conns) == 1, "%d connections" % len(self.conns)
        rec = self.conns.pop()
        assert rec["done"].wait(5), "the client never closed"
        return bytes(rec["data"])


@pytest.fixture(scope="module")
def smtp_proxy():
    srv = Server("127.0.0.1").start()
    proxy = CaptureProxy(srv.port)
    yield srv, proxy
    proxy.stop()
    srv.stop()


PIECES = ["\n.\r\n", "\r\n.\n", "\n.\n", "\r\r\n", "\r", "\n", ".", "..", "MAIL FROM:<evil@x>",
          "DATA", "text", "\u00e9"]
CASE3 = ["a\nb\n", "a\rb\r", "a\n.\r\nMAIL FROM:<evil@x>\r\n", "a\r\n.\nMAIL FROM:<evil@x>\n",
         "a\n.\nDATA\n", "a\r\r\n.\r\r\nb", "\n.\r\n", "\r\n.\n", "\n.\n", "\r\r\n", "..\n.\n.",
         "x\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nevil\r\n.\r\ny"]


def _check_received(srv, proxy, body):
    raw = proxy.take()
    bare = raw.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare, "bare CR or LF on the wire: %r" % raw
    assert raw.count(b"\r\n.\r\n") == 1, "more than one end of data on the wire"
    msgs = srv.handler.messages
    assert len(msgs) == 1, "%d messages" % len(msgs)
    assert srv.handler.mail_froms == [SENDER], srv.handler.mail_froms
    content = msgs[0]["content"]
    head, received = content.split(b"\r\n\r\n", 1)
    assert re.search(rb"(?im)^Content-Transfer-Encoding: (7bit|8bit)$", head), head
    assert received == normalised(body), (received, body)
    assert msgs[0]["rcpt_tos"] == [RCPT]


def _reset(srv, proxy):
    srv.handler.reset()
    proxy.conns.clear()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(st.sampled_from(PIECES), min_size=1, max_size=30).map("".join))
def test_smuggling_bodies_cpython(smtp_proxy, body):
    srv, proxy = smtp_proxy
    _reset(srv, proxy)
    client = microsmtp.Client(proxy.host, proxy.port, from_address=SENDER,
                              client_domain="boiler.example.com", net=real_net,
                              auth=microsmtp.AUTH_NONE)
    client.send(RCPT, "Boiler alert", body)
    _check_received(srv, proxy, body)


@pytest.mark.unixport
@pytest.mark.parametrize("body", CASE3, ids=[repr(b) for b in CASE3])
def test_smuggling_bodies_micropython(smtp_proxy, mp_send_dir, tmp_path, body):
    srv, proxy = smtp_proxy
    _reset(srv, proxy)
    cfg = config(proxy, {"body": body, "username": None, "auth": "NONE"})
    res = send_micropython(cfg, mp_send_dir, tmp_path)
    assert res[0]["status"] == 0, res
    _check_received(srv, proxy, body)


# --- issue 9, defect 5: addresses follow RFC 5321's Mailbox grammar ------------------------------
# What passed before: an address literal carrying ESMTP parameters, a local part with ","
# or "(" that made a second To: address, an EHLO name with a command in it.
HOSTILE = ["alerts@[127.0.0.1]> SMTPUTF8 AUTH=<> X=]",
           "a@[127.0.0.1]> NOTIFY=NEVER ORCPT=rfc822;x]",
           "evil@evil.example,victim@example.com", "a(b)@example.org", "a@b@example.org",
           "a b@example.org", "a>@example.org", '"a> X=Y"@example.org',
           '"a,b"@example.org', "a@example.org> X=Y", "a@[1.2.3.4] X", "a@[1.2.3]",
           "a@[256.1.1.1]", "a@[IPv6:1::2::3]", "a@[IPv6:1:2:3:4:5:6:7]", "a@[IPv6:fe80::1%eth0]",
           "a..b@example.org", ".a@example.org", "a.@example.org", "a@-x.example",
           "a@x-.example", "a@x..example", "a@example.org.", "a@[x]", '""@example.org',
           "a@" + "x" * 64 + ".example", "a@[General:stuff]"]
VALID = ["a@example.org", "o'neil+tag@example.org", "!#$%&'*+-/=?^_`{|}~@example.org",
         "a.b.c@x-y.example", '"john..doe"@example.org', '"a\\"b"@example.org',
         '"a@b"@example.org', "a@[127.0.0.1]", "a@[IPv6:2001:db8::1]", "a@[ipv6:::1]",
         "a@[IPv6:1:2:3:4:5:6:7:8]", "a@[IPv6:::ffff:192.0.2.1]", "a@localhost",
         "a@" + "x" * 63 + ".example"]
ATEXT = "abcXYZ019!#$%&'*+-/=?^_`{|}~"
# Pieces a hostile caller (or a value read from a tampered file) would splice in.
SPLICE = [" ", ">", "<", ",", "(", ")", "@", "[", "]", '"', "\\", ":", ";", ".", "..", "=",
          " NOTIFY=NEVER", "> SIZE=1", "> AUTH=<>", ",victim@example.com", " ORCPT=rfc822;x",
          "]> X=Y", "[", "IPv6:", "::", "1.2.3.4", "-", "\u00e9"]


def oracle(addr):
    """RFC 5321 §4.1.2-4.1.3 Mailbox as microsmtp takes it, written apart from the firmware
    (regular expressions and the ipaddress module): a dot-string or a quoted string
    without space, '<', '>' or ','; a host name or an IPv4 / IPv6 literal. RFC 6531 §3.3:
    UTF-8 (any character from U+00A0: C1 controls are refused) in atext, qtext and a
    domain's labels; lengths in UTF-8 bytes (64 before "@", 63 a label, 255 in all)."""
    import ipaddress

    u8 = r"[^\x00-\x9f]"  # RFC 6531's UTF8-non-ascii, C1 controls (U+0080-U+009F) aside
    atom = rf"(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~]|{u8})+"
    qtext = rf"(?:[\x21\x23-\x2b\x2d-\x3b\x3d\x3f-\x5b\x5d-\x7e]|{u8})"  # no space " , < > \\
    local = rf'(?:{atom}(?:\.{atom})*|"(?:{qtext}|\\["\\])+")'
    let = rf"(?:[A-Za-z0-9]|{u8})"
    label = rf"{let}(?:(?:{let}|-)*{let})?"
    m = re.fullmatch(rf"({local})@(?:({label}(?:\.{label})*)|\[(.*)\])", addr, re.S)
    if not m or len(addr.encode()) > 255 or len(m.group(1).encode()) > 64:
        return False
    literal = m.group(3)
    if literal is None:
        return all(len(x.encode()) <= 63 for x in m.group(2).split("."))
    if literal[:5].upper() == "IPV6:":
        v6 = literal[5:]
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", v6):
            return False
        try:
            ipaddress.IPv6Address(re.sub(r"(\d+)\.(\d+)\.(\d+)\.(\d+)$", lambda g: ".".join(
                str(int(x)) for x in g.groups()), v6))
        except ValueError:
            return False
        # §4.1.3: "::" stands for two groups or more (ipaddress lets it stand for one).
        groups = len([g for g in v6.replace("::", ":").split(":") if g])
        groups += "." in v6
        return "::" not in v6 or groups <= 6
    parts = literal.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255
                                   for p in parts)


@st.composite
def addresses(draw):
    """Valid addresses of every form, some with hostile pieces spliced in."""
    kind = draw(st.sampled_from(["atom", "quoted", "v4", "v6"]))
    local = ".".join(draw(st.lists(st.text(ATEXT, min_size=1, max_size=6), min_size=1,
                                   max_size=3)))
    if kind == "quoted":
        local = '"%s"' % draw(st.text("ab.@!#[]:;\\\"", min_size=1, max_size=8)).replace(
            "\\", "\\\\").replace('"', '\\"')
    if kind == "v4":
        domain = "[%s]" % ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    elif kind == "v6":
        import ipaddress

        ip = ipaddress.IPv6Address(draw(st.integers(0, 2 ** 128 - 1)))
        domain = "[IPv6:%s]" % draw(st.sampled_from([ip.exploded, ip.compressed]))
    else:
        domain = draw(st.sampled_from(["example.org", "x-1.example", "localhost"]))
    addr = local + "@" + domain
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(addr)))
        addr = addr[:at] + draw(st.sampled_from(SPLICE)) + addr[at:]
    return addr


def _accepted(addr):
    try:
        microsmtp.message.check(addr, "recipient", microsmtp.message.ADDRESS)
        return True
    except ValueError:
        return False


def _wide(addr):
    return any(ord(c) > 127 for c in addr)


def _wire_of(addr):
    """The client's bytes for one send from and to `addr`; the script wants the exact
    MAIL and RCPT lines, so anything more (a parameter) fails the session. An address with
    UTF-8 goes to a server that offers SMTPUTF8, with MAIL's SMTPUTF8 (RFC 6531) and
    BODY=8BITMIME (the server offers 8BITMIME), and nothing else."""
    wire = io.BytesIO()
    wide = _wide(addr)
    net = scripted.ScriptedNet(scenarios.session(
        caps=scenarios.CAPS_NOAUTH.replace("250 DSN", "250-DSN\r\n250 SMTPUTF8") if wide
        else scenarios.CAPS_NOAUTH, to=(addr,), mail="MAIL FROM:<%s>%s\r\n" % (
            addr, " BODY=8BITMIME SMTPUTF8" if wide else "")), wire=wire)
    _client(net, from_address=addr).send(addr, "Boiler", "Temperature 92 C\n")
    assert not net.errors and not net.leftover(), net.errors
    return wire.getvalue()


def _check_address_on_wire(addr):
    if not _accepted(addr):
        _send_refused(to=addr)  # ValueError, zero bytes, the client still sends
        with pytest.raises(ValueError):
            _client(RecordingNet([]), from_address=addr)
        return
    assert not set(addr) & set(" <>,\r\n"), addr
    wire = _wire_of(addr)
    for line in wire.split(b"\r\n"):
        if line.startswith((b"MAIL ", b"RCPT ")):
            # One path, no parameter: "<", the address, ">" and nothing after it (but MAIL's
            # SMTPUTF8 for an address with UTF-8, the client's own).
            assert re.fullmatch(rb"(MAIL FROM|RCPT TO):<[^<> ,]+>", line) or _wide(addr) and \
                re.fullmatch(rb"MAIL FROM:<[^<> ,]+> BODY=8BITMIME SMTPUTF8", line), line
    # RFC 6532: the headers carry the address's UTF-8 as it is.
    msg = email.message_from_string(_sent_message(wire).decode(), policy=email.policy.compat32)
    assert msg["To"] == addr and msg["From"] == addr, (msg["To"], msg["From"])


@pytest.mark.parametrize("addr", HOSTILE)
def test_hostile_addresses_refused(addr):
    assert not _accepted(addr) and not oracle(addr), addr
    _check_address_on_wire(addr)


@pytest.mark.parametrize("addr", VALID)
def test_valid_addresses_sent_as_they_are(addr):
    assert _accepted(addr) and oracle(addr), addr
    _check_address_on_wire(addr)


@settings(max_examples=300, deadline=None)
@given(addr=addresses())
def test_generated_addresses_match_the_grammar(addr):
    """The firmware's check agrees with the independent oracle, and whatever it accepts
    reaches MAIL, RCPT, From: and To: as one path with no parameter and no second address."""
    assert _accepted(addr) == oracle(addr), addr
    _check_address_on_wire(addr)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(ATEXT[:6]) + SPLICE), min_size=1, max_size=12).map(
    "".join))
def test_generated_client_domains(domain):
    """EHLO's argument: a host name or a valid address literal, else ValueError before
    connecting (issue 9: "[1.2.3.4] MAIL FROM:<a@b>]" reached EHLO). ASCII only: an
    address's domain may have UTF-8 (RFC 6531), EHLO's may not."""
    accepted = oracle("a@" + domain) and domain.isascii()
    try:
        microsmtp.message.check(domain, "client_domain", microsmtp.message.DOMAIN)
        assert accepted, domain
    except ValueError:
        assert not accepted, domain
        return
    wire = io.BytesIO()
    net = scripted.ScriptedNet(scenarios.session(), wire=wire)
    net.script[1] = ["C", "EHLO %s\r\n" % domain]
    _client(net, client_domain=domain).send("ops@example.org", "Boiler", "x\n")
    assert not net.errors and not net.leftover(), net.errors


def test_client_domain_with_a_command_refused():
    with pytest.raises(ValueError):
        _client(RecordingNet([]), client_domain="[1.2.3.4] MAIL FROM:<a@b>]")


@pytest.mark.unixport
def test_micropython_checks_addresses_as_cpython_does(tmp_path):
    """The same check on the unix port (code as on a board): 600 addresses generated with a
    fixed seed, hostile and valid, get the same verdict on both runtimes."""
    import ipaddress
    import random

    rnd = random.Random(9)
    cases = HOSTILE + VALID
    while len(cases) < 600:
        ip = ipaddress.IPv6Address(rnd.getrandbits(128) >> rnd.choice((0, 64, 112)))
        addr = rnd.choice(VALID + ["a.b@[%d.%d.%d.%d]" % tuple(rnd.getrandbits(8) for _ in "1234"),
                                   "x@[IPv6:%s]" % rnd.choice((ip.compressed, ip.exploded))])
        for _ in range(rnd.randint(0, 2)):
            at = rnd.randint(0, len(addr))
            addr = addr[:at] + rnd.choice(SPLICE + list(ATEXT)) + addr[at:]
        cases.append(addr)
    assert_same_verdicts(cases, tmp_path)


def assert_same_verdicts(cases, tmp_path):
    """The unix port's verdict on each address (tests/mp_check.py) is CPython's and the
    oracle's; both kinds were tried."""
    data = tmp_path / "addresses.txt"
    data.write_text("\n".join(cases) + "\n", encoding="utf-8")
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_check.py"], tmp_path / "mpy")
    proc = runtimes.run_micropython("mp_check", [str(data)], [mpy, runtimes.firmware_mpy()],
                                    timeout=60)
    verdicts = proc.stdout.split()
    assert len(verdicts) == len(cases), proc.stderr[-2000:]
    assert verdicts == ["1" if _accepted(a) else "0" for a in cases]
    assert verdicts == ["1" if oracle(a) else "0" for a in cases]
    assert verdicts.count("1") > 100 and verdicts.count("0") > 100
