"""The catcher's web side: a JSON API over the Maildir and one static page that renders it.

The server renders no mail into HTML: it sends a fixed shell (static/index.html) with its CSS
and script as files, and JSON; static/catcher.js builds the page with DOM calls and textContent
only. The Content-Security-Policy allows scripts and styles from the catcher's own files only
(nothing inline), and Trusted Types make any string reaching an HTML sink (innerHTML, ...) an
error. Mail content is served only as JSON, text/plain (raw source, whole body) or a download
(attachments), always with nosniff; the one exception is a mail's HTML part, which the page
shows in an <iframe sandbox> from its own URL, under a policy of its own (HTML_PART_CSP): no
scripts, no forms, no plugins, no loads from anywhere but the catcher's own URLs for this
mail's inline images, no navigating the page around it. The API is documented in
docs/CATCHER.md."""

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, unquote

from .store import VIEW_CHARS

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
       "require-trusted-types-for 'script'; trusted-types 'none'")
# A mail's HTML part. `sandbox` (every flag off, as the page's iframe sets too) gives it an
# origin of its own, no scripts, no forms, no popups and no navigating the top page, also
# when it is opened in its own tab; default-src 'none' blocks every load (remote images,
# fonts, CSS @import, frames, media, prefetch) but inline styles, data: images and this
# mail's inline images, named by the catcher's full URL for them: 'self' would mean the
# sandbox's own origin, which matches nothing. frame-ancestors: only the catcher's page may
# frame it. cid: is not allowed: every cid: the catcher can show is rewritten to its URL.
HTML_PART_CSP = ("default-src 'none'; img-src data: %(images)s; style-src 'unsafe-inline'; "
                 "base-uri 'none'; form-action 'none'; frame-ancestors %(origin)s; sandbox")
# An inline image: shown by the HTML part's <img>, or opened on its own (an SVG runs no
# script either way).
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
IMAGE_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]{0,100}")
CID_URL = re.compile(r"cid:([^\s\"'<>()\\]+)", re.IGNORECASE)  # RFC 2392: cid:content-id
STATIC = {  # file in static/ -> Content-Type
    "index.html": "text/html; charset=utf-8",
    "catcher.css": "text/css; charset=utf-8",
    "catcher.js": "text/javascript; charset=utf-8",
}
MAX_POST_BODY = 4096  # bytes a POST may carry (the API's POSTs need none)


def _static(name):
    from importlib.resources import files

    return files(__package__).joinpath("static", name).read_bytes()


def _key_url(prefix, key, suffix=""):
    return prefix + quote(key, "") + suffix


def inline_html(html, images, key):
    """The HTML part with each cid: URL of an inline image (images: {content_id: index})
    replaced by the catcher's URL for that image; other cid: URLs are left as they are
    (the HTML part's policy loads none)."""
    from urllib.parse import unquote as url_unquote

    def replace(match):
        index = images.get(url_unquote(match.group(1)))
        return match.group(0) if index is None else _key_url("/inline/", key, "/%d" % index)

    return CID_URL.sub(replace, html)


def _more(text, total):
    """`text`, the start of `total` characters, with a note of how many are left out."""
    return text if total <= len(text) else text + "\n[... %d more characters]" % (
        total - len(text))


def web_message(m):
    """A summary as the API gives it: text time, the body's note, every URL of the mail."""
    key = m["key"]
    return {
        "key": key, "time": m["time"],
        "time_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["time"])),
        "from": m["from"], "to": m["to"], "envelope_from": m["envelope_from"],
        "header_to": m["header_to"], "cc": m["cc"], "bcc": m["bcc"],
        "subject": m["subject"], "priority": m["priority"],
        "body": _more(m["body"], m["body_chars"]), "body_chars": m["body_chars"],
        "body_url": _key_url("/body/", key) if m["body_chars"] > len(m["body"]) else None,
        "url": _key_url("/message/", key),
        "json_url": _key_url("/messages/", key, ".json"),
        "raw_url": _key_url("/raw/", key),
        "delete_url": _key_url("/delete/", key),
        "attachments": [
            {"filename": name, "content_type": ctype, "size": size,
             "url": _key_url("/attachment/", key, "/%d" % i)}
            for i, (name, ctype, size) in enumerate(m["attachments"])],
        "has_html": m["has_html"],
        "html_url": _key_url("/html/", key) if m["has_html"] else None,
        "inline_images": [
            {"content_id": cid, "content_type": ctype, "size": size, "attachment": i,
             "url": _key_url("/inline/", key, "/%d" % i)}
            for i, cid, ctype, size in m["inline_images"]],
    }


