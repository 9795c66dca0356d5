"""TLS and AUTH against real servers on loopback (RELIABILITY.md cases 22-29), from CPython
through the shim and from the MicroPython unix port (firmware as .mpy from emulated flash,
tests/mp_send.py as the app, heap TLS_HEAP).

Servers (tests/tls_servers.py): aiosmtpd with STARTTLS (require_starttls, auth_require_tls)
or implicit TLS, plus CRAM-MD5 and XOAUTH2; small raw-socket servers for what aiosmtpd cannot do
(STARTTLS refused, response injection, capabilities that change after TLS). Certificates
come from trustme CAs made at test time; the client names the server "localhost" and is
given the CA as a file (PEM or DER), or on CPython as PEM text / DER bytes.

Every failing send is checked for leaked credentials: str(e), repr(e) and e.reply never hold
the password, the token, or the base64 a mechanism would send."""

import base64
import socket

import microsmtp
import pytest
from microsmtp_host.shim import net
from sending import RUNTIMES
from servers import RCPT, SENDER, ListeningThread, SilentServer
from tls_servers import (
    PASSWORD,
    TLS_KINDS,
    TOKEN,
    USER,
    WRONG_PASSWORD,
    WRONG_TOKEN,
    LineServer,
    secrets_of,
)

SHORT = {"connect": 3, "greeting": 3, "envelope": 3, "quit": 1}  # failure cases

pytestmark = pytest.mark.timeout(60)
both = pytest.mark.parametrize("runtime", RUNTIMES)


# --- a raw server for what aiosmtpd will not do (tls_servers.LineServer) -----------------------

@pytest.fixture
def raw_server():
    servers = []

    def make(script):
        srv = LineServer(script)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def _ehlo_reply(*keywords):
    lines = [b"raw.example"] + [k.encode() for k in keywords]
    return b"".join(b"250%s%s\r\n" % (b" " if i == len(lines) - 1 else b"-", line)
                    for i, line in enumerate(lines))


def _quit_loop(conn):
    """After a failure only QUIT may come: answer it, refuse anything else."""
    while True:
        line = conn.line()
        if line is None:
            return
        if line.upper() == b"QUIT":
            conn.send(b"221 2.0.0 Bye\r\n")
            return
        conn.send(b"503 5.5.1 Not now\r\n")


def ok(res):
    assert res["status"] == 0, res


# --- sends that succeed ----------------------------------------------------------------------

def _check_delivered(srv, mech):
    """One mail, over TLS, after one accepted AUTH with `mech`; no AUTH/MAIL in clear."""
    ok_entries = [entry for entry in srv.handler.auth_log if entry[1] is True]
    assert ok_entries == [(mech, True)], srv.handler.auth_log
    assert len(srv.handler.messages) == 1, srv.handler.messages
    got = srv.handler.messages[0]
    assert got["tls"] and got["auth"], got
    assert got["mail_from"] == SENDER and got["rcpt_tos"] == [RCPT]
    assert b"Pressure low." in got["content"]
    clear = srv.handler.commands(secure=False)
    assert "AUTH" not in clear and "MAIL" not in clear, clear
    auths = srv.handler.auth_commands()
    assert auths[-1].split()[1].decode() == mech, auths


@both
@pytest.mark.parametrize("kind", list(TLS_KINDS))
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM_MD5", "XOAUTH2"])
def test_pinned_mechanism_over_tls(runtime, kind, mech, aio_server, tls_send):
    srv = aio_server(kind)
    creds = {"token": TOKEN, "password": None} if mech == "XOAUTH2" else {}
    ok(tls_send(runtime, srv.port, tls=TLS_KINDS[kind], auth=mech, **creds))
    _check_delivered(srv, mech.replace("_", "-"))
    assert len(srv.handler.auth_log) == 1


