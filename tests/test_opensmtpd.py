"""Real OpenSMTPD (7.4, Debian's package unpacked, never installed) as the server, on both
runtimes (issue 12, items 2 and 3's OpenSMTPD half): the private instance of
tests/opensmtpd_server.py (the session fixture `opensmtpd` in conftest.py) in a mount
namespace of its own, delivering into Maildirs read here; SIZE 200000 advertised.

What OpenSMTPD cannot be made to do, and so is not tested here as it is with Postfix: it has
no CRAM-MD5 (its AUTH is PLAIN and LOGIN only), never offers PIPELINING (and refuses a client
that writes ahead: every test here is a no-PIPELINING one), cannot hide 8BITMIME, and cannot
be told to reject a bare LF: it takes one as a line end (shown by
test_what_opensmtpd_takes_from_a_raw_client), so only the byte-exact bodies show that the
client never sends one. After every test its log is read: an "smtp bad-input" line (a
command written ahead) fails it."""

import email
import os
import shutil
import socket
import tempfile

import microsmtp
import mta_checks
import opensmtpd_server
import pytest
import runtimes

RUNTIMES = ("cpython", "micropython")

pytestmark = pytest.mark.timeout(90)
both = pytest.mark.parametrize("runtime", RUNTIMES)

SENDER = mta_checks.SENDER
RCPT = mta_checks.RCPT
BODIES = mta_checks.BODIES
delivered_one = opensmtpd_server.delivered_one
check_body, ok = mta_checks.check_body, mta_checks.ok
AUTH_OK = "smtp authentication user=%s result=ok" % opensmtpd_server.USER


@pytest.fixture
def send(opensmtpd_send):
    return opensmtpd_send


def verbs(srv, log):
    """The client's commands in `log`, their first word only (no credentials)."""
    return [c.split()[0].upper() for c in srv.commands(log)]


def auth_lines(srv, log):
    """The mechanisms of the AUTH commands in `log`."""
    return [c.split()[1].upper() for c in srv.commands(log) if c.upper().startswith("AUTH ")]


# --- every port, every mechanism -------------------------------------------------------------

MECHS = {"PLAIN": "PLAIN", "LOGIN": "LOGIN"}  # all its AUTH offers: "250-AUTH PLAIN LOGIN"
# microsmtp's AUTO takes the strongest it knows of what is offered: of PLAIN and LOGIN,
# PLAIN (one round trip, the same secrecy under TLS).
AUTO_PICKS = "PLAIN"
PORT_TLS = {"submission": microsmtp.TLS_STARTTLS, "implicit": microsmtp.TLS_IMPLICIT}


@both
def test_plain_port_starttls_no_auth(runtime, osd, send):
    ok(send(runtime, "plain", tls=microsmtp.TLS_STARTTLS, auth="NONE"))
    raw, msg = delivered_one(osd)
    assert msg["Subject"] == "Boiler alert"
    assert "by %s (OpenSMTPD)" % opensmtpd_server.HOSTNAME in msg["Received"]
    check_body(msg, "Pressure low.\n")
    log = osd.settled_log()
    assert " smtp tls ciphers=TLSv1." in log and "smtp authentication" not in log, log
    # One command a turn (it offers no PIPELINING, and would have refused one written ahead).
    assert verbs(osd, log) == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@both
@pytest.mark.parametrize("port", list(PORT_TLS))
@pytest.mark.parametrize("mech", list(MECHS) + ["AUTO"])
def test_auth_port_mechanism(runtime, port, mech, osd, send):
    ok(send(runtime, port, tls=PORT_TLS[port], auth=mech))
    delivered_one(osd)
    log = osd.settled_log()
    assert log.count(AUTH_OK) == 1, log
    assert " smtp tls ciphers=TLSv1." in log, log
    want = AUTO_PICKS if mech == "AUTO" else MECHS[mech]
    assert auth_lines(osd, log) == [want], log


@both
@pytest.mark.parametrize("port", ["plain", "submission"])
@pytest.mark.parametrize("mech", ["CRAM_MD5", "XOAUTH2"])
def test_pinned_mechanism_not_offered_is_never_sent(runtime, port, mech, osd, send):
    # CRAM-MD5 or XOAUTH2 (with a token) pinned: the plain port offers no AUTH at all, the
    # submission port PLAIN and LOGIN. Either way the client stops after the EHLO that
    # follows STARTTLS, before any AUTH line (issue 12: no blind "AUTH CRAM-MD5" -> 504),
    # with its own status.
    res = send(runtime, port, auth=mech, oauth_token="ya29.test-token")
    assert res["status"] == microsmtp.AUTHENTICATION_ERROR, res
    assert "does not offer AUTH %s" % mech.replace("_", "-") in res["error"], res
    if port == "submission":
        assert "it offers PLAIN LOGIN" in res["error"], res
    log = osd.settled_log()
    assert verbs(osd, log) == ["EHLO", "STARTTLS", "EHLO", "QUIT"], log
    assert "smtp authentication" not in log, log
    assert not osd.messages()


