"""microsmtp probe HOST[:PORT]: what a mail server offers, and the Client(...) to use.

Connects like the firmware would (implicit TLS on 465, STARTTLS where offered), shows the
greeting, the EHLO capabilities, the certificate (subject, issuer, expiry, whether it
verifies for the name) and the AUTH mechanisms, then prints the settings that fit. Sends
no mail and no credentials."""

import datetime
import socket
import ssl

DEFAULT_PORTS = (465, 587, 25)


def add_parser(p):
    p.add_argument("target", metavar="HOST[:PORT]",
                   help="the server; without a port, 465, 587 and 25 are tried")
    p.add_argument("--cafile", help="CA file (PEM) to verify with; default: this "
                   "computer's CA store (a board has none: pass the same CA as cadata)")
    p.add_argument("--timeout", type=float, default=8, help="seconds per step (default 8)")
    p.add_argument("--implicit", action="store_true",
                   help="TLS from the first byte on a port other than 465")


def run(args):
    from microsmtp_host.cli import CLIError

    host, ports = _split(args.target, CLIError)
    results = [probe(host, port, args.cafile, args.timeout, args.implicit) for port in ports]
    for res in results:
        print(report(res))
    best = recommend(results)
    if best is None:
        raise CLIError("no SMTP server answered on %s" % ", ".join(str(p) for p in ports))
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
    """A plain line-based SMTP exchange over a (maybe TLS) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]) if text[:3].isdigit() else 0, lines

    def command(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()


def _context(cafile, verify):
    ctx = ssl.create_default_context(cafile=cafile) if verify else ssl.SSLContext(
        ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _certificate(sock, host, cafile, timeout, implicit):
    """Subject, issuer, expiry and the verification verdict of the server's certificate."""
    info = {}
    der = sock.getpeercert(binary_form=True)
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        info["subject"] = cert.subject.rfc4514_string()
        info["issuer"] = cert.issuer.rfc4514_string()
        info["expires"] = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        info["expired"] = cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    except ImportError:
        info["subject"] = "(install cryptography to show it)"
    info["verified"], info["why"] = _verifies(host, sock.getpeername()[:2], cafile, timeout,
                                              implicit)
    return info


def _verifies(host, addr, cafile, timeout, implicit):
    """Connect again with verification on, as the board would: (ok, reason)."""
    try:
        with socket.create_connection(addr, timeout=timeout) as raw:
            ctx = _context(cafile, True)
            if implicit:
                ctx.wrap_socket(raw, server_hostname=host).close()
                return True, ""
            talk = _Conversation(raw)
            talk.reply()
            talk.command("EHLO probe.invalid")
            code, _ = talk.command("STARTTLS")
            if code != 220:
                return False, "STARTTLS refused on the second try (%d)" % code
            ctx.wrap_socket(raw, server_hostname=host).close()
            return True, ""
    except ssl.SSLCertVerificationError as e:
        return False, e.verify_message
    except (OSError, ssl.SSLError) as e:
        return False, str(e)


def probe(host, port, cafile=None, timeout=8, implicit=False):
    res = {"host": host, "port": port, "error": None, "greeting": None, "caps": [],
           "tls": None, "cert": None, "auth": [], "size": None}
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        res["error"] = "cannot connect: %s" % (e.strerror or e)
        return res
    sock = raw
    try:
        if implicit or port == 465:  # RFC 8314: TLS from the first byte
            sock = _context(cafile, False).wrap_socket(raw, server_hostname=host)
            res["tls"] = "implicit"
            res["cert"] = _certificate(sock, host, cafile, timeout, True)
        talk = _Conversation(sock)
        code, lines = talk.reply()
        res["greeting"] = " ".join(line[4:] for line in lines)
        if code != 220:
            res["error"] = "greeting %d" % code
            return res
        code, lines = talk.command("EHLO probe.invalid")
        caps = [line[4:] for line in lines[1:]] if code == 250 else []
        if res["tls"] is None and any(c.upper() == "STARTTLS" for c in caps):
            code, _ = talk.command("STARTTLS")
            if code == 220:
                sock = _context(cafile, False).wrap_socket(sock, server_hostname=host)
                talk = _Conversation(sock)
                res["tls"] = "starttls"
                res["cert"] = _certificate(sock, host, cafile, timeout, False)
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
        except OSError:
            pass
    except (OSError, ssl.SSLError, ValueError) as e:
        res["error"] = str(e) or type(e).__name__
    finally:
        sock.close()
    return res


def report(res):
    out = ["== %s port %d" % (res["host"], res["port"])]
    if res["greeting"]:
        out.append("greeting: " + res["greeting"])
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
    usable = [r for r in results if r["greeting"] and not r["error"]]
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
