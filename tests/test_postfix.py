"""Real Postfix (3.7, Debian) as the server, on both runtimes (issue 12, item 3's Postfix
half): the private instance of tests/postfix_server.py (the session fixture `postfix` in
conftest.py), strict settings on every port (bare LF rejected with no exclusions,
unauthorised pipelining forbidden, SIZE 200000), delivery into a virtual Maildir read here.

After every test Postfix's log is read: a "bare <LF>" or "improper command pipelining"
line fails it, whatever the client reported."""

import email
import email.policy
import re
import socket

import microsmtp
import mta_checks
import postfix_server
import pytest
import runtimes

RUNTIMES = ("cpython", "micropython")

pytestmark = pytest.mark.timeout(90)
both = pytest.mark.parametrize("runtime", RUNTIMES)


# --- the fixtures pf and postfix_send (conftest.py) and postfix_server's helpers ------------

SENDER = postfix_server.SENDER
RCPT = postfix_server.RCPT
delivered_one = postfix_server.delivered_one
check_body, ok = mta_checks.check_body, mta_checks.ok


@pytest.fixture
def send(postfix_send):
    return postfix_send


# --- every port, every mechanism -------------------------------------------------------------

MECHS = {"PLAIN": "PLAIN", "LOGIN": "LOGIN", "CRAM_MD5": "CRAM-MD5"}
# The strongest of what Postfix offers here (PLAIN LOGIN CRAM-MD5): the one that never
# sends the password.
AUTO_PICKS = "CRAM-MD5"
PORT_TLS = {"submission": microsmtp.TLS_STARTTLS, "implicit": microsmtp.TLS_IMPLICIT}


@both
@pytest.mark.parametrize("port", ["plain", "discard"])
def test_plain_port_starttls_no_auth(runtime, port, pf, send):
    ok(send(runtime, port, tls=microsmtp.TLS_STARTTLS, auth="NONE"))
    raw, msg = delivered_one(pf)
    assert msg["Subject"] == "Boiler alert"
    check_body(msg, "Pressure low.\n")
    log = pf.log()
    assert "TLS connection established" in log and "sasl_method" not in log


@both
@pytest.mark.parametrize("port", list(PORT_TLS))
@pytest.mark.parametrize("mech", list(MECHS) + ["AUTO"])
def test_auth_port_mechanism(runtime, port, mech, pf, send):
    ok(send(runtime, port, tls=PORT_TLS[port], auth=mech))
    delivered_one(pf)
    used = re.findall(r"sasl_method=([\w-]+), sasl_username=(\S+)", pf.log())
    want = AUTO_PICKS if mech == "AUTO" else MECHS[mech]
    assert used[-1] == (want, "%s@%s" % (postfix_server.USER, postfix_server.SASL_REALM))


# --- bodies, byte-exact ----------------------------------------------------------------------

BODIES = mta_checks.BODIES


@both
@pytest.mark.parametrize("name", list(BODIES))
def test_body_byte_exact(runtime, name, pf, send):
    ok(send(runtime, "plain", body=BODIES[name]))
    mta_checks.check_delivered(*delivered_one(pf), BODIES[name], mta_checks.BODY_CTE.get(name))


@both
def test_file_body_with_a_long_line(runtime, pf, send, tmp_path):
    body, path = mta_checks.long_line_file(tmp_path)
    ok(send(runtime, "submission", auth="PLAIN", body_file=str(path)))
    mta_checks.check_delivered(*delivered_one(pf), body, "quoted-printable")


@both
def test_no_pipelining_no_8bitmime(runtime, pf, send):
    # smtpd_discard_ehlo_keywords = pipelining, 8bitmime: one command a turn (Postfix's
    # smtpd_forbid_unauth_pipelining would log anything written ahead), 8-bit text as
    # quoted-printable.
    ok(send(runtime, "discard", body=BODIES["utf-8"]))
    raw, msg = delivered_one(pf)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(raw) < 128
    check_body(msg, BODIES["utf-8"])


# --- refusals --------------------------------------------------------------------------------

@both
def test_too_big_refused_before_upload(runtime, pf, send, tmp_path):
    # SIZE 200000 in Postfix's EHLO reply: the client knows the file's size and sends
    # nothing of it: no MAIL reaches Postfix, nothing is queued.
    path = tmp_path / "big.txt"
    path.write_bytes(b"0123456789abcdef" * 15000 + b"\n")  # 240 KB
    res = send(runtime, "submission", auth="PLAIN", body_file=str(path))
    assert res["status"] == microsmtp.OVERSIZE_MAIL_DATA, res
    log = pf.settled_log()
    assert "mail=" not in log and "message-id=" not in log, log
    assert not pf.messages()


@both
def test_wrong_password(runtime, pf, send):
    res = send(runtime, "submission", auth="PLAIN", password="wr0ng-Zebra-pa55")
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR, res
    assert res["reply_code"] == 535, res
    # Postfix answers "535 5.7.8 Error: authentication failed: ...": of AUTH's replies the
    # client keeps the enhanced code only (protocol.py's _text: a server that echoes must
    # not put a credential into an error), so the words of the sentence are its own.
    assert "wrong username or password" in res["error"], res
    assert res["reply"] == "5.7.8" and res["error"].endswith("(AUTH): 535 5.7.8."), res
    assert "wr0ng" not in res["error"], res
    log = pf.settled_log()
    assert "SASL PLAIN authentication failed" in log, log
    assert "message-id=" not in log, log
    assert not pf.messages()


