"""The TLS servers of the tests (tests/test_tls.py and the modules that reuse its servers):
certificates from trustme CAs made at test time, aiosmtpd with STARTTLS or implicit TLS that
records every byte the client sent (and whether it came over TLS) and offers CRAM-MD5 and
XOAUTH2 besides PLAIN and LOGIN, and a raw server for what aiosmtpd will not do. The client
names the server "localhost" and is given the CA as a file (PEM or DER), or on CPython as
PEM text / DER bytes."""

import asyncio
import base64
import datetime
import hmac
import ipaddress
import json
import os
import ssl
import tempfile
import threading

import microsmtp
import trustme
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, auth_mechanism
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import ListeningThread, Recorder, loopback_controller

# TLS needs more heap than plaintext (mbedTLS contexts, the certificate chain).
TLS_HEAP = os.environ.get("MICROSMTP_TLS_HEAP", "64K")

HOST = "localhost"  # the name the client connects to and checks the certificate against
USER = "alice@example.com"
PASSWORD = "c0rrect-h0rse-B4ttery"
WRONG_PASSWORD = "wr0ng-Zebra-pa55"
TOKEN = "ya29.a0AfH6SM-test-T0ken_Q7x"
WRONG_TOKEN = "ya29.expired-T0ken_Zk2"
CRAM_CHALLENGE = b"<1896.697170952@postoffice.example.net>"
# The client's two TLS modes by the name of the server kind (tls_servers.AioServer).
TLS_KINDS = {"starttls": microsmtp.TLS_STARTTLS, "implicit": microsmtp.TLS_IMPLICIT}
XOAUTH2_ERROR = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}


def _b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def secrets_of(password=PASSWORD, token=TOKEN, user=USER):
    """What must never appear in an error: the secrets and every encoding AUTH sends."""
    out = [password, _b64(password), _b64("%s\0%s\0%s" % (user, user, password))]
    if token:
        out += [token, _b64("user=%s\x01auth=Bearer %s\x01\x01" % (user, token))]
    return out


def assert_no_secrets(res, password=PASSWORD, token=TOKEN):
    assert "repr" in res and "reply" in res, res  # a check on nothing would pass
    texts = [res.get("error") or "", res.get("repr") or "", res.get("reply") or "",
             res.get("client_repr") or ""]
    for secret in secrets_of(password, token) + secrets_of(WRONG_PASSWORD, WRONG_TOKEN):
        for text in texts:
            assert secret not in text, "a credential leaked: %r in %r" % (secret, text)


# --- certificates ----------------------------------------------------------------------------