@both
@pytest.mark.parametrize("kind", list(TLS_KINDS))
@pytest.mark.parametrize("mech, offered, listed", [
    ("CRAM_MD5", ("PLAIN", "LOGIN"), "PLAIN LOGIN"),
    ("XOAUTH2", ("PLAIN", "LOGIN", "CRAM-MD5"), "CRAM-MD5 PLAIN LOGIN"),
], ids=["cram-md5", "xoauth2"])
def test_pinned_mechanism_not_offered(runtime, kind, mech, offered, listed, aio_server, tls_send):
    """Issue 12: a pinned mechanism the server's EHLO does not list is refused before any
    AUTH line (no blind "AUTH CRAM-MD5" -> 504): AUTHENTICATION_ERROR, then QUIT."""
    srv = aio_server(kind, mechs=offered)
    creds = {"token": TOKEN, "password": None} if mech == "XOAUTH2" else {}
    res = tls_send(runtime, srv.port, tls=TLS_KINDS[kind], auth=mech, timeouts=SHORT, **creds)
    assert res["status"] == microsmtp.AUTHENTICATION_ERROR == 0xA0, res
    assert res["step"] == "AUTH" and res["reply_code"] is None, res
    assert "The server does not offer AUTH %s (it offers %s); set auth=AUTH_AUTO" % (
        mech.replace("_", "-"), listed) in res["error"], res
    srv.settle()
    assert srv.handler.auth_commands() == [] and srv.handler.auth_log == []
    assert srv.handler.commands(secure=True) == ["EHLO", "QUIT"]
    assert srv.handler.messages == []


@both
@pytest.mark.parametrize("kind", list(TLS_KINDS))
@pytest.mark.parametrize("offered, creds, expected", [
    (None, {}, "CRAM-MD5"),  # all four offered, a password: CRAM-MD5 is the strongest
    (None, {"token": TOKEN}, "XOAUTH2"),  # a token as well: XOAUTH2 first
    (("PLAIN", "LOGIN"), {}, "PLAIN"),
    (("LOGIN",), {}, "LOGIN"),
], ids=["all-password", "all-token", "plain-login", "login-only"])
def test_auto_picks_the_strongest(runtime, kind, offered, creds, expected, aio_server, tls_send):
    srv = aio_server(kind, mechs=offered)
    ok(tls_send(runtime, srv.port, tls=TLS_KINDS[kind], auth="AUTO", **creds))
    _check_delivered(srv, expected)
    assert len(srv.handler.auth_log) == 1


@both
@pytest.mark.parametrize("cadata", ["pem", "der", "pem-text"])
def test_cadata_forms(runtime, cadata, aio_server, tls_send):
    srv = aio_server("implicit")
    ok(tls_send(runtime, srv.port, tls=microsmtp.TLS_IMPLICIT, cadata=cadata, auth="PLAIN"))
    _check_delivered(srv, "PLAIN")


@pytest.mark.parametrize("cadata", ["pem-bytes", "der-bytes"])
@pytest.mark.parametrize("kind", list(TLS_KINDS))
def test_cadata_bytes_cpython(kind, cadata, aio_server, tls_send):
    srv = aio_server(kind)
    ok(tls_send("cpython", srv.port, tls=TLS_KINDS[kind], cadata=cadata, auth="PLAIN"))
    _check_delivered(srv, "PLAIN")


@both
def test_starttls_sequence(runtime, aio_server, tls_send):
    """RFC 3207 §4.2: after TLS, EHLO again; STARTTLS once; everything else over TLS."""
    srv = aio_server("starttls")
    ok(tls_send(runtime, srv.port, cadata="der", auth="PLAIN"))
    assert srv.handler.commands(secure=False) == ["EHLO", "STARTTLS"]
    assert srv.handler.commands(secure=True) == ["EHLO", "AUTH", "MAIL", "RCPT", "DATA",
                                                 "QUIT"]


@both
def test_port_25_with_ca_uses_starttls(runtime, aio_server, tls_send):
    """tls=None on a port other than 465/587 with a CA: STARTTLS, required."""
    srv = aio_server("starttls")
    ok(tls_send(runtime, srv.port, tls=None, cadata="pem", auth="PLAIN"))
    _check_delivered(srv, "PLAIN")
    assert srv.handler.commands(secure=False) == ["EHLO", "STARTTLS"]


