"""make demo: the whole path of an alert, with no hardware, through a server outage.

1. `microsmtp catch` — a mail catcher on loopback (STARTTLS with a CA made for this run,
   AUTH with a password made for this run), storing mail in a Maildir and showing it on a
   web page;
2. `microsmtp board` — a virtual board: the real MicroPython unix port behind a pty;
3. `microsmtp deploy` — mpremote puts microsmtp (.mpy), the ESP32 example app (main.py,
   board.py, alert_app.py) and its config.json (pointing at the catcher) on the board,
   plus the CA file;
4. the catcher is stopped: the mail server is down;
5. the app runs on the board with a simulated temperature that crosses the threshold: the
   alert goes into the outbox on the board's flash, the first try finds no server, and the
   alert waits;
6. as soon as the board says so, the catcher starts again on the same port; the board's
   next try sends the alert over STARTTLS, the certificate verified on the board;
7. the catcher's copy of the mail is printed, with the page's address.
Everything stops at the end. Run: .venv/bin/python -m microsmtp_host.demo"""

import logging
import secrets
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from microsmtp_host import devconfig, mpremote_cmd, unixport

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "boards" / "esp32"  # deploy copies main.py, board.py and alert_app.py
RUN_TIMEOUT = 90  # seconds for the app's run on the board (about 8 s here)
WAITING = "outbox: 1 waiting"  # the board's line once its first try found no server


class DemoFailed(Exception):
    """One sentence for the user; the demo exits 1 with it."""


def section(title):
    print("\n== %s %s" % (title, "=" * max(3, 72 - len(title))), flush=True)


def config_for(catcher, user, password):
    """The board's config.json (docs/CONFIG.md), pointing at the catcher."""
    return {
        "smtp": {"server": "localhost", "port": catcher.smtp_port, "tls": "starttls",
                 "username": user, "password": password, "from": "boiler@example.org",
                 "to": ["oncall@example.org"], "client_domain": "boiler.example.org",
                 "cadata": "ca.pem"},
        # A simulated sensor rising across 85 °C at the 11th reading (2 s in): one
        # crossing, so exactly one alert. The run lasts 8 s.
        "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                  "subject": "Boiler at {value:.1f} °C", "sensor": "simulated",
                  "period": 0.2, "max_readings": 40},
        # Retries 0.5 s, 1.5 s, 3.5 s after the first try (a board would use 30 s).
        "outbox": {"retry": 0.5},
    }


def run_app(device, on_line):
    """`import main` on the board, its output printed as it comes; on_line(line) for each
    line. The board's whole output."""

    def show(line):
        print("  board | %s" % line, flush=True)
        on_line(line)

    try:
        lines = mpremote_cmd.run(device, "exec", "import main", timeout=RUN_TIMEOUT,
                                 on_line=show)
    except mpremote_cmd.MpremoteError as e:
        if e.timed_out:
            why = "killed after %d s" % RUN_TIMEOUT
        elif e.returncode is not None:
            why = "exit code %d, see its output above" % e.returncode
        else:
            why = str(e)
        raise DemoFailed("the app on the board did not finish (%s)" % why) from None
    return "\n".join(lines)


def main():
    import trustme

    from microsmtp_host import cli
    from microsmtp_host.catcher import Catcher
    from microsmtp_host.virtual_board import VirtualBoard

    why = unixport.missing()  # the virtual board is the unix port: no demo without it
    if why:
        raise DemoFailed("make demo runs the firmware on a virtual board, and " + why)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    user = "boiler"
    password = secrets.token_urlsafe(16)  # made per run: nothing to leak from the repo
    ca = trustme.CA()  # a CA for this run; the board gets only its certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls)

    with tempfile.TemporaryDirectory(prefix="microsmtp-demo-") as tmp:
        tmp = Path(tmp)
        section("1. Firmware")
        try:
            unixport.firmware_mpy()
        except subprocess.CalledProcessError as e:
            raise DemoFailed("mpy-cross failed: %s" % e) from None
        print("build/mpy/microsmtp/*.mpy, compiled by mpy-cross 1.29")

        catcher = Catcher(tmp / "maildir", smtp_port=0, http_port=0, auth=(user, password),
                          tls_context=tls)
        board = VirtualBoard(tmp / "board")
        try:
            section("2. microsmtp catch")
            catcher.start()
            print("SMTP on %s (STARTTLS, AUTH as %r), web page %s, Maildir %s"
                  % (catcher.smtp_address, user, catcher.web_url, catcher.maildir))

            section("3. microsmtp board")
            device = board.start()
            print("virtual board on %s, its filesystem %s" % (device, board.folder))

            section("4. microsmtp deploy")
            config = devconfig.save(tmp / "config.json", config_for(catcher, user, password))
            code = cli.main(["deploy", "--port", device, "--mpy", "--app", str(APP),
                             "--config", str(config)])
            if code:
                raise DemoFailed("deploy failed (exit code %d)" % code)
            ca_file = tmp / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            try:
                mpremote_cmd.run(device, "fs", "cp", str(ca_file), ":ca.pem")
            except mpremote_cmd.MpremoteError as e:
                raise DemoFailed("copying the CA to the board failed: %s" % e) from None
            print("ca.pem copied to the board (cadata in config.json)")

            section("5. The mail server goes down")
            catcher.stop()
            print("catcher stopped: nothing listens on %s" % catcher.smtp_address)

            section("6. The app on the board")
            print("mpremote exec 'import main': boards/esp32's app with a simulated sensor;"
                  " alerts go into the outbox on the board's flash, then out")
            restarted = []

            def server_back(line):
                if line.startswith(WAITING) and not restarted:
                    section("7. The mail server comes back")
                    try:
                        catcher.start()  # the same ports, the same Maildir
                    except OSError as e:
                        raise DemoFailed("the catcher could not start again on %s: %s"
                                         % (catcher.smtp_address, e)) from None
                    restarted.append(True)
                    print("catcher started again on %s; the board's next try is due"
                          % catcher.smtp_address, flush=True)

            out = run_app(device, server_back)
            if not restarted:
                raise DemoFailed("the board never reported a queued alert waiting for the "
                                 "server")
            messages = catcher.messages()

            section("8. Received by the catcher")
            if not messages:
                raise DemoFailed("the catcher received no mail")
            stored = sorted((catcher.maildir / "new").iterdir()) + sorted(
                (catcher.maildir / "cur").iterdir())
            print("Maildir file: %s" % stored[0].name)
            sys.stdout.write(stored[0].read_bytes().decode("utf-8", "replace")
                             .replace("\r\n", "\n"))
            print("--- end of message ---")
            print("Subject, decoded: %s" % messages[0]["subject"])
            print("Web page: %s (while the demo runs)" % catcher.web_url)
            if len(messages) != 1:
                raise DemoFailed("expected 1 alert, the catcher got %d" % len(messages))
            if "outbox: 1 sent, 0 waiting" not in out:
                raise DemoFailed("a mail arrived but the app did not report success")
        finally:
            board.stop()
            catcher.stop()

    section("Summary")
    print("1 alert delivered despite the outage: the ESP32 example app on a virtual board "
          "(MicroPython unix port, deployed with mpremote) queued it on flash while the "
          "server was down and sent it when it came back, over STARTTLS with the "
          "certificate verified, to `microsmtp catch` on loopback")


if __name__ == "__main__":
    try:
        main()
    except DemoFailed as e:
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
