"""swaks (Debian's, the reference SMTP client) beside microsmtp, through the private Postfix
of tests/postfix_server.py (issue 12, item 4): the same From, To, Subject, priority and
body sent by swaks and by microsmtp on both runtimes arrive with the same headers and the
same body.

Compared on the two delivered messages, parsed with Python's `email` package: the Subject
decoded (RFC 2047 words read), From and To as addresses, the priority headers microsmtp
writes (X-Priority and Importance, firmware/microsmtp/message.py; swaks is given the same),
and the body's decoded text after CRLF normalisation. The transfer encodings may differ
(swaks is given a quoted-printable body; microsmtp picks 7bit, 8bit or quoted-printable
itself), so decoded content is compared, never the raw body; and swaks always adds two
empty lines after the body (SWAKS_TAIL), which are taken off its body, and only those."""

import email.header
import quopri
import shutil
import subprocess

import microsmtp
import postfix_server
import pytest
from servers import in_ci

SWAKS = shutil.which("swaks")
INSTALL_HINT = "sudo apt-get install swaks (or make test as root)"
SWAKS_TIMEOUT = 30  # seconds; swaks's own --timeout is per step

pytestmark = pytest.mark.timeout(90)
both = pytest.mark.parametrize("runtime", ("cpython", "micropython"))


@pytest.fixture
def swaks():
    if SWAKS is None:
        why = "swaks is not installed: " + INSTALL_HINT
        if in_ci():
            pytest.fail("CI must run the swaks tests: " + why)
        pytest.skip(why)
    return SWAKS


PRIORITY_HEADERS = {microsmtp.PRIORITY_HIGH: ("1 (Highest)", "high"),
                    microsmtp.PRIORITY_LOW: ("5 (Lowest)", "low")}
# name: (subject, priority, body)
CASES = {
    "ascii": ("Boiler alert", microsmtp.PRIORITY_NORMAL, "Pressure low.\nCheck valve 3.\n"),
    "utf-8": ("Kessel 92 °C — Überdruck", microsmtp.PRIORITY_HIGH,
              "Temperatur 92 °C\nÜberdruck ✓ — prüfen\n.ünd\n"),
    "dot-lines": ("Dots", microsmtp.PRIORITY_LOW,
                  ".\n..\n.x\nmiddle\n.\n..\n.x\nend\n..\n.x\n.\n"),
    "long-line": ("A 1,500-octet line", microsmtp.PRIORITY_HIGH,
                  "y" * 1500 + "\n.dot\nx=y\nend\n"),
}


def swaks_send(swaks, pf, tmp_path, subject, priority, body, port="plain"):
    """One message by swaks: STARTTLS on the plain port (the CA checked), or AUTH PLAIN
    after STARTTLS on the submission port; the body quoted-printable (UTF-8)."""
    path = tmp_path / "swaks-body.txt"
    path.write_bytes(quopri.encodestring(body.encode()))
    headers = ["Subject: " + email.header.Header(subject, "utf-8").encode()
               if not subject.isascii() else "Subject: " + subject,
               "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
               "Content-Transfer-Encoding: quoted-printable"]
    if priority in PRIORITY_HEADERS:
        xp, imp = PRIORITY_HEADERS[priority]
        headers += ["X-Priority: " + xp, "Importance: " + imp]
    cmd = [swaks, "--server", "127.0.0.1", "--port", str(pf.ports[port]),
           "--from", postfix_server.SENDER, "--to", postfix_server.RCPT,
           "--helo", "swaks.example.com", "--tls", "--tls-verify",
           "--tls-ca-path", pf.ca_pem,
           "--timeout", "10", "--body", "@%s" % path]
    if port == "submission":
        cmd += ["--auth", "PLAIN", "--auth-user", postfix_server.USER,
                "--auth-password", postfix_server.PASSWORD]
    for h in headers:
        cmd += ["--header", h]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SWAKS_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


# swaks (20201014) ends every body it sends with two empty lines of its own: its DATA
# template's "%BODY%\n" and one more line end before the final dot, after the file's text
# (whose own last line end it drops). Those two are taken off swaks's body, and only those.
SWAKS_TAIL = "\n\n"


def what_was_set(msg, tail=""):
    """The headers both clients were given, as read back, and the decoded body text (less
    `tail`, which it must end with)."""
    body = msg.get_content().replace("\r\n", "\n")
    assert body.endswith(tail), body[-200:]
    return {"Subject": str(msg["Subject"]),
            "From": [a.addr_spec for a in msg["From"].addresses],
            "To": [a.addr_spec for a in msg["To"].addresses],
            "X-Priority": msg["X-Priority"], "Importance": msg["Importance"],
            "body": body[:len(body) - len(tail)]}


@both
@pytest.mark.parametrize("port", ["plain", "submission"])
@pytest.mark.parametrize("name", list(CASES))
def test_same_message_as_swaks(runtime, port, name, swaks, pf, postfix_send, tmp_path):
    subject, priority, body = CASES[name]
    swaks_send(swaks, pf, tmp_path, subject, priority, body, port)
    _, by_swaks = postfix_server.delivered_one(pf)
    assert "swaks" in by_swaks["X-Mailer"]  # it is swaks's message
    pf.clear()
    pf.mark_log()
    auth = "PLAIN" if port == "submission" else "NONE"
    res = postfix_send(runtime, port, subject=subject, priority=priority, body=body,
                       auth=auth)
    assert res["status"] == 0, res
    _, by_us = postfix_server.delivered_one(pf)
    assert "swaks" not in str(by_us["X-Mailer"])
    ours, theirs = what_was_set(by_us), what_was_set(by_swaks, SWAKS_TAIL)
    assert ours == theirs
    assert ours["Subject"] == subject
    assert ours["body"].encode() == postfix_server.normalised(body)
    assert (ours["X-Priority"], ours["Importance"]) == \
        PRIORITY_HEADERS.get(priority, (None, None))