@both
@pytest.mark.parametrize("given", ["cadata", "insecure"])
def test_port_25_with_ca_and_starttls_stripped_sends_nothing(runtime, given, aio_server, tls_send):
    """Issue 9, defect 9: a man in the middle strips STARTTLS from EHLO (here: a server
    that never offers it). A CA (or insecure=True) means TLS is required, so neither the
    password nor the mail goes out in clear, even with allow_plaintext_auth."""
    srv = aio_server("plain")
    res = tls_send(runtime, srv.port, tls=None, auth="PLAIN", allow_plaintext_auth=True,
                   timeouts=SHORT, **({"cadata": "pem"} if given == "cadata" else
                                  {"cadata": None, "insecure": True}))
    assert res["status"] == microsmtp.TLS_NOT_OFFERED, res
    assert res["step"] == "EHLO" and "TLS_NONE" in res["error"], res
    srv.settle()
    assert srv.handler.commands() == ["EHLO", "QUIT"]


@both
def test_port_25_without_ca_stays_plain_and_keeps_credentials(runtime, aio_server, tls_send):
    """tls=None and no CA: no STARTTLS; the password is then not sent in clear."""
    srv = aio_server("starttls")
    res = tls_send(runtime, srv.port, tls=None, cadata=None, auth="PLAIN", timeouts=SHORT)
    assert res["status"] == microsmtp.PLAINTEXT_AUTH_REFUSED, res
    srv.settle()
    assert srv.handler.commands() == ["EHLO", "QUIT"]


@both
def test_long_token_on_a_continuation_line(runtime, aio_server, tls_send):
    """RFC 4954 §4: an initial response that would make the AUTH line over 512 octets
    waits for the server's 334 (RELIABILITY.md case 28)."""
    srv = aio_server("implicit", mechs=("XOAUTH2",))
    token = "ya29." + "LongT0ken-" * 150  # 1505 characters, about 2 KB in base64
    srv.handler.token = token
    ok(tls_send(runtime, srv.port, tls=microsmtp.TLS_IMPLICIT, auth="XOAUTH2", token=token,
                password=None))
    _check_delivered(srv, "XOAUTH2")
    assert srv.handler.auth_commands()[0].upper() == b"AUTH XOAUTH2"


@both
def test_insecure_accepts_a_self_signed_certificate(runtime, aio_server, tls_send):
    """insecure=True (documented as dangerous: no certificate or name check)."""
    srv = aio_server("implicit", cert="self-signed")
    ok(tls_send(runtime, srv.port, tls=microsmtp.TLS_IMPLICIT, cadata=None, insecure=True,
                auth="PLAIN"))
    _check_delivered(srv, "PLAIN")


# --- AUTH failures ---------------------------------------------------------------------------

@both
@pytest.mark.parametrize("kind", list(TLS_KINDS))
def test_xoauth2_wrong_token(runtime, kind, aio_server, tls_send):
    srv = aio_server(kind, mechs=("XOAUTH2", "PLAIN"))
    res = tls_send(runtime, srv.port, tls=TLS_KINDS[kind], auth="XOAUTH2", token=WRONG_TOKEN,
                   password=None, timeouts=SHORT)
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR == 0xAD, res
    assert res["reply_code"] == 535 and res["step"] == "AUTH", res
    # A fixed sentence: the JSON is server text, never kept in AUTH (issue 9, defect 4);
    # of the 535's text only its enhanced code.
    assert "token is expired" in res["error"] and res["reply"] == "5.7.8", res
    assert WRONG_TOKEN not in res["error"]
    assert srv.handler.auth_log == [("XOAUTH2", False)]
    assert srv.handler.messages == []
    srv.settle()
    assert "MAIL" not in srv.handler.commands()
    assert len(srv.handler.auth_commands()) == 1


@both
def test_534_moves_to_the_next_mechanism(runtime, aio_server, tls_send):
    srv = aio_server("starttls", mechs=("CRAM-MD5", "PLAIN"), weak=("CRAM-MD5",))
    ok(tls_send(runtime, srv.port, auth="AUTO"))
    assert srv.handler.auth_log == [("CRAM-MD5", 534), ("PLAIN", True)]
    _check_delivered(srv, "PLAIN")
    assert [a.split()[1] for a in srv.handler.auth_commands()] == [b"CRAM-MD5", b"PLAIN"]


