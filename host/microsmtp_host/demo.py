"""make demo: one alert mail sent by the firmware code, as a board sends it, to a local catcher.

No board and no network beyond loopback: an aiosmtpd server on 127.0.0.1 takes the mail,
and the sender is the real MicroPython unix port running build/mpy (what `make mpy` puts on
a board) from emulated flash with a 32 KB heap, so what is shown is what the firmware really
puts on the wire.
Run: .venv/bin/python -m microsmtp_host.demo  (exit code 0: the mail arrived)."""

import email
import email.policy
import json
import logging
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from microsmtp_host import unixport

# A small board's heap left to the app (the code itself sits in flash); a TLS session takes
# mbedTLS's buffers on top of the library's (README, "Memory").
HEAP = "48K"
RUN_TIMEOUT = 60  # seconds; the firmware's own SMTP timeouts are shorter (connect 10 s)

# The board's side: what an ESP32 / Pico W app does once Wi-Fi is up. The config file
# stands in for the config.json an app keeps on flash, so no credential is in the code.
ALERT_SCRIPT = '''\
import gc
import json
import sys

import microsmtp

with open("config.json") as f:
    cfg = json.load(f)
gc.collect()  # drop the parser's garbage before the client makes its buffers

client = microsmtp.Client(cfg["server"], cfg["port"], from_address="boiler@example.org",
                          username=cfg["username"], password=cfg["password"],
                          client_domain="boiler.example.org",
                          tls=microsmtp.TLS_STARTTLS, cadata=cfg["cadata"])
body = ("Boiler temperature: 92 °C (limit 85 °C)\\n"
        "Sensor: DS18B20 on GPIO4, burner still on\\n"
        "...and still rising\\n")
try:
    client.send("oncall@example.org", "Boiler at 92 °C", body, microsmtp.PRIORITY_HIGH)
except microsmtp.SMTPError as e:
    print("alert not sent: %s (status 0x%02X)" % (e, e.status))
    sys.exit(1)
print("alert sent")
'''


class DemoFailed(Exception):
    """One sentence for the user; the demo exits 1 with it."""


class Catcher:
    """aiosmtpd handler: refuses mail from unauthenticated sessions, keeps the rest."""

    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()
        self.messages = []  # (mail_from, rcpt_tos, raw bytes as received, dots undone)
        self.logins = []  # the mechanism of each successful AUTH

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        # auth_data is a LoginPassword for both PLAIN and LOGIN; compare in constant time.
        ok = (secrets.compare_digest(auth_data.login, self.user)
              and secrets.compare_digest(auth_data.password, self.password))
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Checked here rather than with auth_required=True, which aiosmtpd warns about
        # without TLS; the effect is the same: no AUTH, no mail.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # Stored before the 250 goes out, so once the client has exited it is here or never.
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 Message accepted for delivery"


def section(title):
    print("\n== %s %s" % (title, "=" * max(3, 72 - len(title))))


def free_port():
    # aiosmtpd's Controller cannot listen on port 0 (it connects to its own port to check
    # that it is up), so ask the OS for a free port first. Another process could take it
    # in between; on loopback that is unlikely and fails loudly in start().
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_board(workdir, port, user, password, ca_path):
    """Write, compile and run the alert script under the unix port; its CompletedProcess."""
    # "localhost": the name the server's certificate carries, checked by the board.
    (workdir / "config.json").write_text(json.dumps(
        {"server": "localhost", "port": port, "username": user, "password": password,
         "cadata": str(ca_path)}))
    (workdir / "alert.py").write_text(ALERT_SCRIPT, encoding="utf-8")
    # Precompiled like the firmware: under a board-sized heap the unix port has no room
    # to compile source, and a board would run .mpy too.
    app = unixport.compile_mpy([workdir / "alert.py"], workdir / "app")
    # The config is found through the working directory, not argv: this micropython build
    # crashes on arguments over 255 characters, and temp paths can get long.
    try:
        return unixport.run("alert", heap=HEAP, rom=[unixport.firmware_mpy(), app],
                            cwd=workdir, timeout=RUN_TIMEOUT, work=workdir / "rt")
    except subprocess.TimeoutExpired:
        raise DemoFailed("micropython did not finish within %d s" % RUN_TIMEOUT) from None