# --- bodies, byte-exact ----------------------------------------------------------------------

@both
@pytest.mark.parametrize("name", list(BODIES))
def test_body_byte_exact(runtime, name, osd, send):
    # "smuggling" holds "\n.\r\n" and "\r\n.\n": this OpenSMTPD ends the data at a bare-LF
    # dot line (test_what_opensmtpd_takes_from_a_raw_client), so a client that let one
    # through would cut the message short here.
    ok(send(runtime, "plain", body=BODIES[name]))
    mta_checks.check_delivered(*delivered_one(osd), BODIES[name], mta_checks.BODY_CTE.get(name))


@both
def test_file_body_with_a_long_line(runtime, osd, send, tmp_path):
    body, path = mta_checks.long_line_file(tmp_path)
    ok(send(runtime, "submission", auth="PLAIN", body_file=str(path)))
    mta_checks.check_delivered(*delivered_one(osd), body, "quoted-printable")


# --- refusals --------------------------------------------------------------------------------

BIG = (b"0123456789abcdef" * 4 + b"\n") * 3700  # 240 KB in 65-octet lines, over SIZE 200000


@both
def test_too_big_refused_before_upload(runtime, osd, send, tmp_path):
    # SIZE 200000 in its EHLO reply: the client knows the file's size and sends nothing of
    # it. (OpenSMTPD itself would have taken "MAIL FROM:<...> SIZE=300000" with 250 and
    # refused only after the upload: test_what_opensmtpd_takes_from_a_raw_client.)
    path = tmp_path / "big.txt"
    path.write_bytes(BIG)
    res = send(runtime, "submission", auth="PLAIN", body_file=str(path))
    assert res["status"] == microsmtp.OVERSIZE_MAIL_DATA, res
    log = osd.settled_log()
    assert log.count(AUTH_OK) == 1, log
    assert "MAIL" not in verbs(osd, log) and "[MSG]" not in log, log
    assert "smtp message " not in log, log
    assert not osd.messages()


@both
def test_too_big_of_unknown_size_refused_after_the_dot(runtime, osd, send, tmp_path):
    # The same 240 KB as an iterator of chunks: the client cannot know its size, so it
    # declares none and sends it; OpenSMTPD counts it and refuses it at "." with
    # "554 5.3.4 Message too big for system" (RFC 3463's X.3.4), not 552.
    path = tmp_path / "big.txt"
    path.write_bytes(BIG)
    res = send(runtime, "submission", auth="PLAIN", body_file=str(path), body_chunks=True)
    assert res["reply_code"] == 554 and res["step"] == "MESSAGE", res
    assert "5.3.4" in res["error"], res
    # The client reads 552, or X.3.4 / X.2.3 under any code, as too big (protocol.py, _P_DOT).
    assert res["status"] == microsmtp.OVERSIZE_MAIL_DATA, res
    log = osd.settled_log()
    assert verbs(osd, log)[-1] == "QUIT" and "DATA" in verbs(osd, log), log
    assert "smtp message " not in log, log  # nothing queued
    assert not osd.messages()


@both
@pytest.mark.parametrize("mech", list(MECHS))
def test_wrong_password(runtime, mech, osd, send):
    res = send(runtime, "submission", auth=mech, password="wr0ng-Zebra-pa55")
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR, res
    assert res["reply_code"] == 535, res
    # OpenSMTPD answers "535 Authentication failed", with no RFC 3463 code: of AUTH's text
    # the client keeps that code only (protocol.py's _text), so nothing here.
    assert res["reply"] == "" and res["error"].endswith("(AUTH): 535."), res
    log = osd.settled_log()
    assert "smtp authentication user=%s result=permfail" % opensmtpd_server.USER in log, log
    assert "MAIL" not in verbs(osd, log), log
    assert not osd.messages()


@both
@pytest.mark.parametrize("port", list(PORT_TLS))
def test_wrong_ca(runtime, port, osd, send, other_ca):
    res = send(runtime, port, tls=PORT_TLS[port], auth="PLAIN", cadata=other_ca)
    assert res["status"] == microsmtp.TLS_CERT_ERROR, res
    log = osd.settled_log()
    assert "smtp authentication" not in log and " smtp tls ciphers=" not in log, log
    assert not auth_lines(osd, log) and "MAIL" not in verbs(osd, log), log
    assert not osd.messages()


# --- several mails a session -----------------------------------------------------------------