@both
def test_534_to_every_mechanism(runtime, aio_server, tls_send):
    srv = aio_server("starttls", mechs=("CRAM-MD5", "PLAIN"), weak=("CRAM-MD5", "PLAIN"))
    res = tls_send(runtime, srv.port, auth="AUTO", timeouts=SHORT)
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR and res["step"] == "AUTH", res
    assert srv.handler.auth_log == [("CRAM-MD5", 534), ("PLAIN", 534)]
    assert srv.handler.messages == []


@both
@pytest.mark.parametrize("mech", ["AUTO", "PLAIN", "LOGIN", "CRAM_MD5"])
def test_535_is_not_retried(runtime, mech, aio_server, tls_send):
    srv = aio_server("starttls", mechs=("CRAM-MD5", "PLAIN", "LOGIN"))
    res = tls_send(runtime, srv.port, auth=mech, password=WRONG_PASSWORD, timeouts=SHORT)
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR and res["reply_code"] == 535, res
    expected = "CRAM-MD5" if mech in ("AUTO", "CRAM_MD5") else mech
    assert srv.handler.auth_log == [(expected, False)]
    srv.settle()
    assert len(srv.handler.auth_commands()) == 1
    assert srv.handler.commands(secure=True) == ["EHLO", "AUTH", "QUIT"]
    assert srv.handler.messages == []


@both
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "XOAUTH2"])
def test_server_echoing_credentials_is_scrubbed(runtime, mech, aio_server, tls_send):
    """A hostile or buggy server repeats the credentials in its refusal: they never reach
    the error (RELIABILITY.md case 29). Issue 9, defect 4: the root fix keeps nothing of
    the server's text in AUTH but its codes (535 5.7.8); a fixed sentence says what
    happened."""
    srv = aio_server("implicit", mechs=(mech,), echo=True)
    creds = ({"token": WRONG_TOKEN, "password": None} if mech == "XOAUTH2"
             else {"password": WRONG_PASSWORD})
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_IMPLICIT, auth=mech, timeouts=SHORT,
                   **creds)
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR and res["reply_code"] == 535, res
    if mech == "XOAUTH2":
        assert "token is expired" in res["error"], res
    else:
        assert "wrong username or password" in res["error"], res
    assert "Bad login" not in res["error"] and res["reply"] == "5.7.8", res
    assert res["error"].endswith("(AUTH): 535 5.7.8."), res
    # (the send fixture checked the password, token and base64 forms are absent)


# --- certificates that must be rejected -----------------------------------------------------

# What each runtime says (CPython: OpenSSL's verify message; MicroPython: mbedTLS's).
CERT_WORDS = {
    ("cpython", "expired"): "expired",
    ("micropython", "expired"): "expired",
    ("cpython", "wrong-name"): "mismatch",
    ("micropython", "wrong-name"): "CN",
    ("cpython", "unknown-ca"): "issuer",
    ("micropython", "unknown-ca"): "trusted CA",
    ("cpython", "self-signed"): "self-signed",
    ("micropython", "self-signed"): "trusted CA",
}


