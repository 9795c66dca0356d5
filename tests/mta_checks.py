"""Sending through a real MTA on both runtimes, and checking what it delivered: shared by the
Postfix (tests/postfix_server.py, tests/test_postfix.py, tests/test_swaks.py) and OpenSMTPD
(tests/opensmtpd_server.py, tests/test_opensmtpd.py) tests of issue 12. A server object here
is anything with .ports ({name: port}) and .ca_pem (the CA file its certificate comes from)."""

import json
import os
import socket
import time
from pathlib import Path

TLS_HEAP = os.environ.get("MICROSMTP_TLS_HEAP", "64K")  # as tests/test_tls.py
SENDER = "boiler@example.com"
RCPT = "ops@example.org"
HOST = "localhost"  # the name in the certificate

LONG_LINE = "y" * 1500  # over 998 octets: only quoted-printable can carry it
# Bodies that must arrive byte-exact (after CRLF normalisation) through a real server.
BODIES = {
    "dot-lines": ".\n..\n.x\nmiddle\n.\n..\n.x\nend\n..\n.x\n.\n",
    "smuggling": "before\n.\r\nMAIL FROM:<evil@example.net>\r\nafter\r\n.\nx\n.\n\r\r\n",
    "bare-cr-lf": "one\ntwo\r\rfour\r\nfive",
    "utf-8": "Temperatur 92 °C\nÜberdruck ✓ — prüfen\n.ünd\n",
    "long-line": LONG_LINE + "\n.dot\nx=y\ntrailing space \n" + "z" * 73 + ".\n.\nend\n",
}


def send_config(srv, port, user, default_password, **options):
    """The mp_send.py config of one send to `srv`'s port `port` as `user` (options: tls,
    auth, password, oauth_token, cadata, body, body_file, body_chunks (the file as an iterator of
    chunks, its size unknown), to, sender, subject, priority)."""
    import microsmtp

    return {"server": HOST, "port": srv.ports[port], "from": options.get("sender", SENDER),
            "to": options.get("to", [RCPT]), "subject": options.get("subject", "Boiler alert"),
            "body": options.get("body", "Pressure low.\n"),
            "body_file": options.get("body_file"), "repeat": 1,
            "body_chunks": options.get("body_chunks", False),
            "priority": options.get("priority", microsmtp.PRIORITY_NORMAL),
            "client_domain": "boiler.example.com", "username": user,
            "password": options.get("password", default_password),
            "auth": options.get("auth", "NONE"), "oauth_token": options.get("oauth_token"),
            "tls": options.get("tls", microsmtp.TLS_STARTTLS),
            "cadata": options.get("cadata", srv.ca_pem),
            "timeouts": {"connect": 5, "greeting": 10, "envelope": 10, "message": 20,
                         "quit": 5}}


def send_cpython(cfg):
    import microsmtp
    from microsmtp_host.shim import net

    client = microsmtp.Client(
        cfg["server"], cfg["port"], from_address=cfg["from"], username=cfg["username"],
        password=cfg["password"], client_domain=cfg["client_domain"],
        auth=getattr(microsmtp, "AUTH_" + cfg["auth"]), timeouts=cfg["timeouts"], net=net,
        tls=cfg["tls"], cadata=cfg["cadata"], oauth_token=cfg.get("oauth_token"))
    res = {"status": 0, "step": None, "reply_code": None, "error": None, "reply": None}
    f = open(cfg["body_file"], "rb") if cfg["body_file"] else None
    try:
        src = f or cfg["body"]
        if f and cfg.get("body_chunks"):  # as mp_send.py: a size the client cannot know
            src = iter(lambda: f.read(512), b"")
        client.send(cfg["to"], cfg["subject"], src, cfg["priority"])
    except microsmtp.SMTPError as e:
        res = {"status": e.status, "step": e.step, "reply_code": e.reply_code,
               "error": str(e), "reply": e.reply}
    finally:
        if f:
            f.close()
    res["pool_full"] = client.pool.available() == client.pool.count
    return res


