"""microsmtp probe HOST[:PORT]: what a mail server offers, and the Client(...) to use.

Connects like the firmware would (implicit TLS on 465, STARTTLS where offered), shows the
greeting, the EHLO capabilities, the certificate (subject, issuer, expiry, whether it
verifies for the name) and the AUTH mechanisms, then prints the settings that fit. Sends
no mail and no credentials.

The server is not trusted: every byte it sends is shown escaped (`\\xNN`), and what the probe
reads is bounded in line length, lines per reply, bytes per connection and time."""

import datetime
import socket
import ssl
import time

DEFAULT_PORTS = (465, 587, 25)
# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers stay far below 1000.
MAX_LINE = 1000
MAX_LINES = 100  # lines in one reply: a long EHLO list has ~20
MAX_BYTES = 64 * 1024  # everything read on one connection
DEFAULT_DEADLINE = 60  # seconds for the whole probe, every port


class ProbeError(Exception):
    """The server (or the clock) ended the probe of one port: a one-line reason."""


def printable(data):
    """Server bytes (or text) as printable ASCII: anything else, and the backslash, as \\xNN.

    Escaping the backslash too keeps it unambiguous: `\\x1b` in the output was an ESC byte."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else "\\x%02x" % b for b in data)


class _Clock:
    """--timeout for each step, and one deadline for the whole probe."""

    def __init__(self, step, total):
        self.step_s = step
        self.total_s = total
        self.end = time.monotonic() + total

    def step(self):
        """Seconds the next step may take; ProbeError once the whole-probe deadline passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise ProbeError("the probe took longer than %g s (--deadline)" % self.total_s)
        return min(self.step_s, left)


def _seconds(text):
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:  # 0 would make the sockets non-blocking, not patient
        raise argparse.ArgumentTypeError("%r is not a number of seconds above 0" % text)
    return value


def add_parser(p):
    p.add_argument("target", metavar="HOST[:PORT]",
                   help="the server; without a port, 465, 587 and 25 are tried")
    p.add_argument("--cafile", help="CA file (PEM) to verify with; default: this "
                   "computer's CA store (a board has none: pass the same CA as cadata)")
    p.add_argument("--timeout", type=_seconds, default=8,
                   help="seconds per step (default %(default)s)")
    p.add_argument("--deadline", type=_seconds, default=DEFAULT_DEADLINE,
                   help="seconds for the whole probe, all ports (default %(default)s)")
    p.add_argument("--implicit", action="store_true",
                   help="TLS from the first byte on a port other than 465")
    p.add_argument("--verbose", action="store_true",
                   help="print the SMTP transcript as it goes (server bytes escaped)")


def transcript(direction, line):
    """--verbose: one line of the conversation ("> " sent, "< " read, "* " what the probe
    does), already escaped by printable() where it came from the server."""
    print("%s %s" % (direction, line), flush=True)


def run(args):
    from microsmtp_host.cli import CLIError

    host, ports = _split(args.target, CLIError)
    clock = _Clock(args.timeout, args.deadline)
    trace = transcript if args.verbose else None
    results = [probe(host, port, args.cafile, args.timeout, args.implicit, clock, trace)
               for port in ports]
    best = recommend(results)
    if best is None:
        # Nothing usable: one line naming each port's failure, and no report that could be
        # read as if a server had answered.
        what = ("no usable SMTP server" if any(r["connected"] for r in results)
                else "no SMTP server answered")
        raise CLIError("%s on %s: %s" % (what, host, "; ".join(
            "port %d: %s" % (r["port"], r["error"] or "no answer") for r in results)))
    for res in results:
        print(report(res))
    print("\nUse:\n    " + best)
    return 0


def _split(target, error):
    host, sep, port = target.rpartition(":")
    if not sep or "]" in port or host.count(":") and not host.startswith("["):
        return target.strip("[]"), DEFAULT_PORTS  # no port (or a bare IPv6 address)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise error("bad port %r in %r" % (port, target))
    return host.strip("[]"), (int(port),)