@both
@pytest.mark.parametrize("kind", list(TLS_KINDS))
@pytest.mark.parametrize("cert", ["self-signed", "wrong-name", "unknown-ca", "expired"])
def test_bad_certificate_rejected(runtime, kind, cert, aio_server, tls_send):
    srv = aio_server(kind, cert=cert)
    res = tls_send(runtime, srv.port, tls=TLS_KINDS[kind], cadata="pem", auth="PLAIN",
                   timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_CERT_ERROR == 0xD3, res
    assert res["error"].startswith("The certificate of localhost was rejected"), res
    assert CERT_WORDS[runtime, cert] in res["error"], res
    assert res["elapsed"] < 20, res
    srv.settle()
    assert srv.handler.auth_log == [] and srv.handler.messages == []
    assert srv.handler.commands(secure=True) == []  # nothing at all over the bad TLS
    assert srv.handler.commands() == (["EHLO", "STARTTLS"] if kind == "starttls" else [])


@both
@pytest.mark.timeout(30)
def test_cadata_that_holds_no_certificate(runtime, listener, tls_send):
    """A CA file that is no certificate: the TLS context refuses it (ValueError "invalid
    cert" on MicroPython, the shim alike) before a byte goes out. An SMTPError that says so,
    TLS_CERT_ERROR: it was an AttributeError (secure.wrap called a transport._reason that
    never existed), which left the failure unreported as a status."""
    res = tls_send(runtime, listener.getsockname()[1], host="127.0.0.1",
                   tls=microsmtp.TLS_IMPLICIT, cadata="bad", timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_CERT_ERROR, res
    assert res["step"] == "CONNECT", res
    assert "rejected: invalid cert" in res["error"], res


# Issue 9, defect 14, pinned: connecting to 127.0.0.1, MicroPython's mbedTLS accepts an IP
# address written where a DNS name belongs (the subject CN with no subjectAltName, or a
# DNS-type subjectAltName), which CPython (OpenSSL: only an iPAddress name matches an IP)
# refuses. Both accept a proper iPAddress name ("good") and refuse another address in the
# CN. A change in either runtime fails here and the README's TLS section needs a look.
IP_NAME_OUTCOMES = {
    ("cpython", "good"): 0, ("micropython", "good"): 0,
    ("cpython", "ip-in-cn"): microsmtp.TLS_CERT_ERROR, ("micropython", "ip-in-cn"): 0,
    ("cpython", "ip-as-dns-san"): microsmtp.TLS_CERT_ERROR,
    ("micropython", "ip-as-dns-san"): 0,
    ("cpython", "other-ip-in-cn"): microsmtp.TLS_CERT_ERROR,
    ("micropython", "other-ip-in-cn"): microsmtp.TLS_CERT_ERROR,
}


@both
@pytest.mark.parametrize("cert", ["good", "ip-in-cn", "ip-as-dns-san", "other-ip-in-cn"])
def test_ip_address_names_today(runtime, cert, aio_server, tls_send):
    srv = aio_server("implicit", cert=cert)
    res = tls_send(runtime, srv.port, host="127.0.0.1", tls=microsmtp.TLS_IMPLICIT, auth="PLAIN",
                   timeouts=SHORT)
    assert res["status"] == IP_NAME_OUTCOMES[runtime, cert], res
    if res["status"]:
        assert res["error"].startswith("The certificate of 127.0.0.1 was rejected"), res
        srv.settle()
        assert srv.handler.auth_log == [] and srv.handler.messages == []
    else:
        _check_delivered(srv, "PLAIN")


# --- TLS that cannot happen ------------------------------------------------------------------

@both
def test_tls_required_but_not_offered(runtime, aio_server, tls_send):
    """RFC 3207 §6: STARTTLS stripped from the EHLO reply: abort before AUTH and MAIL."""
    srv = aio_server("plain")
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_STARTTLS, auth="PLAIN", timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_NOT_OFFERED == 0xD0, res
    assert res["step"] == "EHLO", res
    srv.settle()
    assert srv.handler.commands() == ["EHLO", "QUIT"]
    assert srv.handler.auth_log == [] and srv.handler.messages == []


def _refusing(answer):
    def script(conn):
        conn.send(b"220 raw.example ESMTP\r\n")
        assert conn.line().upper().startswith(b"EHLO ")
        conn.send(_ehlo_reply("STARTTLS", "AUTH PLAIN LOGIN", "8BITMIME"))
        assert conn.line().upper() == b"STARTTLS"
        conn.send(answer)
        _quit_loop(conn)
    return script


@both
@pytest.mark.parametrize("answer", [b"454 4.7.0 TLS not available\r\n",
                                    b"500 5.5.1 Unknown command\r\n",
                                    b"250 2.0.0 Sure, go on in clear\r\n"],
                         ids=["454", "500", "250"])
def test_starttls_refused(runtime, answer, raw_server, tls_send):
    srv = raw_server(_refusing(answer))
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_STARTTLS, auth="PLAIN", timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_REFUSED == 0xD1, res
    assert res["step"] == "STARTTLS" and res["reply_code"] == int(answer[:3]), res
    conn = srv.only_conn()
    assert conn.commands() == ["EHLO", "STARTTLS", "QUIT"], conn.lines
    assert conn.rest == b"" and srv.errors == []


@both
def test_starttls_garbage_answer(runtime, raw_server, tls_send):
    srv = raw_server(_refusing(b"TLS? what is TLS\r\n"))
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_STARTTLS, auth="PLAIN", timeouts=SHORT)
    # A malformed reply code: the lines were intact, so QUIT, and nothing else.
    assert res["status"] == microsmtp.SERVER_ERROR_REPLY == 0xAE, res
    assert res["step"] == "STARTTLS", res
    conn = srv.only_conn()
    assert conn.commands() == ["EHLO", "STARTTLS", "QUIT"], conn.lines
    assert conn.rest == b""


@both
def test_starttls_response_injection(runtime, raw_server, tls_send):
    """Bytes after STARTTLS's 220 in the same read would pass for TLS-protected replies
    (CVE-2021-22947, Mutt CVE-2020-14954): the session ends, nothing more is sent."""
    def script(conn):
        conn.send(b"220 raw.example ESMTP\r\n")
        conn.line()
        conn.send(_ehlo_reply("STARTTLS", "AUTH PLAIN"))
        conn.line()
        conn.send(b"220 go ahead\r\n250-injected\r\n")  # one send: one read for the client

    srv = raw_server(script)
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_STARTTLS, auth="PLAIN", timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_INJECTION == 0xD5, res
    assert res["step"] == "STARTTLS", res
    conn = srv.only_conn()
    assert srv.errors == []
    assert conn.commands() == ["EHLO", "STARTTLS"]
    assert conn.rest == b"", "the client sent %r after STARTTLS" % conn.rest


@both
def test_capabilities_after_starttls_replace_the_old(runtime, pki, raw_server, tls_send):
    """RFC 3207 §4.2: what the server said in clear is forgotten after TLS. In clear it
    offers PLAIN and 8BITMIME, over TLS only LOGIN, no 8BITMIME, and STARTTLS again (which
    must not be taken twice)."""
    ctx = pki.server_context()

    def script(conn):
        conn.send(b"220 raw.example ESMTP\r\n")
        conn.line()
        conn.send(_ehlo_reply("STARTTLS", "AUTH PLAIN CRAM-MD5", "8BITMIME"))
        conn.line()
        conn.send(b"220 2.0.0 Ready to start TLS\r\n")
        conn.starttls(ctx)
        conn.line()
        conn.send(_ehlo_reply("STARTTLS", "AUTH LOGIN"))
        line = conn.line()
        if line.upper() != b"AUTH LOGIN":
            conn.send(b"504 5.5.4 Unrecognized authentication type\r\n")
            return _quit_loop(conn)
        conn.send(b"334 VXNlcm5hbWU6\r\n")
        conn.line()
        conn.send(b"334 UGFzc3dvcmQ6\r\n")
        conn.line()
        conn.send(b"235 2.7.0 Authentication successful\r\n")
        for reply in (b"250 2.1.0 OK\r\n", b"250 2.1.5 OK\r\n",
                      b"354 End data with <CR><LF>.<CR><LF>\r\n"):
            conn.line()
            conn.send(reply)
        while conn.line() != b".":
            pass
        conn.send(b"250 2.0.0 queued\r\n")
        _quit_loop(conn)

    srv = raw_server(script)
    ok(tls_send(runtime, srv.port, tls=microsmtp.TLS_STARTTLS, auth="AUTO"))
    conn = srv.only_conn()
    assert srv.errors == []
    clear = [line for tls, line in conn.lines if not tls]
    secure = [line for tls, line in conn.lines if tls]
    assert [line.split()[0].upper() for line in clear] == [b"EHLO", b"STARTTLS"]
    assert secure[0].upper().startswith(b"EHLO ")
    assert secure[1].upper() == b"AUTH LOGIN"
    assert base64.b64decode(secure[2]) == USER.encode()
    assert base64.b64decode(secure[3]) == PASSWORD.encode()
    assert secure[4].upper() == b"MAIL FROM:<%s>" % SENDER.upper().encode(), secure[4]
    assert b"STARTTLS" not in [line.upper() for line in secure]


@both
def test_implicit_tls_to_a_plaintext_server(runtime, aio_server, tls_send):
    """A server that greets in clear (wrong port): a clean handshake error, bounded."""
    srv = aio_server("plain")
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_IMPLICIT, auth="PLAIN",
                   timeouts={"connect": 2, "greeting": 2, "envelope": 2, "quit": 1})
    assert res["status"] == microsmtp.TLS_HANDSHAKE_ERROR == 0xD2, res
    # The handshake runs in the greeting's read (transport.py: it shares that deadline),
    # and its failure is the connection's.
    assert res["step"] == "CONNECT", res
    assert "465" in res["error"], res  # the hint: which port speaks which TLS
    assert res["elapsed"] < 10, res
    srv.settle()
    assert "AUTH" not in srv.handler.commands() and "MAIL" not in srv.handler.commands()