def show_received(catcher):
    mail_from, rcpt_tos, raw = catcher.messages[0]
    print("AUTH: %s as %r" % (", ".join(catcher.logins) or "none", catcher.user.decode()))
    print("envelope: MAIL FROM:<%s>  RCPT TO:%s" % (mail_from, ", ".join(
        "<%s>" % r for r in rcpt_tos)))
    print("--- raw message (RFC 5322, as received; dot-stuffing already undone) ---")
    # The body goes as 8bit UTF-8 (aiosmtpd offers 8BITMIME); the CRLFs are the wire's.
    sys.stdout.write(raw.decode("utf-8", "backslashreplace").replace("\r\n", "\n"))
    print("--- end of message ---")
    # aiosmtpd undoes the dot-stuffing: the line arrived as written only because the
    # firmware doubled its leading dot on the wire (RFC 5321 §4.5.2).
    print("Dot-stuffing: the line '...and still rising' arrived %s"
          % ("intact" if b"\r\n...and still rising\r\n" in raw else "ALTERED"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    print("Subject, decoded: %s" % msg["Subject"])


def main():
    # aiosmtpd 1.4 logs "Session.login_data is deprecated" on every successful AUTH, from
    # its own code: noise in the demo's output, so that one message is filtered out.
    logging.getLogger("mail.log").addFilter(
        lambda record: "login_data is deprecated" not in record.getMessage())
    user = "boiler-demo"
    password = secrets.token_urlsafe(16)  # made per run: nothing to leak from the repo
    catcher = Catcher(user, password)
    port = free_port()
    # A CA made for this run signs the server's certificate; the board gets only the CA
    # (as cadata) and verifies the certificate and the name "localhost" itself.
    ca = trustme.CA()  # needs only the dev tools `make setup` installs
    tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls_context)
    controller = Controller(catcher, hostname="127.0.0.1", port=port, tls_context=tls_context,
                            require_starttls=True, auth_require_tls=True,
                            authenticator=catcher.authenticate)

    section("1. Firmware")
    try:
        unixport.firmware_mpy()
    except subprocess.CalledProcessError as e:
        raise DemoFailed("mpy-cross failed: %s" % e) from None
    print("build/mpy/microsmtp/*.mpy (mpy-cross -O3), run from emulated flash (ROMFS) as a "
          "board runs frozen code")

    section("2. Local SMTP server")
    try:
        try:
            controller.start()
        except Exception as e:  # e.g. the port was taken since free_port() looked
            raise DemoFailed("the SMTP server did not start on 127.0.0.1:%d: %s" % (port, e))
        print("aiosmtpd on 127.0.0.1:%d (localhost): STARTTLS required, then AUTH PLAIN/LOGIN "
              "for user %r with a password made for this run" % (port, user))

        section("3. Board run")
        print("micropython -X heapsize=%s, running alert.mpy (config.json: server, port, "
              "credentials and the CA file as cadata)" % HEAP)
        with tempfile.TemporaryDirectory(prefix="microsmtp-demo-") as tmp:
            ca_path = Path(tmp) / "ca.pem"  # on a board: a file on flash, or PEM/DER bytes
            ca.cert_pem.write_to_path(str(ca_path))
            result = run_board(Path(tmp), port, user, password, ca_path)
        print("--- micropython output (exit code %d) ---" % result.returncode)
        sys.stdout.write(result.stdout + result.stderr)  # a traceback belongs in this section
        print("--- end of output ---")
    finally:
        # Always, even after a failed start: a leftover server thread would keep the port.
        controller.stop(no_assert=True)

    section("4. Received by the server")
    if not catcher.messages:
        raise DemoFailed("the server received no message (micropython exit code %d)"
                         % result.returncode)
    show_received(catcher)
    if result.returncode != 0 or "alert sent" not in result.stdout:
        raise DemoFailed("a message arrived but the board did not report success")
    if len(catcher.messages) != 1:
        raise DemoFailed("expected 1 message, the server got %d" % len(catcher.messages))

    section("Summary")
    print("1 alert delivered over SMTP from the MicroPython unix port to aiosmtpd on "
          "127.0.0.1:%d, over STARTTLS with the certificate verified" % port)


if __name__ == "__main__":
    try:
        main()
    except DemoFailed as e:
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
