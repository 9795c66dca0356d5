"""`microsmtp catch`: a local SMTP catcher for trying alerts without a real mail server.

An aiosmtpd server on loopback takes every mail and stores it, as received, in a Maildir
(the Maildir is the source of truth: delete a file there and it is gone from the page too);
a small web page on loopback lists the alerts newest first (time, sender, recipients,
subject, body, attachments as downloads) and refreshes itself as mail arrives.

    microsmtp catch                      SMTP on 127.0.0.1:2525, web page on 127.0.0.1:8025
    microsmtp catch --auth alerts:secret AUTH PLAIN/LOGIN required with these credentials
    microsmtp catch --max-messages 50    keep only the 50 newest mails (oldest deleted first)

Without --auth, AUTH is optional and any credentials are accepted, so a board configured for
the real server can be pointed at the catcher unchanged (with allow_plaintext_auth=True, or
with --tls-cert/--tls-key for STARTTLS). `Catcher` is the reusable part (tests, demos).

Whatever a client sends stays bounded here: the Maildir keeps at most --max-messages mails
and --max-bytes bytes (the oldest go first), memory holds a short summary per mail (bodies
and attachments are read from the Maildir when asked for), and every log line shows client
bytes escaped, one line per event.

Only stdlib modules are imported here at module level; aiosmtpd, email, mailbox and
http.server are imported when a catcher starts."""

import json
import os
import sys
import threading
import time
from pathlib import Path

DEFAULT_SMTP_PORT = 2525
DEFAULT_HTTP_PORT = 8025
PREVIEW_CHARS = 4096  # characters of a body kept in memory, on the page and in the JSON
HEADER_CHARS = 1000  # of a subject, an address, a file name kept in memory
MAX_LISTED = 100  # recipients and attachments listed per mail
DEFAULT_MAX_MESSAGES = 1000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
SMTP_SIZE_LIMIT = 32 * 1024 * 1024  # aiosmtpd's own default DATA limit
LOCAL_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def _quiet_aiosmtpd_deprecation(record):
    # aiosmtpd 1.4 itself sets the deprecated Session.login_data on every successful AUTH
    # and logs a warning about it each time: noise for the catcher's user.
    return "login_data is deprecated" not in record.getMessage()


def _cli_error(message):
    from microsmtp_host.cli import CLIError

    return CLIError(message)


def default_maildir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "microsmtp" / "maildir"


def loopback_host(host):
    """The loopback address to listen on for `host`; ValueError if it is not loopback."""
    import ipaddress

    if host.lower() in LOCAL_NAMES:
        return "::1" if host.lower().startswith("ip6") else "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError("--host %r is not an IP address or localhost" % host) from None
    if not addr.is_loopback:
        raise ValueError("--host %s is not a loopback address: the catcher is a local tool "
                         "(use 127.0.0.1 or ::1)" % host)
    return str(addr)


def _family(host):
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host):
    return "[%s]" % host if ":" in host else host


def _clean(text):
    """One printable line: control characters (CR, LF, ESC, ...) become spaces."""
    return "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text).strip()


