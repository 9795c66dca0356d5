"""The test servers every module shares: aiosmtpd on a loopback socket bound beforehand (the
catcher's controller, microsmtp_host.catcher.smtp.bound_controller), one recording handler,
a thread that serves raw sockets (scripted servers, proxies) and Postfix's smtp-sink.

Fixtures made of these are in tests/conftest.py; what the TLS servers add (certificates,
CRAM-MD5, XOAUTH2, every byte recorded) is in tests/tls_servers.py."""

import asyncio
import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from aiosmtpd.smtp import AuthResult, LoginPassword
from microsmtp_host.catcher.smtp import bound_controller

# Who sends to whom, and the one account of the plaintext servers.
SENDER = "boiler@example.com"
RCPT = "ops@example.org"
USER, PASSWORD = "alice", "s3cret"


def in_ci():
    """CI (the CI variable most CI services set, or .ci/run's MICROSMTP_CI): servers that
    cannot start there fail their tests instead of skipping them (issue 12, item 7)."""
    return bool(os.environ.get("CI") or os.environ.get("MICROSMTP_CI"))


def has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = has_ipv6_loopback()


@contextlib.contextmanager
def refused_port():
    """A loopback port bound and never listening while the block runs: a connect to it is
    refused (RST) at once, and no other process can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def free_port():
    """A loopback port nothing listens on (for a server that cannot take port 0 itself, or a
    server that is down: a connect to it is refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- aiosmtpd ----------------------------------------------------------------------------------

def loopback_controller(handler, hostname="127.0.0.1", smtp_class=None, **kwargs):
    """aiosmtpd serving `handler` on a free port of `hostname` (IPv4 or IPv6), bound before
    start so that no other process can take it; .port is the port. kwargs: aiosmtpd's
    Controller and SMTP options; smtp_class: an SMTP subclass to serve with."""
    family = socket.AF_INET6 if ":" in hostname else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((hostname, 0))
    return bound_controller(handler, sock, smtp_class, hostname=hostname, **kwargs)


class Recorder:
    """An aiosmtpd handler that keeps what it was sent and answers as told.

    messages: each message it took (a dict: content, the bytes as received; mail_from,
    mail_options, rcpt_tos, host_name, auth, peer, tls, subject); tries: (Subject, Date,
    Message-ID) of every message that reached DATA, refused ones too; mail_froms: every MAIL;
    events: MAIL, RCPT, RSET and DATA as they came; peers: the client's address at each EHLO;
    sessions: how many EHLOs (one a session; a test may set it back); auth_log: (mechanism,
    True/False, or 534 when `weak`).

    What it answers: credentials (user, password) for PLAIN and LOGIN (None: every AUTH
    fails); weak: mechanisms answered 534; echo: a hostile server whose 535 repeats the
    password it got; greylist: the next N RCPTs 451; refuse: recipients answered 550;
    rcpt_reply(handler, address): a reply for a RCPT, or None for the rules above;
    drop_at_mail: the MAIL (1: the first) at which the connection drops, unanswered;
    ehlo_padding: extra EHLO lines of 500 bytes; ehlo_reply: the whole EHLO reply instead
    of aiosmtpd's; data_replies: {word: reply} for a message whose Subject holds the word;
    hang_up: words whose reply is followed by closing the connection."""

    def __init__(self, credentials=(USER, PASSWORD), weak=(), echo=False, rcpt_reply=None,
                 ehlo_reply=None, data_replies=None, hang_up=()):
        self.credentials = credentials
        self.weak = set(weak)
        self.echo = echo
        self.rcpt_reply = rcpt_reply
        self.ehlo_reply = ehlo_reply
        self.data_replies = data_replies or {}
        self.hang_up = set(hang_up)
        self.reset()

    def reset(self):
        self.sessions = 0
        self.messages = []
        self.tries = []
        self.mail_froms = []
        self.events = []
        self.peers = []
        self.auth_log = []
        self.greylist = 0
        self.refuse = ()
        self.drop_at_mail = 0
        self.ehlo_padding = 0

    @property
    def subjects(self):
        """The Subject of each message taken, in order."""
        return [None if m["subject"] is None else str(m["subject"]) for m in self.messages]

    def emails(self):
        """The messages taken, parsed with the email package."""
        return [email.message_from_bytes(m["content"], policy=email.policy.default)
                for m in self.messages]

    # aiosmtpd hooks -------------------------------------------------------------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # the hook's job once it exists (aiosmtpd)
        self.peers.append(session.peer)
        self.sessions += 1
        if self.ehlo_reply is not None:
            return list(self.ehlo_reply)
        pad = ["250-X-PAD-%02d %s" % (i, "x" * 480) for i in range(self.ehlo_padding)]
        return responses[:-1] + pad + responses[-1:]

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        user, password = self.credentials or (None, None)
        ok = (user is not None and isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode() and auth_data.password == password.encode())
        if mechanism in self.weak:
            self.auth_log.append((mechanism, 534))
            return AuthResult(success=False, handled=False,
                              message="534 5.7.9 Authentication mechanism is too weak")
        self.auth_log.append((mechanism, ok))
        if not ok and self.echo:  # each form of the password the client sent
            import base64

            def b64(text):
                return base64.b64encode(text.encode()).decode()

            got = auth_data.password.decode()
            return AuthResult(success=False, handled=False, message=(
                "535 5.7.8 Bad login %s %s (%s)" % (
                    got, b64(got), b64("%s\0%s\0%s" % (user, user, got)))))
        # handled=False: aiosmtpd itself answers 535 (with True it would send nothing).
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_froms.append(address)
        self.events.append("MAIL")
        if len(self.mail_froms) == self.drop_at_mail:
            server.transport.abort()  # no reply goes out: the connection is lost
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.events.append("RCPT")
        reply = self.rcpt_reply and self.rcpt_reply(self, address)
        if reply:
            return reply
        if self.greylist:
            self.greylist -= 1
            return "451 4.7.1 Greylisted, try again later"
        if address in self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server, session, envelope):
        self.events.append("RSET")
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # Runs before the 250 goes out, so the message is here when send() returns.
        self.events.append("DATA")
        # original_content: the bytes as received (un-dot-stuffed) on either server kind.
        content = bytes(envelope.original_content)
        try:  # a hostile header is the test's to judge, not a reason to refuse here
            msg = email.message_from_bytes(content, policy=email.policy.default)
            subject, date, message_id = msg["Subject"], msg["Date"], msg["Message-ID"]
        except Exception:
            subject = date = message_id = None
        self.tries.append((subject, date, message_id))
        for word, reply in self.data_replies.items():
            if word in (subject or ""):
                if word in self.hang_up:  # the reply goes out first: close() flushes it
                    asyncio.get_running_loop().call_soon(server.transport.close)
                return reply
        self.messages.append({
            "content": content, "mail_from": envelope.mail_from,
            "mail_options": list(envelope.mail_options), "rcpt_tos": list(envelope.rcpt_tos),
            "host_name": session.host_name, "auth": session.authenticated,
            "peer": session.peer, "subject": subject,
            "tls": server.transport.get_extra_info("ssl_object") is not None})
        return "250 OK queued"