class _Conversation:
    """A plain line-based SMTP exchange over a (maybe TLS) socket, bounded on every side.

    reply() gives (code, lines) with each line already escaped by printable(); trace, when
    given, is called with (">", command) and ("<", escaped line) as they go."""

    def __init__(self, sock, clock, received=0, trace=None):
        self.sock = sock
        self.clock = clock
        self.buf = b""
        self.received = received  # bytes so far on this connection (carried over STARTTLS)
        self.trace = trace

    def _line(self, deadline):
        while True:
            end = self.buf.find(b"\n", 0, MAX_LINE + 1)
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 1:]
                return line.rstrip(b"\r")
            if len(self.buf) > MAX_LINE:
                raise ProbeError("the server sent a reply line longer than %d bytes" % MAX_LINE)
            left = min(deadline, self.clock.end) - time.monotonic()
            if left <= 0:
                self.clock.step()  # names the whole-probe deadline if that is the one passed
                raise ProbeError("no complete reply within %g s (--timeout)" % self.clock.step_s)
            # One deadline for the whole reply: a server dripping a byte at a time cannot
            # stretch a step by resetting a per-recv timeout.
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue  # the loop above says which limit passed
            if not chunk:
                raise ProbeError("the server closed the connection")
            self.received += len(chunk)
            if self.received > MAX_BYTES:
                raise ProbeError("the server sent more than %d bytes" % MAX_BYTES)
            self.buf += chunk

    def reply(self):
        deadline = time.monotonic() + self.clock.step()
        lines = []
        while True:
            line = self._line(deadline)
            lines.append(printable(line))
            if self.trace:
                self.trace("<", lines[-1])
            if len(line) < 4 or line[3:4] != b"-":
                code = line[:3]
                return int(code) if code.isdigit() and len(code) == 3 else 0, lines
            if len(lines) >= MAX_LINES:
                raise ProbeError("the server sent more than %d lines in one reply" % MAX_LINES)

    def command(self, line):
        if self.trace:
            self.trace(">", line)  # the probe's own words: EHLO, STARTTLS, QUIT
        self.sock.settimeout(self.clock.step())
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()