class HangUp(ListeningThread):
    """Takes the start of the ClientHello, then closes: a server gone mid-handshake."""

    def handle(self, conn):
        with conn:
            conn.settimeout(5)
            conn.recv(10)


@both
@pytest.mark.timeout(30)
def test_implicit_tls_server_closes_in_the_handshake(runtime, tls_send):
    """The handshake runs in the greeting's read; a close there is a handshake failure
    on both runtimes (CPython reads it as EOF, MicroPython raises: the shim matches)."""
    srv = HangUp()
    try:
        res = tls_send(runtime, srv.port, host="127.0.0.1", tls=microsmtp.TLS_IMPLICIT,
                       timeouts=SHORT)
        assert res["status"] == microsmtp.TLS_HANDSHAKE_ERROR, res
        assert res["step"] == "CONNECT", res
    finally:
        srv.stop()


@both
@pytest.mark.timeout(30)
def test_implicit_tls_to_a_silent_server(runtime, tls_send):
    """Nobody answers the ClientHello: the handshake runs in the greeting's read and is
    bounded by the greeting timeout."""
    srv = SilentServer()
    try:
        res = tls_send(runtime, srv.port, host="127.0.0.1", tls=microsmtp.TLS_IMPLICIT,
                       timeouts={"connect": 3, "greeting": 2, "envelope": 2, "quit": 1})
        assert res["status"] == microsmtp.TIMEOUT_ERROR == 0xC2, res
        assert res["step"] == "GREETING" and "2000 ms" in res["error"], res
        assert 1.5 < res["elapsed"] < 10, res
        assert srv.closed.wait(5), "the client did not close the connection"
        assert srv.received[0].startswith(b"\x16\x03"), srv.received  # a ClientHello, no SMTP
    finally:
        srv.stop()