@both
def test_session_of_three_mails(runtime, osd, tmp_path):
    # One client.session() (tests/mp_session.py: no TLS, no AUTH) with three mails, the
    # second to two mailboxes, one command a turn (no PIPELINING offered; anything written
    # ahead would be refused and logged as bad-input).
    rcpts = [[RCPT], [RCPT, "pager@example.org"], [RCPT]]
    mails = [{"to": to, "subject": "Boiler alert %d" % i, "body": "Pressure low (%d).\n" % i}
             for i, to in enumerate(rcpts)]
    cfg = {"server": "127.0.0.1", "port": osd.ports["plain"], "from": SENDER, "mails": mails,
           "client_domain": "boiler.example.com",
           "timeouts": {"greeting": 10, "envelope": 10, "message": 20, "quit": 5}}
    results, end = runtimes.session(runtime, cfg, tmp_path)
    assert [r["status"] for r in results] == [0, 0, 0], results
    assert end["pool_full"]
    ops, pager = osd.wait_messages(3), osd.wait_messages(1, "pager")
    assert len(ops) == 3 and len(pager) == 1, (ops, pager)
    subjects = sorted(email.message_from_bytes(f.read_bytes())["Subject"] for f in ops)
    assert subjects == [m["subject"] for m in mails]
    log = osd.wait_log(opensmtpd_server.DELIVERED, 4)
    assert log.count(" smtp connected ") == 1, log  # one connection for the three
    assert log.count(opensmtpd_server.DELIVERED) == 4, log


# --- what OpenSMTPD itself does --------------------------------------------------------------

def _reply(f):
    lines = [f.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(f.readline())
    return lines[-1]


def test_what_opensmtpd_takes_from_a_raw_client(opensmtpd):
    """What the fixture's log guard and the tests above rely on, shown with a raw client:
    OpenSMTPD takes a bare LF as a line end and "\\n.\\n" as the end of the data (logging
    nothing); takes SIZE= over its limit at MAIL; and refuses a command written ahead
    ("Pipelining not supported", logged as bad-input)."""
    srv = opensmtpd
    srv.clear()
    srv.mark_log()
    with socket.create_connection(("127.0.0.1", srv.ports["plain"]), 5) as s:
        s.settimeout(10)
        f = s.makefile("rb")
        _reply(f)
        for cmd, code in ((b"EHLO x", b"250"), (b"MAIL FROM:<a@example.com> SIZE=300000",
                                                 b"250"),
                          (b"RCPT TO:<%s>" % RCPT.encode(), b"250"), (b"DATA", b"354")):
            s.sendall(cmd + b"\r\n")
            assert _reply(f).startswith(code), cmd
        s.sendall(b"Subject: x\r\n\r\nbare\nLF\r\nbare\rCR\r\nend\n.\n")
        assert _reply(f).startswith(b"250 "), "OpenSMTPD did not end the data at \\n.\\n"
        s.sendall(b"QUIT\r\n")
        _reply(f)
        f.close()
    raw, msg = delivered_one(srv)
    assert msg.get_payload().endswith("bare\nLF\nbare\rCR\nend\n"), raw
    srv.clear()
    with socket.create_connection(("127.0.0.1", srv.ports["plain"]), 5) as s:
        s.settimeout(10)
        s.recv(1000)
        # MAIL written with HELO, whose reply never offers PIPELINING
        s.sendall(b"HELO x\r\nMAIL FROM:<a@example.com>\r\n")
        data = b""
        try:
            while chunk := s.recv(1000):  # it hangs up after its 500
                data += chunk
        except ConnectionResetError:
            pass
        assert b"500 5.5.1 Invalid command: Pipelining not supported" in data, data
    log = srv.settled_log()
    for word in opensmtpd_server.BAD_LOG:
        assert word in log, (word, log)
    srv.mark_log()


# --- item 7: a clean start and stop ----------------------------------------------------------

def test_own_instance_starts_and_stops_cleanly(opensmtpd):
    """Another instance (its own folder and ports) started and stopped: its pid file names
    smtpd, stop() leaves no process of its group, and nothing of it is seen outside its
    folder: no mount, no smtpd user, spool, socket or mailname on the system."""
    before = {p: os.path.exists(p) for p in ("/var/spool/smtpd", "/run/smtpd.sock",
                                             "/etc/mailname", "/usr/libexec/opensmtpd")}
    passwd = open("/etc/passwd").read()
    root = tempfile.mkdtemp(prefix="microsmtp-opensmtpd-")
    srv = opensmtpd_server.private(root)
    try:
        srv.start()
        pid = srv.pid()
        assert pid == srv.proc.pid, (pid, srv.proc.pid)
        assert os.readlink("/proc/%d/exe" % pid) == str(opensmtpd_server.SMTPD)
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
        assert len(group) >= 6, group  # its privilege-separated processes
        with open("/proc/self/mountinfo") as f:
            assert root not in f.read()  # its overlays are in its own namespace only
        srv.stop()
        assert not any(os.path.exists("/proc/%d" % p) and _pgid(p) == pid for p in group)
    finally:
        if srv.proc:
            srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert {p: os.path.exists(p) for p in before} == before
    assert open("/etc/passwd").read() == passwd
    assert "microsmtp test" not in passwd  # its accounts were its namespace's only


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