@both
def test_pinned_mechanism_not_offered_is_never_sent(runtime, pf, send):
    # The plain port offers STARTTLS but no AUTH at all: a pinned CRAM-MD5 fails after the
    # second EHLO, before any AUTH line (issue 12: no blind "AUTH CRAM-MD5" -> 504).
    res = send(runtime, "plain", auth="CRAM_MD5")
    assert res["status"] == microsmtp.AUTHENTICATION_ERROR, res
    assert "does not offer AUTH CRAM-MD5" in res["error"], res
    log = pf.settled_log()
    assert "TLS connection established" in log, log  # it got as far as TLS
    # Postfix's count of the session's commands: EHLO, STARTTLS, EHLO, QUIT; no auth=.
    assert re.search(r"disconnect from \S+ ehlo=2 starttls=1 quit=1 commands=4$", log,
                     re.M), log
    assert "auth=" not in log and "sasl_" not in log, log
    assert not pf.messages()


@both
@pytest.mark.parametrize("port", list(PORT_TLS))
def test_wrong_ca(runtime, port, pf, send, other_ca):
    res = send(runtime, port, tls=PORT_TLS[port], auth="PLAIN", cadata=other_ca)
    assert res["status"] == microsmtp.TLS_CERT_ERROR, res
    log = pf.settled_log()
    assert "auth=" not in log and "sasl_" not in log and "mail=" not in log, log
    assert not pf.messages()


# --- pipelining on and off, several mails a session ------------------------------------------

@both
@pytest.mark.parametrize("port", ["plain", "discard"], ids=["PIPELINING", "no-PIPELINING"])
def test_session_of_three_mails(runtime, port, pf, tmp_path):
    # One client.session() (tests/mp_session.py: no TLS, no AUTH) with three mails, the
    # second to two mailboxes: MAIL, RCPT... and DATA go as one write where PIPELINING is
    # offered, one at a time where it is hidden; smtpd_forbid_unauth_pipelining would log
    # (and refuse) any command written ahead of its turn.
    rcpts = [[RCPT], [RCPT, "pager@example.org"], [RCPT]]
    mails = [{"to": to, "subject": "Boiler alert %d" % i, "body": "Pressure low (%d).\n" % i}
             for i, to in enumerate(rcpts)]
    cfg = {"server": "127.0.0.1", "port": pf.ports[port], "from": SENDER, "mails": mails,
           "client_domain": "boiler.example.com",
           "timeouts": {"greeting": 10, "envelope": 10, "message": 20, "quit": 5}}
    results, end = runtimes.session(runtime, cfg, tmp_path)
    assert [r["status"] for r in results] == [0, 0, 0], results
    assert end["pool_full"]
    ops, pager = pf.wait_messages(3), pf.wait_messages(1, "pager")
    assert len(ops) == 3 and len(pager) == 1, (ops, pager)
    subjects = sorted(email.message_from_bytes(f.read_bytes())["Subject"] for f in ops)
    assert subjects == [m["subject"] for m in mails]
    log = pf.wait_log("status=sent", 4)
    assert log.count(" connect from ") == 1, log  # one connection for the three
    assert log.count("status=sent (delivered to maildir)") == 4, log


def test_the_log_guard_sees_what_it_looks_for(postfix):
    """The words the `pf` fixture looks for are the ones this Postfix logs: a bare LF in
    DATA, and a command written ahead where PIPELINING was not offered."""
    postfix.clear()
    postfix.mark_log()
    with socket.create_connection(("127.0.0.1", postfix.ports["plain"]), 5) as s:
        s.settimeout(10)
        f = s.makefile("rb")
        f.readline()
        for cmd in (b"EHLO x", b"MAIL FROM:<a@example.com>", b"RCPT TO:<%s>" % RCPT.encode(),
                    b"DATA"):
            s.sendall(cmd + b"\r\n")
            while f.readline()[3:4] == b"-":  # to the last line of the reply
                pass
        s.sendall(b"Subject: x\r\n\r\nbare\nLF\r\n.\r\n")
        assert f.readline().startswith(b"550 "), "Postfix took a bare LF"
        s.sendall(b"QUIT\r\n")
        f.readline()
        f.close()  # (its own reference to the connection)
    with socket.create_connection(("127.0.0.1", postfix.ports["plain"]), 5) as s:
        s.settimeout(10)
        # MAIL written with HELO, whose reply never offers PIPELINING
        s.sendall(b"HELO x\r\nMAIL FROM:<a@example.com>\r\n")
        data = b""
        while chunk := s.recv(1000):  # Postfix hangs up after its 554
            data += chunk
        assert b"554 5.5.0 Error: SMTP protocol synchronization" in data, data
    log = postfix.settled_log(sessions=2)
    for word in postfix_server.BAD_LOG:
        assert word in log, (word, log)
    assert not postfix.messages()
    postfix.mark_log()