def _escape(text):
    """Text for a terminal or a log line: control, format and separator characters (ESC, CR,
    LF, C1, bidi overrides, undecodable bytes) as \\xNN or \\uNNNN, the rest as it is."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(
        ("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c))
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)


def _one_escaped_line(record):
    # A filter on aiosmtpd's logger ("mail.log"): its records carry client bytes (an
    # unrecognised command is logged as sent, ESC and all), and an exception would add a
    # traceback; each record becomes one line with everything escaped.
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        text += ": %s: %s" % (type(error).__name__, error)
        record.exc_info = record.exc_text = None
    record.msg, record.args = _escape(text), None
    return True


# --------------------------------------------------------------------------- parsing

def _text_of(part):
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken encoding: show what can be shown
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return content if isinstance(content, str) else str(content)


def _header(msg, name):
    try:
        value = msg.get(name)
    except Exception:  # a header the parser cannot make sense of
        value = None
    return "" if value is None else str(value)


def _body_part(msg):
    try:
        return msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        return None


def _attachment_parts(msg, body):
    """Every leaf part that is not the body shown: attachments, inline images, ... ."""
    parts = []
    for part in msg.walk():
        if part.is_multipart() or part is body:
            continue
        if (part.get_content_maintype() == "text" and not part.is_attachment()
                and not part.get_filename()):
            continue  # another rendering of the body (the HTML alternative)
        parts.append(part)
    return parts


def _filename(part, index):
    try:
        name = part.get_filename()
    except Exception:
        name = None
    name = _clean(name or "")[:HEADER_CHARS].replace("/", "_").replace("\\", "_")
    return name or "attachment-%d" % (index + 1)


def _parse(raw):
    import email
    import email.policy

    return email.message_from_bytes(raw, policy=email.policy.default)


def parse_message(raw, delivered):
    """A summary of one stored mail (bytes): the fields of Catcher.messages() but the key.

    Bounded whatever the mail holds: the body as a preview of PREVIEW_CHARS characters (and
    its full length), headers cut at HEADER_CHARS, at most MAX_LISTED recipients and
    attachments, so that the catcher's memory does not grow with the mail."""
    msg = _parse(raw)
    body = _body_part(msg)
    attachments = []
    for i, part in enumerate(_attachment_parts(msg, body)[:MAX_LISTED]):
        payload = part.get_payload(decode=True) or b""
        attachments.append((_filename(part, i), part.get_content_type()[:HEADER_CHARS],
                            len(payload)))
    env_to = [a.strip() for a in _header(msg, "X-microsmtp-Rcpt-To").split(",") if a.strip()]
    to = env_to or [a.strip() for a in _header(msg, "To").split(",") if a.strip()]
    text = _text_of(body) if body is not None else ""
    return {
        "time": delivered,
        "from": (_header(msg, "From") or _header(msg, "X-microsmtp-Mail-From"))[:HEADER_CHARS],
        "to": [a[:HEADER_CHARS] for a in to[:MAX_LISTED]],
        "envelope_from": _header(msg, "X-microsmtp-Mail-From")[:HEADER_CHARS],
        "subject": _header(msg, "Subject")[:HEADER_CHARS],
        "body": text[:PREVIEW_CHARS],
        "body_chars": len(text),
        "attachments": attachments,
    }


# --------------------------------------------------------------------------- the page

STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{background:#223;color:#fff;padding:.6em 1em}
header h1{font-size:1.1em;margin:0}
header p{margin:.2em 0 0;font-size:.85em;color:#ccd}
main{padding:1em;max-width:70em}
article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:0 0 1em}
.meta{color:#666;font-size:.85em}
h2{font-size:1.05em;margin:.3em 0}
pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;border:1px solid #eee;
padding:.5em;margin:.4em 0;max-height:24em;overflow:auto}
ul{margin:.2em 0;padding-left:1.2em}
.empty{color:#666}
"""

# Re-renders with DOM calls and textContent only: mail content never becomes markup.
SCRIPT = """
"use strict";
(function () {
  var list = document.getElementById("messages");
  var count = document.getElementById("count");
  var last = null;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function render(msgs) {
    var items = [];
    if (!msgs.length) {
      items.push(el("p", "empty", "No mail yet."));
    }
    msgs.forEach(function (m) {
      var a = el("article", "msg");
      a.dataset.key = m.key;
      var meta = el("div", "meta");
      meta.append(el("time", "", m.time_text), " ", el("span", "from", m.from),
                  " \\u2192 ", el("span", "to", m.to.join(", ")));
      a.append(meta, el("h2", "subject", m.subject || "(no subject)"),
               el("pre", "body", m.body));
      if (m.body_url) {
        var full = el("a", "full", "whole body (" + m.body_chars + " characters)");
        full.href = m.body_url;
        a.append(full);
      }
      if (m.attachments.length) {
        var ul = el("ul", "attachments");
        m.attachments.forEach(function (f) {
          var li = el("li"), link = el("a", "", f.filename);
          link.href = f.url;
          link.setAttribute("download", "");
          li.append(link, " (" + f.content_type + ", " + f.size + " bytes)");
          ul.append(li);
        });
        a.append(ul);
      }
      items.push(a);
    });
    list.replaceChildren.apply(list, items);
    count.textContent = msgs.length + (msgs.length === 1 ? " message" : " messages");
  }
  function poll() {
    fetch("/messages.json", {cache: "no-cache"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (text) {
      if (text !== last) { last = text; render(JSON.parse(text)); }
      document.body.dataset.live = "yes";
    }).catch(function () {
      document.body.dataset.live = "no";
      count.textContent = "catcher not reachable, retrying";
    }).finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
"""


def _csp():
    import base64
    import hashlib

    def digest(text):
        return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    return ("default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            % (digest(SCRIPT), digest(STYLE)))


def _size_text(n):
    return "%d bytes" % n


def render_page(messages, smtp_address, maildir):
    """The whole page, every piece of mail content escaped; `messages` as in /messages.json."""
    from html import escape

    out = ["<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
           "<title>microsmtp catcher</title><style>", STYLE, "</style></head><body>"
           "<header><h1>microsmtp catcher</h1><p>SMTP ", escape(smtp_address),
           " &middot; Maildir ", escape(str(maildir)), " &middot; <span id=\"count\">",
           "%d message%s" % (len(messages), "" if len(messages) == 1 else "s"),
           "</span></p></header><main id=\"messages\">"]
    if not messages:
        out.append("<p class=\"empty\">No mail yet.</p>")
    for m in messages:
        out += ["<article class=\"msg\" data-key=\"", escape(m["key"]), "\"><div class=\"meta\">",
                "<time>", escape(m["time_text"]), "</time> <span class=\"from\">",
                escape(m["from"]), "</span> &rarr; <span class=\"to\">",
                escape(", ".join(m["to"])), "</span></div><h2 class=\"subject\">",
                escape(m["subject"] or "(no subject)"), "</h2><pre class=\"body\">",
                escape(m["body"]), "</pre>"]
        if m["body_url"]:
            out += ["<a class=\"full\" href=\"", escape(m["body_url"]), "\">whole body (",
                    str(m["body_chars"]), " characters)</a>"]
        if m["attachments"]:
            out.append("<ul class=\"attachments\">")
            for f in m["attachments"]:
                out += ["<li><a href=\"", escape(f["url"]), "\" download>", escape(f["filename"]),
                        "</a> (", escape(f["content_type"]), ", ", _size_text(f["size"]),
                        ")</li>"]
            out.append("</ul>")
        out.append("</article>")
    out += ["</main><script>", SCRIPT, "</script></body></html>\n"]
    return "".join(out)


def _content_disposition(filename):
    from urllib.parse import quote

    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (fallback, quote(filename, ""))


def _handler_class(catcher):
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import quote, unquote

    csp = _csp()
    allowed_hosts = {"%s:%d" % (name, catcher.http_port) for name in
                     ("127.0.0.1", "localhost", "[::1]", _url_host(catcher.host))}

    class Handler(BaseHTTPRequestHandler):
        server_version = "microsmtp-catcher"
        sys_version = ""
        timeout = 10  # a client that stalls does not hold a thread forever
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

        def _send(self, status, body, content_type, extra=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status, text):
            self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8",
                       [("Cache-Control", "no-store")])

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            # A page on another site that DNS-rebinds its name to 127.0.0.1 sends its own
            # name as Host: refuse it, so the alerts stay readable only from this machine.
            host = self.headers.get("Host")
            if host is not None and host.lower() not in allowed_hosts:
                return self._error(421, "unexpected Host header")
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                page = render_page(catcher.web_messages(), catcher.smtp_address,
                                   catcher.maildir)
                return self._send(200, page.encode(), "text/html; charset=utf-8",
                                  [("Cache-Control", "no-store")])
            if path == "/messages.json":
                body = json.dumps(catcher.web_messages(), ensure_ascii=False).encode()
                return self._send(200, body, "application/json; charset=utf-8",
                                  [("Cache-Control", "no-cache")])
            parts = path.split("/")
            if len(parts) == 3 and parts[1] == "body":
                text = catcher.body(unquote(parts[2]))
                if text is None:
                    return self._error(404, "no such message")
                # text/plain with nosniff: shown as text, never rendered.
                return self._send(200, text.encode("utf-8", "surrogateescape"),
                                  "text/plain; charset=utf-8", [("Cache-Control", "no-store")])
            if len(parts) == 4 and parts[1] == "attachment" and parts[3].isdigit():
                found = catcher.attachment(unquote(parts[2]), int(parts[3]))
                if found is None:
                    return self._error(404, "no such attachment")
                filename, _content_type, data = found
                # Always a download, never rendered: the content is whatever the mail held.
                return self._send(200, data, "application/octet-stream",
                                  [("Content-Disposition", _content_disposition(filename)),
                                   ("Cache-Control", "no-store")])
            return self._error(404, "not found: " + quote(path))

    return Handler


# --------------------------------------------------------------------------- the catcher

class Catcher:
    """An SMTP server and a web page on loopback over one Maildir.

    Port 0 means any free port; after start(), smtp_port and http_port are the bound ones.
    auth: None (AUTH optional, any credentials accepted) or (user, password) (AUTH PLAIN or
    LOGIN with exactly these, required before MAIL). tls_context: an ssl server context to
    offer STARTTLS with; AUTH is then accepted only after STARTTLS. on_message(summary) is
    called from the SMTP thread after each mail is stored. After each mail, the oldest mails
    are deleted from the Maildir until at most max_messages files and max_bytes bytes remain
    (a mail bigger than max_bytes is refused with 552 before it is stored)."""

    def __init__(self, maildir, host="127.0.0.1", smtp_port=DEFAULT_SMTP_PORT,
                 http_port=DEFAULT_HTTP_PORT, auth=None, tls_context=None, on_message=None,
                 lan=False, max_messages=DEFAULT_MAX_MESSAGES, max_bytes=DEFAULT_MAX_BYTES):
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be at least 1")
        self.maildir = Path(maildir)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        # lan=True: `make hwtest`, where a real board on the LAN must reach the catcher.
        self.host = host if lan else loopback_host(host)
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.auth = auth
        self.tls_context = tls_context
        self.on_message = on_message
        self._lock = threading.Lock()
        self._cache = {}  # Maildir key -> summary (bounded: parse_message)
        self._mailbox = None
        self._controller = None
        self._smtp_sock = None
        self._http = None
        self._http_thread = None

    @property
    def smtp_address(self):
        return "%s:%d" % (_url_host(self.host), self.smtp_port)

    @property
    def web_url(self):
        return "http://%s:%d/" % (_url_host(self.host), self.http_port)

    # -- lifecycle

    def _open_maildir(self):
        import mailbox

        path = self.maildir
        if path.exists() and not path.is_dir():
            raise ValueError("%s is not a folder" % path)
        if path.is_dir() and any(path.iterdir()) and not (path / "new").is_dir():
            raise ValueError("%s is a folder with files but not a Maildir (no new/)" % path)
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._mailbox = mailbox.Maildir(str(path), factory=None, create=False)

    def start(self):
        """Open the Maildir, bind both ports, serve. OSError if a port is taken."""
        import logging
        import socket
        from http.server import ThreadingHTTPServer

        mail_log = logging.getLogger("mail.log")  # aiosmtpd's logger
        for log_filter in (_quiet_aiosmtpd_deprecation, _one_escaped_line):
            if log_filter not in mail_log.filters:
                mail_log.addFilter(log_filter)
        self._open_maildir()
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.smtp_port))
            self.smtp_port = sock.getsockname()[1]

            catcher = self

            class WebServer(ThreadingHTTPServer):
                address_family = _family(self.host)
                daemon_threads = True

                def server_bind(self):
                    # HTTPServer's own server_bind asks DNS for the host's name: not needed.
                    import socketserver

                    socketserver.TCPServer.server_bind(self)
                    self.server_name, self.server_port = catcher.host, self.server_address[1]

            self._http = WebServer((self.host, self.http_port), None, bind_and_activate=True)
            self.http_port = self._http.server_address[1]
            self._http.RequestHandlerClass = _handler_class(self)
            self._smtp_sock = sock
            self._controller = self._make_controller(sock)
            self._controller.start()
        except BaseException:
            sock.close()
            if self._http is not None:
                self._http.server_close()
                self._http = None
            self._controller = self._smtp_sock = None
            raise
        self._http_thread = threading.Thread(target=self._http.serve_forever,
                                             kwargs={"poll_interval": 0.1},
                                             name="microsmtp-catcher-http", daemon=True)
        self._http_thread.start()
        return self

    def _make_controller(self, sock):
        from aiosmtpd.controller import Controller

        class BoundController(Controller):
            # aiosmtpd 1.4's Controller binds host:port itself and then connects to that
            # port to check it is up, so it cannot take port 0; serving a socket bound
            # beforehand gives any free port with no window for another process to take it.
            def _create_server(self):
                return self.loop.create_server(self._factory_invoker, sock=sock)

        return BoundController(
            _SMTPHandler(self), hostname=self.host, port=self.smtp_port,
            server_hostname="localhost", ident="microsmtp catcher",
            authenticator=self._authenticate, auth_require_tls=self.tls_context is not None,
            tls_context=self.tls_context, require_starttls=False, enable_SMTPUTF8=True,
            data_size_limit=min(SMTP_SIZE_LIMIT, self.max_bytes))

    def stop(self):
        """Stop both servers; safe to call twice or after a failed start."""
        if self._controller is not None:
            try:
                self._controller.stop()
            finally:
                self._controller = None
        if self._smtp_sock is not None:
            self._smtp_sock.close()
            self._smtp_sock = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- SMTP side

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        import secrets

        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if self.auth is None:
            return AuthResult(success=True, auth_data=auth_data)
        user, password = (s.encode() for s in self.auth)
        ok = (secrets.compare_digest(auth_data.login, user)
              & secrets.compare_digest(auth_data.password, password))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def deliver(self, raw, mail_from, rcpt_tos, peer=None, helo=None, protocol="ESMTP"):
        """Store one mail (bytes as received) in the Maildir; its key and summary."""
        from email.header import Header
        from email.utils import formatdate

        def value(text):
            text = _clean(text)
            return text if text.isascii() else Header(text, "utf-8").encode(linesep="\r\n")

        now = time.time()
        peer_ip = peer[0] if isinstance(peer, (tuple, list)) and peer else "unknown"
        trace = ("Received: from %s ([%s])\r\n\tby microsmtp-catcher with %s;\r\n\t%s\r\n"
                 "X-microsmtp-Mail-From: %s\r\nX-microsmtp-Rcpt-To: %s\r\n"
                 % (value(helo or "unknown"), value(peer_ip), protocol,
                    formatdate(now, localtime=True), value(mail_from or ""),
                    value(", ".join(rcpt_tos))))
        with self._lock:
            key = self._mailbox.add(trace.encode("ascii") + raw)
            files = self._files()
            self._evict(files, keep=key)
        path, _size, mtime = files[key]
        return key, self._summary(key, path, mtime)

    def _files(self):
        """{key: (path, size, mtime)} for every file in new/ and cur/, keyed as mailbox.Maildir
        keys them (the name up to its ':2,flags'); mtime is the delivery time."""
        found = {}
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.maildir / sub)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # moved or deleted meanwhile
                        continue
                    found[entry.name.split(":")[0]] = (entry.path, st.st_size, st.st_mtime)
        return found

    def _evict(self, files, keep):
        """Delete the oldest mails (never `keep`) until the caps hold; updates files."""
        count, total = len(files), sum(size for _, size, _ in files.values())
        for key in sorted(files, key=lambda k: (files[k][2], k)):
            if count <= self.max_messages and total <= self.max_bytes:
                break
            if key == keep:
                continue
            path, size, _ = files.pop(key)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._cache.pop(key, None)
            count, total = count - 1, total - size

    def _read(self, key):
        """The bytes of a stored mail, or None if there is no such key (any string is safe:
        it is looked up among the Maildir's names, never joined into a path)."""
        found = self._files().get(key)
        if found is None:
            return None
        try:
            with open(found[0], "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # -- reading

    def _summary(self, key, path, mtime):
        with self._lock:
            summary = self._cache.get(key)
            if summary is None:
                with open(path, "rb") as f:
                    raw = f.read()
                try:
                    summary = parse_message(raw, mtime)
                except Exception as e:  # keep listing the rest; the file stays as it is
                    summary = {"time": mtime, "from": "", "to": [], "envelope_from": "",
                               "attachments": [], "body": "", "body_chars": 0,
                               "subject": "(unreadable message: %s)" % _clean(str(e))[:200]}
                summary["key"] = key
                self._cache[key] = summary
            return summary

    def messages(self):
        """Every mail in the Maildir, newest first: dicts with key, time (epoch seconds),
        from, to (list), envelope_from, subject (decoded), body (the first PREVIEW_CHARS
        characters of the text; body() reads all of it), body_chars (its full length),
        attachments [(filename, content_type, size)]."""
        files = self._files()
        with self._lock:
            for gone in set(self._cache) - set(files):
                del self._cache[gone]
        found = []
        for key, (path, _size, mtime) in files.items():
            try:
                found.append(self._summary(key, path, mtime))
            except FileNotFoundError:  # removed meanwhile
                continue
        return sorted(found, key=lambda m: (m["time"], m["key"]), reverse=True)

    def web_messages(self):
        """messages() for the page and /messages.json: text time, body and attachment URLs."""
        from urllib.parse import quote

        out = []
        for m in self.messages():
            body, body_url = m["body"], None
            if m["body_chars"] > len(body):
                body_url = "/body/%s" % quote(m["key"], "")
                body += "\n[... %d more characters]" % (m["body_chars"] - len(body))
            out.append({
                "key": m["key"], "time": m["time"],
                "time_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["time"])),
                "from": m["from"], "to": m["to"], "subject": m["subject"], "body": body,
                "body_chars": m["body_chars"], "body_url": body_url,
                "attachments": [
                    {"filename": name, "content_type": ctype, "size": size,
                     "url": "/attachment/%s/%d" % (quote(m["key"], ""), i)}
                    for i, (name, ctype, size) in enumerate(m["attachments"])],
            })
        return out

    def body(self, key):
        """The whole text body of a stored mail, read from the Maildir now; None if gone."""
        raw = self._read(key)
        if raw is None:
            return None
        part = _body_part(_parse(raw))
        return _text_of(part) if part is not None else ""

    def attachment(self, key, index):
        """(filename, content_type, bytes) of a message's attachment, or None."""
        raw = self._read(key)
        if raw is None:
            return None
        msg = _parse(raw)
        parts = _attachment_parts(msg, _body_part(msg))
        if not 0 <= index < len(parts):
            return None
        part = parts[index]
        return (_filename(part, index), part.get_content_type(),
                part.get_payload(decode=True) or b"")


class _SMTPHandler:
    def __init__(self, catcher):
        self.catcher = catcher

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Checked here rather than with aiosmtpd's auth_required=True, which warns when
        # there is no TLS; the effect is the same: with --auth, no AUTH, no mail.
        if self.catcher.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if getattr(server, "_tls_protocol", None) is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            key, summary = self.catcher.deliver(raw, envelope.mail_from, envelope.rcpt_tos,
                                                session.peer, session.host_name, protocol)
        except Exception as e:  # disk full, permissions: tell the client, keep serving
            return "451 4.3.0 Could not store the message: %s" % _clean(str(e))[:200]
        if self.catcher.on_message is not None:
            try:
                self.catcher.on_message(summary)
            except Exception:
                pass
        return "250 2.0.0 OK stored as %s" % key

    async def handle_exception(self, error):
        # Without this hook aiosmtpd logs every exception with a 20-line traceback. A client
        # that aborts the TLS handshake (a board given the wrong CA) is an everyday event and
        # gets one line; anything else one line too, with the reply aiosmtpd would send.
        import logging

        from aiosmtpd.smtp import TLSSetupException

        log = logging.getLogger("mail.log")
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            reason = (getattr(cause, "reason", None) or str(cause or "")
                      or "the client closed the connection")
            hint = (" (does the client trust this certificate? a board needs the catcher's CA "
                    "as cadata)") if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason else ""
            log.warning("STARTTLS failed, TLS handshake aborted: %s%s", reason, hint)
            return "454 4.7.0 TLS handshake failed"  # aiosmtpd closes the connection anyway
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return "500 Error: (%s) %s" % (type(error).__name__, _clean(str(error))[:200])


# --------------------------------------------------------------------------- the command

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
    p.add_argument("--port", type=_port, default=DEFAULT_SMTP_PORT,
                   help="SMTP port (default %(default)s; 0: any free port)")
    p.add_argument("--http", type=_port, default=DEFAULT_HTTP_PORT, metavar="PORT",
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
    p.add_argument("--max-messages", type=_positive, default=DEFAULT_MAX_MESSAGES,
                   metavar="N", help="mails kept in the Maildir; the oldest are deleted "
                   "first (default %(default)s)")
    p.add_argument("--max-bytes", type=_size, default=DEFAULT_MAX_BYTES, metavar="SIZE",
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
        _escape(summary["envelope_from"] or summary["from"]) or "<>",
        _escape(", ".join(summary["to"])), _escape(summary["subject"]) or "(no subject)")


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