def send_micropython(cfg, mp_dir, tmp_path):
    import runtimes

    # The body through a file (the unix port's argv and a small heap's JSON stay small).
    text = Path(tmp_path) / "body.txt"
    text.write_bytes(cfg["body"].encode())
    cfg = dict(cfg, body="", body_text_file=str(text))
    path = Path(tmp_path) / "mp_send.json"
    path.write_text(json.dumps(cfg))
    proc = runtimes.run_micropython("mp_send", [str(path)], [mp_dir, runtimes.firmware_mpy()],
                                    timeout=60, heap=TLS_HEAP)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, "MicroPython (heap %s) exit %d: %s" % (
        TLS_HEAP, proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    return results[0]


def normalised(body):
    """The body as it must arrive: every CR, LF and CRLF one line end, a last one added."""
    body = body.encode().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return body if body.endswith(b"\n") else body + b"\n"


def check_body(msg, body):
    """The decoded body of `msg` (email.message) is `body`, byte for byte (a Maildir keeps
    LF line ends)."""
    got = msg.get_payload(decode=True).replace(b"\r\n", b"\n")
    assert got == normalised(body)


# The transfer encoding a body of BODIES takes on an MTA's plain port (both offer 8BITMIME).
BODY_CTE = {"long-line": "quoted-printable", "utf-8": "8bit"}


def check_delivered(raw, msg, body, cte=None):
    """The one mail an MTA delivered (its raw bytes, parsed): `body` byte for byte, the
    transfer encoding `cte` (when given), no line over 998 octets (RFC 5322 §2.1.1)."""
    check_body(msg, body)
    if cte is not None:
        assert msg["Content-Transfer-Encoding"] == cte
    assert max(len(line) for line in raw.split(b"\n")) <= 998


def long_line_file(tmp_path):
    """A body with a line over 998 octets and a UTF-8 one, in a file: (body, path)."""
    body = BODIES["long-line"] + "é\n"
    path = tmp_path / "alert.txt"
    path.write_bytes(body.encode())
    return body, path


def ok(res):
    assert res["status"] == 0, res


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MtaLog:
    """What a private MTA logged and delivered (Postfix and OpenSMTPD share it): its
    log_file read from a mark, each test its own part; its Maildir through maildir(). A
    subclass names the log words that open and close an SMTP session (SESSION_WORDS)."""

    SESSION_WORDS = ("", "")
    log_file = None
    _log_offset = 0

    def read_log(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_listening(self, name, deadline, exited=lambda: False):
        """Each of self.ports takes a connection (a session with no mail in it: harmless)
        within `deadline` seconds of the start; else stop() and a RuntimeError with the
        log's tail (at once when exited() says the server is gone)."""
        end = time.monotonic() + deadline
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if exited() or time.monotonic() > end:
                        log = self.read_log()[-3000:]
                        self.stop()
                        raise RuntimeError("%s did not listen on port %d; log:\n%s" % (
                            name, port, log)) from None
                    time.sleep(0.05)

    def mark_log(self):
        """From now on, log() is what the server logs after this call."""
        self._log_offset = len(self.read_log())

    def log(self):
        """The log written since mark_log()."""
        return self.read_log()[self._log_offset:]

    def wait_log(self, words, count=1, deadline=20):
        """log() once `words` occur `count` times in it (or the deadline has passed)."""
        end = time.monotonic() + deadline
        while True:
            text = self.log()
            if text.count(words) >= count or time.monotonic() > end:
                return text
            time.sleep(0.05)

    def settled_log(self, deadline=10, sessions=1):
        """log() once at least `sessions` sessions are in it and every one has ended (each
        opening word has its closing one): both servers log a session a little after the
        client read its last reply, Postfix through postlogd, so a test's own session may
        not be in the log at all yet when the client is done."""
        opened, closed = self.SESSION_WORDS
        end = time.monotonic() + deadline
        while True:
            text = self.log()
            done = text.count(closed)
            if done >= sessions and text.count(opened) <= done or time.monotonic() > end:
                return text
            time.sleep(0.05)

    def clear(self):
        """Every mailbox of MAILBOXES (the subclass's module's) emptied."""
        for mailbox in self.MAILBOXES:
            for f in self.messages(mailbox):
                f.unlink()

    def messages(self, mailbox="ops"):
        d = self.maildir(mailbox)
        return sorted(d.iterdir()) if d.is_dir() else []

    def wait_messages(self, count, mailbox="ops", deadline=20):
        """The Maildir's messages once there are `count` (within `deadline` seconds)."""
        end = time.monotonic() + deadline
        while True:
            got = self.messages(mailbox)
            if len(got) >= count or time.monotonic() > end:
                return got
            time.sleep(0.05)


def alive(pid):
    """True while process pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