def grey_or_gone(handler, address):
    """A Recorder's rcpt_reply: "grey..." is greylisted (450) in the first session only,
    "gone..." refused for good (550), any other taken (the outbox tests')."""
    if address.startswith("gone"):
        return "550 5.1.1 no such mailbox here"
    if address.startswith("grey") and handler.sessions == 1:
        return "450 4.2.0 greylisted, come back later"
    return None


@contextlib.contextmanager
def http_serving(server):
    """An http.server on 127.0.0.1 served by a thread: its base URL; shut down and closed
    after (the accept loop polls every 0.1 s, so that is how long shutdown() waits)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class SlowRecorder(Recorder):
    """A Recorder whose every reply but the greeting comes `delay` seconds late."""

    def __init__(self, delay, **kwargs):
        self.delay = delay
        super().__init__(credentials=None, **kwargs)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        await asyncio.sleep(self.delay)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_MAIL(self, *args):
        await asyncio.sleep(self.delay)
        return await super().handle_MAIL(*args)

    async def handle_RCPT(self, *args):
        await asyncio.sleep(self.delay)
        return await super().handle_RCPT(*args)

    async def handle_DATA(self, *args):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(*args)


class Server:
    """A Recorder behind aiosmtpd on `host` (AUTH PLAIN and LOGIN in clear). eight_bit=False:
    decode_data=True, which does not offer 8BITMIME and refuses non-ASCII data ("500 Error:
    strict ASCII mode"): a 7-bit-only server. smtp: more of aiosmtpd's options
    (data_size_limit: the SIZE it announces and enforces); handler: a Recorder of one's own;
    auth=False: no AUTH at all (aiosmtpd's default: AUTH only after STARTTLS, and no
    STARTTLS), as a relay that takes mail from its network."""

    def __init__(self, host="127.0.0.1", eight_bit=True, handler=None, auth=True, **smtp):
        self.host = host
        self.eight_bit = eight_bit
        self.handler = handler or Recorder()
        if auth:
            smtp.setdefault("auth_require_tls", False)
            smtp["authenticator"] = self.handler.authenticate
        self.controller = loopback_controller(self.handler, host, decode_data=not eight_bit,
                                              **smtp)
        self.port = self.controller.port

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


def serving(handler=None, **options):
    """A fixture's body: a started Server (handler: a Recorder; options: Server's), stopped
    after."""
    srv = Server(handler=handler, **options).start()
    try:
        yield srv
    finally:
        srv.stop()


# --- raw sockets -------------------------------------------------------------------------------

class ListeningThread:
    """A loopback listener on a free port; handle(conn) runs in a thread for each client.
    The accept timeout lets stop() end it within a fraction of a second."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.handle(conn)

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