def _context(cafile, verify):
    ctx = ssl.create_default_context(cafile=cafile) if verify else ssl.SSLContext(
        ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _certificate(sock, host, cafile, clock, implicit, trace=None):
    """Subject, issuer, expiry and the verification verdict of the server's certificate."""
    info = {}
    der = sock.getpeercert(binary_form=True)
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        # The server chose these strings: a subject can carry ESC like any other field.
        info["subject"] = printable(cert.subject.rfc4514_string())
        info["issuer"] = printable(cert.issuer.rfc4514_string())
        info["expires"] = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        info["expired"] = cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    except ImportError:
        info["subject"] = "(install cryptography to show it)"
    info["verified"], info["why"] = _verifies(host, sock.getpeername()[:2], cafile, clock,
                                              implicit, trace)
    return info


def _verifies(host, addr, cafile, clock, implicit, trace=None):
    """Connect again with verification on, as the board would: (ok, reason)."""
    if trace:
        trace("*", "connecting again, to verify the certificate as a board would")
    try:
        with socket.create_connection(addr, timeout=clock.step()) as raw:
            ctx = _context(cafile, True)
            if not implicit:
                talk = _Conversation(raw, clock, trace=trace)
                talk.reply()
                talk.command("EHLO probe.invalid")
                code, _ = talk.command("STARTTLS")
                if code != 220:
                    return False, "STARTTLS refused on the second try (%d)" % code
            raw.settimeout(clock.step())
            ctx.wrap_socket(raw, server_hostname=host).close()
            return True, ""
    except ssl.SSLCertVerificationError as e:
        return False, printable(e.verify_message)
    except (OSError, ssl.SSLError, ProbeError) as e:
        return False, printable(str(e))
    finally:
        if trace:
            trace("*", "back to the first connection")


def _tls(sock, host, cafile, clock):
    sock.settimeout(clock.step())  # the handshake as one step
    return _context(cafile, False).wrap_socket(sock, server_hostname=host)


def probe(host, port, cafile=None, timeout=8, implicit=False, clock=None, trace=None):
    """What the server on host:port offers: a dict for report() and recommend().

    "greeting" stays None unless the server answered one; "error" is a one-line reason;
    trace(direction, line): the transcript as it goes (--verbose)."""
    clock = clock or _Clock(timeout, DEFAULT_DEADLINE)
    if trace:
        trace("*", "connecting to %s port %d" % (printable(host), port))
    res = {"host": host, "port": port, "error": None, "connected": False, "greeting": None,
           "caps": [], "tls": None, "cert": None, "auth": [], "size": None}
    try:
        raw = socket.create_connection((host, port), timeout=clock.step())
    except ProbeError as e:
        res["error"] = str(e)
        return res
    except OSError as e:
        res["error"] = "cannot connect: %s" % (e.strerror or e)
        return res
    res["connected"] = True
    sock = raw
    try:
        if implicit or port == 465:  # RFC 8314: TLS from the first byte
            if trace:
                trace("*", "TLS handshake")
            sock = _tls(raw, host, cafile, clock)
            res["tls"] = "implicit"
            res["cert"] = _certificate(sock, host, cafile, clock, True, trace)
        talk = _Conversation(sock, clock, trace=trace)
        code, lines = talk.reply()
        res["greeting"] = " ".join(line[4:] for line in lines)
        if code != 220:
            res["error"] = "greeting %d %s" % (code, res["greeting"][:200])
            return res
        code, lines = talk.command("EHLO probe.invalid")
        caps = [line[4:] for line in lines[1:]] if code == 250 else []
        if res["tls"] is None and any(c.upper() == "STARTTLS" for c in caps):
            code, _ = talk.command("STARTTLS")
            if code == 220:
                if trace:
                    trace("*", "TLS handshake")
                sock = _tls(sock, host, cafile, clock)
                talk = _Conversation(sock, clock, talk.received, trace)
                res["tls"] = "starttls"
                res["cert"] = _certificate(sock, host, cafile, clock, False, trace)
                code, lines = talk.command("EHLO probe.invalid")
                caps = [line[4:] for line in lines[1:]] if code == 250 else []
        res["caps"] = caps
        for cap in caps:
            words = cap.replace("=", " ").split()
            if words and words[0].upper() == "AUTH":
                res["auth"] = [w.upper() for w in words[1:]]
            if words and words[0].upper() == "SIZE" and len(words) > 1:
                res["size"] = int(words[1]) if words[1].isdigit() else None
        try:
            talk.command("QUIT")
        except (OSError, ProbeError):
            pass
    except (OSError, ssl.SSLError, ValueError, ProbeError) as e:
        res["error"] = printable(str(e) or type(e).__name__)
    finally:
        sock.close()
    return res


def report(res):
    head = "== %s port %d" % (res["host"], res["port"])
    if res["greeting"] is None:  # nothing answered: say why, and nothing a server would say
        return "%s: %s" % (head, res["error"] or "no answer")
    out = [head, "greeting: " + res["greeting"]]
    if res["error"]:
        out.append("error: " + res["error"])
    if res["caps"]:
        out.append("EHLO: " + ", ".join(res["caps"]))
    out.append("TLS: " + {"implicit": "implicit (port 465)", "starttls": "STARTTLS",
                          None: "none offered"}[res["tls"]])
    cert = res["cert"]
    if cert:
        out.append("certificate: %s, issued by %s, expires %s%s" % (
            cert.get("subject"), cert.get("issuer"), cert.get("expires", "?"),
            " (EXPIRED)" if cert.get("expired") else ""))
        out.append("verifies for %s: %s" % (res["host"], "yes" if cert["verified"] else
                                            "NO: " + cert["why"]))
    out.append("AUTH: " + (" ".join(res["auth"]) or "none listed"))
    if res["size"]:
        out.append("SIZE: %d bytes" % res["size"])
    return "\n".join(out)


def recommend(results):
    """The Client(...) line for the best port: TLS first, then one that answered."""
    usable = [r for r in results if r["greeting"] is not None and not r["error"]]
    if not usable:
        return None
    best = sorted(usable, key=lambda r: (r["tls"] is None, r["port"] != 465))[0]
    args = ["%r, %d" % (best["host"], best["port"]), "from_address=...", "username=...",
            "password=..."]
    notes = []
    if best["tls"] == "implicit":
        args.append("tls=microsmtp.TLS_IMPLICIT")
    elif best["tls"] == "starttls":
        args.append("tls=microsmtp.TLS_STARTTLS")
    else:
        args.append("tls=microsmtp.TLS_NONE")
    if best["tls"]:
        args.append('cadata="/ca.pem"')
        notes.append("cadata: the CA that signed the certificate (issuer: %s)" % (
            (best["cert"] or {}).get("issuer", "see above")))
    elif best["auth"]:
        args.append("allow_plaintext_auth=True")
        notes.append("no TLS on this server: send a password only on a trusted LAN")
    mechs = best["auth"]
    if "XOAUTH2" in mechs and not any(m in mechs for m in ("PLAIN", "LOGIN", "CRAM-MD5")):
        args.append("oauth_token=...")
    return "\n    # ".join(["microsmtp.Client(%s)" % ", ".join(args)] + notes)