def web_message_full(m):
    """One mail for its own view: web_message() with headers and the raw source's start."""
    out = web_message(m)
    out.update(headers=[list(h) for h in m["headers"]], headers_total=m["headers_total"],
               raw=m["raw"], raw_size=m["raw_size"], raw_complete=m["raw_size"] <= VIEW_CHARS)
    return out


def _content_disposition(filename):
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (fallback, quote(filename, ""))


def handler_class(catcher):
    """A BaseHTTPRequestHandler subclass serving `catcher` (a Catcher, already bound)."""
    assets = {name: _static(name) for name in STATIC}
    allowed_hosts = {"%s:%d" % (name, catcher.http_port) for name in
                     ("127.0.0.1", "localhost", "[::1]", catcher.url_host)}
    allowed_origins = {"http://" + host for host in allowed_hosts}

    class Handler(BaseHTTPRequestHandler):
        server_version = "microsmtp-catcher"
        sys_version = ""
        timeout = 10  # a client that stalls does not hold a thread forever
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

        def _send(self, status, body, content_type, extra=(), csp=CSP, corp="same-origin"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cross-Origin-Resource-Policy", corp)
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status, value, cache="no-store"):
            body = json.dumps(value, ensure_ascii=False).encode()
            self._send(status, body, "application/json; charset=utf-8",
                       [("Cache-Control", cache)])

        def _error(self, status, text, extra=()):
            self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8",
                       [("Cache-Control", "no-store"), *extra])

        def _foreign_host(self):
            # A page on another site that DNS-rebinds its name to 127.0.0.1 sends its own
            # name as Host: refuse it, so the alerts stay readable only from this machine.
            host = self.headers.get("Host")
            if host is not None and host.lower() not in allowed_hosts:
                self._error(421, "unexpected Host header")
                return True
            return False

        def _route(self):
            """(kind, argument) of the request's path: the one place URLs are taken apart.
            Keys come percent-encoded in one segment and are only ever looked up."""
            path, _, query = self.path.partition("?")
            parts = path.split("/")
            if path in ("/", "/index.html"):
                return "page", None
            if path == "/messages.json":
                q = parse_qs(query).get("q", [""])[0]
                return "list", q
            if path == "/status.json":
                return "status", None
            if path == "/clear":
                return "clear", None
            if len(parts) == 3 and parts[1] == "static" and parts[2] in STATIC:
                return "static", parts[2]
            if len(parts) == 3 and parts[1] == "messages" and parts[2].endswith(".json"):
                return "json", unquote(parts[2][:-len(".json")])
            if len(parts) == 3 and parts[1] in ("message", "raw", "body", "delete", "html"):
                return parts[1], unquote(parts[2])
            # An index is ASCII digits ("²".isdigit() too, and int() refuses it), bounded.
            if (len(parts) == 4 and parts[1] in ("attachment", "inline")
                    and parts[3].isascii() and parts[3].isdigit() and len(parts[3]) < 10):
                return parts[1], (unquote(parts[2]), int(parts[3]))
            return None, path

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            if self._foreign_host():
                return
            kind, arg = self._route()
            if kind in ("delete", "clear"):
                return self._error(405, "use POST", [("Allow", "POST")])
            if kind == "page":
                return self._send(200, assets["index.html"], STATIC["index.html"],
                                  [("Cache-Control", "no-cache")])
            if kind == "message":  # the same page; its script shows the one message
                status = 200 if catcher.store.size(arg) is not None else 404
                return self._send(status, assets["index.html"], STATIC["index.html"],
                                  [("Cache-Control", "no-cache")])
            if kind == "static":
                return self._send(200, assets[arg], STATIC[arg], [("Cache-Control", "no-cache")])
            if kind == "status":
                return self._json(200, catcher.status())
            if kind == "list":
                return self._json(200, [web_message(m) for m in catcher.messages(arg)],
                                  cache="no-cache")
            if kind == "json":
                m = catcher.store.message(arg)
                if m is None:
                    return self._error(404, "no such message")
                return self._json(200, web_message_full(m))
            if kind == "raw":
                raw = catcher.store.read(arg)
                if raw is None:
                    return self._error(404, "no such message")
                # text/plain with nosniff: shown as text, never rendered. The bytes as stored.
                return self._send(200, raw, "text/plain; charset=utf-8",
                                  [("Cache-Control", "no-store")])
            if kind == "body":
                text = catcher.body(arg)
                if text is None:
                    return self._error(404, "no such message")
                return self._send(200, text.encode("utf-8", "surrogateescape"),
                                  "text/plain; charset=utf-8", [("Cache-Control", "no-store")])
            if kind == "attachment":
                found = catcher.attachment(*arg)
                if found is None:
                    return self._error(404, "no such attachment")
                filename, _content_type, data = found
                # Always a download, never rendered: the content is whatever the mail held.
                return self._send(200, data, "application/octet-stream",
                                  [("Content-Disposition", _content_disposition(filename)),
                                   ("Cache-Control", "no-store")])
            if kind == "html":
                return self._html_part(arg)
            if kind == "inline":
                found = catcher.store.inline_image(*arg)
                if found is None:
                    return self._error(404, "no such inline image")
                content_type, data = found
                # Loaded by the HTML part's sandbox, whose origin is its own: a same-origin
                # resource policy would block it there. The mail's key is in the URL.
                return self._send(200, data, content_type if IMAGE_TYPE.fullmatch(content_type)
                                  else "application/octet-stream",
                                  [("Cache-Control", "no-store")], csp=IMAGE_CSP,
                                  corp="cross-origin")
            return self._error(404, "not found: " + quote(arg))

        def _origin(self):
            """This server's origin as the browser names it (the Host it sent, one of ours:
            _foreign_host() refused any other)."""
            host = self.headers.get("Host")
            return "http://" + (host.lower() if host else "%s:%d" % (catcher.url_host,
                                                                      catcher.http_port))

        def _html_part(self, key):
            found = catcher.store.html(key)
            if found is None:
                return self._error(404, "no such message, or it has no HTML part")
            html, images = found
            origin = self._origin()
            csp = HTML_PART_CSP % {"origin": origin,
                                   "images": origin + _key_url("/inline/", key, "/")}
            body = inline_html(html, images, key).encode("utf-8", "surrogateescape")
            return self._send(200, body, "text/html; charset=utf-8",
                              [("Cache-Control", "no-store")], csp=csp)

        def do_POST(self):
            if self._foreign_host() or not self._read_post_body():
                return
            # Another site's page can make a browser POST here (a form needs no CORS
            # preflight); browsers say where such a request comes from, so refuse it.
            origin = self.headers.get("Origin")
            site = self.headers.get("Sec-Fetch-Site")
            if (origin is not None and origin not in allowed_origins) or (
                    site is not None and site not in ("same-origin", "none")):
                return self._error(403, "cross-site request refused")
            kind, arg = self._route()
            if kind == "delete":
                if not catcher.delete(arg):
                    return self._error(404, "no such message")
                return self._json(200, {"deleted": 1})
            if kind == "clear":
                return self._json(200, {"deleted": catcher.clear()})
            if kind is not None:
                return self._error(405, "use GET", [("Allow", "GET, HEAD")])
            return self._error(404, "not found: " + quote(arg))

        def _read_post_body(self):
            """Read and drop a POST's body (keeping the connection in step); False after an
            error reply if it is chunked or bigger than MAX_POST_BODY."""
            if self.headers.get("Transfer-Encoding") is not None:
                self.close_connection = True
                self._error(411, "send a Content-Length")
                return False
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit() or int(length) > MAX_POST_BODY:
                self.close_connection = True
                self._error(413, "a POST here carries at most %d bytes" % MAX_POST_BODY)
                return False
            self.rfile.read(int(length))
            return True

    return Handler