class SilentServer(ListeningThread):
    """Accepts connections and never says a word; records what clients send until EOF."""

    def __init__(self):
        self.received = []
        self.closed = threading.Event()  # set when a client's connection reached EOF
        super().__init__()

    def handle(self, conn):
        with conn:
            conn.settimeout(0.2)
            data = b""
            while not self.stopping.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            self.received.append(data)
            self.closed.set()


class RawServer(ListeningThread):
    """A bare TCP server on loopback running script(conn, stopping) for each connection.

    For faults no real MTA produces: aiosmtpd or Postfix never put ESC bytes in a reply or
    stream continuation lines forever, but a hostile or broken server (or a man in the middle
    before STARTTLS) can, so only a raw socket shows what a client does with them."""

    def __init__(self, script):
        self.script = script
        super().__init__()

    def handle(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                self.script(conn, self.stopping)
            except OSError:  # the client hung up, as it should on a bound
                pass

    def close(self):
        self.stop()
        assert not self.thread.is_alive()


# --- Postfix's smtp-sink -----------------------------------------------------------------------

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """One smtp-sink process on 127.0.0.1:<free port>; up when its port accepts."""

    def __init__(self, options, dump_dir=None):
        self.port = free_port()  # smtp-sink cannot take port 0
        self.host = "127.0.0.1"
        self.dump_dir = dump_dir
        cmd = [SINK]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
            cmd += ["-u", "nobody"]
        if dump_dir:
            cmd += ["-d", str(dump_dir) + "/msg."]
        cmd += list(options) + ["127.0.0.1:%d" % self.port, "10"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError("smtp-sink exited %d: %s" % (self.proc.returncode,
                                                               (err or out).decode()))
            try:  # the probe connection is a session with no mail in it: harmless
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("smtp-sink did not listen on port %d" % self.port)
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def dumps(self):
        return sorted(Path(self.dump_dir).glob("msg.*"))