@pytest.fixture
def listener():
    """A listening socket nobody accepts on: a client connection would wait in its queue."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        s.setblocking(False)
        yield s


def _connected(listener):
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@both
@pytest.mark.parametrize("tls", [microsmtp.TLS_STARTTLS, microsmtp.TLS_IMPLICIT])
def test_tls_without_a_ca(runtime, tls, listener, tls_send):
    res = tls_send(runtime, listener.getsockname()[1], tls=tls, cadata=None, timeouts=SHORT)
    assert res["status"] == microsmtp.TLS_NO_CA == 0xD4, res
    assert res["step"] == "CONNECT", res
    assert "cadata" in res["error"], res
    assert not _connected(listener), "the client connected without a CA to check the server"


@pytest.mark.parametrize("port", [465, 587])
def test_tls_ports_without_a_ca(port):
    # Nothing listens on 465/587 here: a connection attempt would be CONNECT_ERROR.
    client = microsmtp.Client("127.0.0.1", port, from_address=SENDER, username=USER,
                              password=PASSWORD, net=net, timeouts={"connect": 1})
    with pytest.raises(microsmtp.SMTPError) as info:
        client.send(RCPT, "Boiler alert", "Pressure low.\n")
    assert info.value.status == microsmtp.TLS_NO_CA, info.value
    assert "cadata" in str(info.value)


# --- credentials in clear --------------------------------------------------------------------

@both
def test_plaintext_auth_refused_by_default(runtime, aio_server, tls_send):
    srv = aio_server("plain")
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_NONE, cadata=None, auth="AUTO",
                   timeouts=SHORT)
    assert res["status"] == microsmtp.PLAINTEXT_AUTH_REFUSED == 0xD6, res
    assert res["reply_code"] is None, res
    assert "allow_plaintext_auth=True" in res["error"], res
    srv.settle()
    assert srv.handler.commands() == ["EHLO", "QUIT"]
    assert srv.handler.auth_log == [] and srv.handler.messages == []


@both
def test_plaintext_auth_refusal_sentence(runtime, aio_server, tls_send):
    """The refusal is about AUTH, so it names that step (not the EHLO before it), and the
    fix it suggests is spelt as a user writes it (tls=TLS_STARTTLS, not the firmware's
    private const names)."""
    srv = aio_server("plain")
    res = tls_send(runtime, srv.port, tls=microsmtp.TLS_NONE, cadata=None, timeouts=SHORT)
    assert res["status"] == microsmtp.PLAINTEXT_AUTH_REFUSED, res
    assert res["step"] == "AUTH" and res["error"].endswith("(AUTH)."), res
    assert "tls=TLS_STARTTLS" in res["error"] and "_TLS_" not in res["error"], res


@both
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_plaintext_auth_when_allowed(runtime, mech, aio_server, tls_send):
    srv = aio_server("plain")
    ok(tls_send(runtime, srv.port, tls=microsmtp.TLS_NONE, cadata=None, auth=mech,
                allow_plaintext_auth=True))
    assert srv.handler.auth_log == [(mech, True)]
    assert len(srv.handler.messages) == 1 and not srv.handler.messages[0]["tls"]


# --- port defaults ---------------------------------------------------------------------------

@pytest.mark.parametrize("port, tls, expected", [
    (465, None, microsmtp.TLS_IMPLICIT),  # RFC 8314: TLS from the first byte
    (587, None, microsmtp.TLS_STARTTLS),  # RFC 6409 submission: STARTTLS required
    (25, None, microsmtp.TLS_STARTTLS),  # a CA was given: TLS required (issue 9, defect 9)
    (2525, None, microsmtp.TLS_STARTTLS),
    (465, microsmtp.TLS_NONE, microsmtp.TLS_NONE),
    (587, microsmtp.TLS_IMPLICIT, microsmtp.TLS_IMPLICIT),
    (25, microsmtp.TLS_STARTTLS, microsmtp.TLS_STARTTLS),
])
def test_port_defaults(port, tls, expected, pki):
    client = microsmtp.Client("mail.example.com", port, from_address=SENDER, net=net,
                              tls=tls, cadata=str(pki.pem_path))
    assert client._session.tls == expected
    assert client._session.ca == [pki.der]


@pytest.mark.parametrize("port", [25, 2525])
def test_port_25_without_ca_or_insecure_is_plaintext(port):
    client = microsmtp.Client("mail.example.com", port, from_address=SENDER, net=net)
    assert client._session.tls == microsmtp.TLS_NONE
    client = microsmtp.Client("mail.example.com", port, from_address=SENDER, net=net,
                              insecure=True)
    assert client._session.tls == microsmtp.TLS_STARTTLS


def test_bad_tls_value():
    with pytest.raises(ValueError):
        microsmtp.Client("mail.example.com", 25, from_address=SENDER, tls=3)


def test_client_repr_keeps_secrets():
    client = microsmtp.Client("mail.example.com", 587, from_address=SENDER, username=USER,
                              password=PASSWORD, oauth_token=TOKEN, insecure=True, net=net)
    for secret in secrets_of():
        assert secret not in repr(client)