class SelfSigned:
    """A certificate for localhost signed by its own key: no CA the client trusts."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
        self.key = key

    def configure_cert(self, ctx):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cert.pem")
            with open(path, "wb") as f:
                f.write(self.key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
                f.write(self.cert.public_bytes(serialization.Encoding.PEM))
            ctx.load_cert_chain(path)


class NamedCert(SelfSigned):
    """A certificate signed by `ca` (trustme) whose subject is CN=`cn`, with the names in
    `san` (x509 general names) as its subjectAltName, or none at all."""

    def __init__(self, ca, cn, san=()):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        self.key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        self.cert = builder.sign(ca_key, hashes.SHA256())


class PKI:
    def __init__(self, folder):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca = trustme.CA()
        self.certs = {
            "good": self.ca.issue_cert("localhost", "127.0.0.1", "::1"),
            "expired": self.ca.issue_cert("localhost", "127.0.0.1",
                                          not_before=now - datetime.timedelta(days=30),
                                          not_after=now - datetime.timedelta(days=1)),
            "wrong-name": self.ca.issue_cert("other.example"),
            "unknown-ca": trustme.CA().issue_cert("localhost", "127.0.0.1"),
            "self-signed": SelfSigned(),
            # Issue 9, defect 14: an IP address where only a DNS name belongs.
            "ip-in-cn": NamedCert(self.ca, "127.0.0.1"),
            "ip-as-dns-san": NamedCert(self.ca, "mail.example", [x509.DNSName("127.0.0.1")]),
            "other-ip-in-cn": NamedCert(self.ca, "127.0.0.2"),
        }
        pem = self.ca.cert_pem.bytes()
        self.pem_text = pem.decode()
        self.der = ssl.PEM_cert_to_DER_cert(self.pem_text)
        self.pem_path = folder / "ca.pem"
        self.pem_path.write_bytes(pem)
        self.der_path = folder / "ca.der"
        self.der_path.write_bytes(self.der)
        self.bad_path = folder / "bad.der"  # DER in name only: no certificate in it
        self.bad_path.write_bytes(b"0\x03\x02\x01\x00 not a certificate")

    def server_context(self, cert="good"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.certs[cert].configure_cert(ctx)
        return ctx

    def cadata(self, kind):
        """cadata as the client is given it: a file path (both runtimes) or, on CPython,
        the PEM text (str or bytes) or the DER bytes themselves."""
        return {"pem": str(self.pem_path), "der": str(self.der_path),
                "bad": str(self.bad_path),
                "pem-text": self.pem_text, "pem-bytes": self.pem_text.encode(),
                "der-bytes": self.der, None: None}[kind]


# --- aiosmtpd, recording what it reads -------------------------------------------------------

class AuthRecorder(Recorder):
    """servers.Recorder with this module's account, CRAM-MD5 and XOAUTH2 (here) besides
    aiosmtpd's PLAIN and LOGIN; also records every byte the client sent, with whether it
    came over TLS (RecordingSMTP). weak: mechanisms answered 534; echo: a hostile server
    whose 535 repeats the credentials it got."""

    token = TOKEN

    def __init__(self, weak=(), echo=False):
        super().__init__(credentials=(USER, PASSWORD), weak=weak, echo=echo)
        self.chunks = []  # (came over TLS, bytes) in arrival order

    # what the client sent ---------------------------------------------------------------

    def lines(self, secure=None):
        """The client's lines (CRLF removed) in order; secure=True / False: only those
        read over TLS / in clear."""
        out = []
        for tls, data in self.chunks:
            if secure is None or tls == secure:
                out.append(data)
        return b"".join(out).split(b"\r\n")[:-1] if out else []

    def commands(self, secure=None):
        """The verbs of the command lines (message content and AUTH responses left out)."""
        verbs = []
        in_data = False
        for line in self.lines(secure):
            if in_data:
                in_data = line != b"."
                continue
            verb = line.split(b" ", 1)[0].upper().decode("latin-1")
            if verb in ("EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET",
                        "QUIT", "NOOP"):
                verbs.append(verb)
                in_data = verb == "DATA"
        return verbs

    def auth_commands(self):
        return [line for line in self.lines() if line[:5].upper() == b"AUTH "]

    # aiosmtpd hooks ---------------------------------------------------------------------

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, server, args):
        if "CRAM-MD5" in self.weak:
            self.auth_log.append(("CRAM-MD5", 534))
            return AuthResult(success=False, handled=False,
                              message="534 5.7.9 Authentication mechanism is too weak")
        answer = await server.challenge_auth(CRAM_CHALLENGE)
        if answer is MISSING:
            self.auth_log.append(("CRAM-MD5", "cancelled"))
            return AuthResult(success=False, handled=True)
        user, _, digest = answer.partition(b" ")
        expected = hmac.new(PASSWORD.encode(), CRAM_CHALLENGE, "md5").hexdigest().encode()
        ok = user == USER.encode() and hmac.compare_digest(digest, expected)
        self.auth_log.append(("CRAM-MD5", ok))
        return AuthResult(success=ok, handled=False, auth_data=user)

    @auth_mechanism("XOAUTH2")
    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            data = base64.b64decode(args[1], validate=True)
        else:  # a long token comes after a 334 (RFC 4954 §4: line over 512 octets)
            data = await server.challenge_auth(b"")
            if data is MISSING:
                self.auth_log.append(("XOAUTH2", "cancelled"))
                return AuthResult(success=False, handled=True)
        parts = data.split(b"\x01")
        ok = (len(parts) == 4 and parts[2:] == [b"", b""] and parts[0] == b"user=" +
              USER.encode() and parts[1] == b"auth=Bearer " + self.token.encode())
        self.auth_log.append(("XOAUTH2", ok))
        if ok:
            return AuthResult(success=True, auth_data=USER)
        # Google's failure: 334 with base64 JSON, the client's empty line, then 535.
        error = dict(XOAUTH2_ERROR)
        if self.echo:
            error["token"] = parts[1].decode("latin-1")
        await server.challenge_auth(json.dumps(error))  # the answer is an empty line
        return AuthResult(success=False, handled=False)


class RecordingSMTP(SMTP):
    # aiosmtpd reads every line, AUTH responses too, with a 1001-byte limit; RFC 4954 §4
    # lets a response (a long OAuth token) reach 12288 octets.
    line_length_limit = 12290

    def data_received(self, data):
        tls = self.transport is not None and \
            self.transport.get_extra_info("ssl_object") is not None
        self.event_handler.chunks.append((tls, bytes(data)))
        super().data_received(data)


class AioServer:
    """kind: "starttls" (STARTTLS required before anything, AUTH only over TLS), "implicit"
    (TLS from the first byte, as on 465) or "plain" (no TLS at all, AUTH in clear)."""

    def __init__(self, kind, ctx=None, mechs=None, weak=(), echo=False):
        self.kind = kind
        self.handler = AuthRecorder(weak, echo)
        all_mechs = {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}
        kwargs = {"authenticator": self.handler.authenticate,
                  "auth_exclude_mechanism": sorted(all_mechs - set(mechs or all_mechs))}
        if kind == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        elif kind == "implicit":
            # aiosmtpd's auth_require_tls knows only STARTTLS; here all is TLS anyway.
            kwargs.update(ssl_context=ctx, auth_require_tls=False)
        else:
            kwargs.update(auth_require_tls=False)
        self.controller = loopback_controller(self.handler, "127.0.0.1", RecordingSMTP,
                                              **kwargs)
        self.port = self.controller.port

    def start(self):
        self.controller.start()
        self.settle()
        self.handler.chunks.clear()  # the controller's own start-up probe
        return self

    def settle(self):
        """Let the server's loop take in whatever the client has sent: the bytes are in the
        socket already (send() has returned), a few loop turns read them."""
        async def turns():
            for _ in range(20):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(turns(), self.controller.loop).result(5)

    def stop(self):
        self.controller.stop()


# --- a raw server for what aiosmtpd will not do ----------------------------------------------

class RawConn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.secure = False
        self.lines = []  # (over TLS, line) the client sent while the script ran
        self.rest = b""  # what came after the script, up to EOF

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        line = line.rstrip(b"\r")
        self.lines.append((self.secure, line))
        return line

    def starttls(self, ctx):
        assert not self.buf, "client data before the TLS handshake"
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.secure = True

    def commands(self):
        return [line.split(b" ", 1)[0].upper().decode("latin-1") for _, line in self.lines]


class LineServer(ListeningThread):
    """Runs script(conn) for each connection, then records the rest until the client
    closes; `done` is set when a connection is over."""

    def __init__(self, script):
        self.script = script
        self.conns = []
        self.errors = []
        self.done = threading.Event()
        super().__init__()

    def handle(self, sock):
        conn = RawConn(sock)
        sock.settimeout(10)
        try:
            self.script(conn)
            while True:
                chunk = conn.sock.recv(4096)
                if not chunk:
                    break
                conn.rest += chunk
        except Exception as e:  # a script's surprise is the test's failure, not a hang
            self.errors.append(repr(e))
        finally:
            conn.sock.close()
            self.conns.append(conn)
            self.done.set()

    def only_conn(self):
        assert self.done.wait(10), "the client never closed the connection"
        assert len(self.conns) == 1, self.conns
        return self.conns[0]
