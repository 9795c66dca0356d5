"""`microsmtp catch`: its options, the banner, one log line per mail, Ctrl-C and SIGTERM."""

import os
import sys
import time
from pathlib import Path

from . import server
from .server import Catcher, loopback_host
from .smtp import escape


def _cli_error(message):
    from microsmtp_host.cli import CLIError

    return CLIError(message)


def default_maildir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "microsmtp" / "maildir"


def _port(text):
    import argparse

    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("%r is not a port number (0 to 65535)" % text)
    return port


def _positive(text):
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("%r is not a whole number of at least 1" % text)
    return int(text)


def _size(text):
    """'1048576', '512K', '256M', '1G' (binary units) as bytes."""
    scale = 1024 ** (" KMG".index(text[-1].upper()) if text[-1:].upper() in ("K", "M", "G")
                     else 0)
    return _positive(text[:-1] if scale > 1 else text) * scale


def add_parser(p):
    p.add_argument("--port", type=_port, default=server.DEFAULT_SMTP_PORT,
                   help="SMTP port (default %(default)s; 0: any free port)")
    p.add_argument("--http", type=_port, default=server.DEFAULT_HTTP_PORT, metavar="PORT",
                   help="web page port (default %(default)s; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (default %(default)s; ::1 for IPv6)")
    p.add_argument("--maildir", metavar="DIR",
                   help="where mail is stored (default %s)" % default_maildir())
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="require AUTH PLAIN/LOGIN with these test credentials "
                   "(default: AUTH optional, any credentials accepted)")
    p.add_argument("--tls-cert", metavar="PEM", help="certificate to offer STARTTLS with")
    p.add_argument("--tls-key", metavar="PEM", help="its private key")
    p.add_argument("--max-messages", type=_positive, default=server.DEFAULT_MAX_MESSAGES,
                   metavar="N", help="mails kept in the Maildir; the oldest are deleted "
                   "first (default %(default)s)")
    p.add_argument("--max-bytes", type=_size, default=server.DEFAULT_MAX_BYTES, metavar="SIZE",
                   help="bytes kept in the Maildir, e.g. 500M; the oldest mails are deleted "
                   "first, a bigger mail is refused (default 256M)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _say(line, stream=None):
    stream = stream or sys.stdout
    try:
        print(line, file=stream, flush=True)
    except UnicodeEncodeError:
        enc = stream.encoding or "ascii"
        print(line.encode(enc, "replace").decode(enc), file=stream, flush=True)


def log_line(summary):
    """'12:01:02 boiler@example.org → oncall@example.org: Boiler at 92 °C'"""
    return "%s %s \u2192 %s: %s" % (
        time.strftime("%H:%M:%S", time.localtime(summary["time"])),
        escape(summary["envelope_from"] or summary["from"]) or "<>",
        escape(", ".join(summary["to"])), escape(summary["subject"]) or "(no subject)")


def _tls_context(cert, key):
    import ssl

    if not cert or not key:
        raise _cli_error("--tls-cert and --tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise _cli_error("cannot load the TLS certificate/key: %s" % e)
    return ctx


def run(args):
    import logging
    import signal

    try:
        host = loopback_host(args.host)
    except ValueError as e:
        raise _cli_error(str(e))
    auth = None
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise _cli_error("--auth takes USER:PASSWORD")
        auth = (user, password)
    tls = _tls_context(args.tls_cert, args.tls_key) if (args.tls_cert or args.tls_key) else None
    maildir = Path(args.maildir).expanduser() if args.maildir else default_maildir()
    if args.port and args.port == args.http:
        raise _cli_error("--port and --http must differ")
    catcher = Catcher(maildir, host, args.port, args.http, auth=auth, tls_context=tls,
                      on_message=None if args.quiet else lambda m: _say(log_line(m)),
                      max_messages=args.max_messages, max_bytes=args.max_bytes)
    try:
        catcher.start()
    except ValueError as e:  # the Maildir
        raise _cli_error(str(e))
    except OSError as e:
        catcher.stop()
        raise _cli_error("cannot start: %s (is another catcher running? try --port/--http)"
                         % (e.strerror or e))

    # aiosmtpd's own warnings (bogus commands, failed sessions) as one line each on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("microsmtp catch: smtp: %(message)s"))
    handler.setLevel(logging.ERROR if args.quiet else logging.WARNING)
    mail_log = logging.getLogger("mail.log")
    mail_log.addHandler(handler)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if not args.quiet:
            _say("SMTP     %s%s%s" % (catcher.smtp_address,
                                      "  (STARTTLS offered)" if tls else "",
                                      "  (AUTH required: %s)" % auth[0] if auth else ""))
            _say("web page %s" % catcher.web_url)
            _say("Maildir  %s  (the newest %d mails, %d bytes at most)"
                 % (catcher.maildir, catcher.max_messages, catcher.max_bytes))
            _say("Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        if not args.quiet:
            _say("stopped")
    finally:
        signal.signal(signal.SIGTERM, old)
        catcher.stop()
        mail_log.removeHandler(handler)
    return 0
