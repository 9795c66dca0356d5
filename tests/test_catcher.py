"""The catcher (`microsmtp catch`): SMTP in, a Maildir file out, /messages.json and the page,
attachments as downloads, Cc and Bcc, the HTML part and its inline images, AUTH, the command
itself (start, a log line per mail, SIGTERM), and the page in a real headless Chromium
(Debian's `chromium`, installed by `make test`): the decoded subject is rendered, mail content
is escaped, the page refreshes itself when mail arrives while it is open, and a mail's HTML
part runs no script and loads nothing remote."""

import base64
import email
import email.policy
import fcntl
import json
import os
import re
import select
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import microsmtp
import pytest
import servers
from microsmtp_host import catcher as catcher_module
from microsmtp_host import cli
from microsmtp_host.catcher import Catcher
from microsmtp_host.shim import net

SENDER = "boiler@example.org"
RCPT = "oncall@example.org"
SUBJECT = "Boiler at 92 °C – Überhitzung ☃"
INJECTION = "<img src=x onerror=alert(1)> & <script>alert(2)</script>"
TIMEOUTS = {"connect": 5, "greeting": 5, "envelope": 5, "message": 10, "quit": 5}
ROOT = Path(__file__).resolve().parents[1]
HOST_DIR = ROOT / "host"


def main(argv, monkeypatch):
    """cli.main with only `catch` wired: these tests need no other command's module."""
    monkeypatch.setattr(cli, "COMMANDS", tuple(c for c in cli.COMMANDS if c[0] == "catch"))
    return cli.main(argv)


@pytest.fixture
def catcher(tmp_path):
    c = Catcher(tmp_path / "maildir", smtp_port=0, http_port=0)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def http_get(catcher, path):
    """(status, headers, body) of a GET on the catcher's web server."""
    try:
        with urllib.request.urlopen(catcher.web_url.rstrip("/") + path, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def firmware_send(port, subject, body, priority=microsmtp.PRIORITY_NORMAL, **kw):
    """One mail the way a board sends it: the firmware code through the CPython shim."""
    client = microsmtp.Client("127.0.0.1", port, from_address=SENDER, tls=microsmtp.TLS_NONE,
                              net=net, timeouts=TIMEOUTS, **kw)
    client.send(RCPT, subject, body, priority)


def smtp_send(port, msg, to_addrs=None, **login):
    """msg over SMTP; to_addrs: the envelope recipients (default: To, Cc and Bcc)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        if login:
            s.login(login["user"], login["password"])
        s.send_message(msg, to_addrs=to_addrs)


def stored_files(maildir):
    return sorted(p for sub in ("new", "cur") for p in (maildir / sub).iterdir())


def _reap(proc):
    """A `microsmtp catch` subprocess a test started: killed if still running, pipes closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def attachment_mail(subject="Daily log", data=b"\x00\x01binary\xff" * 100,
                    filename="boiler-log 2024 ä.bin"):
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RCPT
    msg["Subject"] = subject
    msg.set_content("Log attached.\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream",
                       filename=filename)
    return msg


def tiny_png():
    """A valid 2x2 red PNG: a browser that shows it reports naturalWidth 2."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\0" + b"\xff\0\0" * 2 for _ in range(2))  # filter 0, two RGB pixels
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = tiny_png()
CC = '"Night shift, boiler room" <night@example.org>'
BCC = "boss@example.org"  # an envelope recipient in neither To nor Cc
CHART_CID = "chart.1@example.org"
LOG_CID = "log.1@example.org"  # a Content-ID on a part that is no image: never inlined
LOG_DATA = b"\x00\x01log\xff" * 50


def rich_mail(subject="Boiler chart", head="", body=""):
    """Text and an HTML alternative with an inline image (multipart/related), a binary
    attachment with a Content-ID of its own, and a Cc: what a rich alert looks like. head and
    body: more HTML for the HTML part's <head> and <body>."""
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RCPT
    msg["Cc"] = CC
    msg["Subject"] = subject
    msg.set_content("Boiler temperature: 92 °C; the chart is in the HTML part.\n")
    msg.add_alternative(
        '<!doctype html><html><head><meta charset="utf-8"><title></title>%s</head><body>'
        '<h1>Boiler at 92 °C</h1><p><img id="chart" src="cid:%s" alt="chart"></p>'
        '<p><img id="log" src="cid:%s" alt="not an image"></p>'
        '<p><img id="unknown" src="CID:no-such-part@example.org" alt="unknown"></p>%s'
        '</body></html>' % (head, CHART_CID, LOG_CID, body), subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<%s>" % CHART_CID)
    msg.add_attachment(LOG_DATA, maintype="application", subtype="octet-stream",
                       filename="boiler.log", cid="<%s>" % LOG_CID)
    return msg


def csp_directives(value):
    """{directive: its sources as one string} of a Content-Security-Policy header."""
    return {name: rest.strip() for name, _, rest in
            (d.strip().partition(" ") for d in value.split(";") if d.strip())}


# --- SMTP in, Maildir out, JSON and page -------------------------------------------------

def test_firmware_mail_is_one_maildir_file_and_listed(catcher):
    firmware_send(catcher.smtp_port, SUBJECT, "Boiler temperature: 92 °C\nstill rising\n")

    files = stored_files(catcher.maildir)
    assert len(files) == 1 and files[0].parent.name == "new"
    stored = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert stored["Subject"] == SUBJECT
    assert stored["X-microsmtp-Mail-From"] == SENDER
    assert stored["X-microsmtp-Rcpt-To"] == RCPT
    assert "92 °C" in stored.get_body(("plain",)).get_content()

    [m] = catcher.messages()
    assert (m["subject"], m["to"], m["attachments"]) == (SUBJECT, [RCPT], [])
    assert m["envelope_from"] == SENDER and SENDER in m["from"]
    assert m["body"].replace("\r\n", "\n") == "Boiler temperature: 92 °C\nstill rising\n"
    assert abs(m["time"] - time.time()) < 60

    status, headers, body = http_get(catcher, "/messages.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    [listed] = json.loads(body)
    assert listed["subject"] == SUBJECT and listed["key"] == m["key"]


def test_newest_first_and_maildir_is_the_truth(catcher):
    for i in range(3):
        firmware_send(catcher.smtp_port, "alert %d" % i, "body %d" % i)
        time.sleep(0.01)  # distinct delivery times
    assert [m["subject"] for m in catcher.messages()] == ["alert 2", "alert 1", "alert 0"]
    # A mail deleted from the Maildir (by a mail client, by hand) is gone from the page too.
    oldest = min(stored_files(catcher.maildir), key=lambda p: p.stat().st_mtime)
    oldest.unlink()
    _, _, body = http_get(catcher, "/messages.json")
    assert [m["subject"] for m in json.loads(body)] == ["alert 2", "alert 1"]


def test_attachment_download_link_returns_the_bytes(catcher):
    data = bytes(range(256)) * 40
    smtp_send(catcher.smtp_port, attachment_mail(data=data))

    [m] = catcher.messages()
    assert m["attachments"] == [("boiler-log 2024 ä.bin", "application/octet-stream", len(data))]
    assert m["body"].strip() == "Log attached."
    [listed] = json.loads(http_get(catcher, "/messages.json")[2])
    [att] = listed["attachments"]  # the page's link to it: test_chromium_views below

    status, headers, body = http_get(catcher, att["url"])
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''boiler-log%202024%20%C3%A4.bin" in headers["Content-Disposition"]

    assert http_get(catcher, att["url"][:-1] + "7")[0] == 404
    assert http_get(catcher, "/attachment/..%2F..%2Fetc%2Fpasswd/0")[0] == 404


def test_cc_bcc_html_part_and_inline_images(catcher):
    smtp_send(catcher.smtp_port, rich_mail(),
              to_addrs=[RCPT, "Night@Example.org", BCC])  # Cc's address in another case
    smtp_send(catcher.smtp_port, attachment_mail(subject="plain only"))
    keys = {m["subject"]: m["key"] for m in catcher.messages()}
    key = urllib.parse.quote(keys["Boiler chart"], "")
    listed_mails = {m["subject"]: m for m in json.loads(http_get(catcher, "/messages.json")[2])}
    m = listed_mails["Boiler chart"]
    assert m["to"] == [RCPT, "Night@Example.org", BCC]  # the envelope, as before
    assert m["header_to"] == [RCPT] and m["cc"] == [CC]
    assert m["bcc"] == [BCC]  # received, but named in neither To nor Cc
    assert m["body"].strip() == "Boiler temperature: 92 °C; the chart is in the HTML part."
    assert m["has_html"] is True and m["html_url"] == "/html/" + key
    assert m["inline_images"] == [{"content_id": CHART_CID, "content_type": "image/png",
                                   "size": len(PNG), "attachment": 0,
                                   "url": "/inline/%s/0" % key}]
    # Inline images are still attachments, downloadable as before.
    assert [(a["filename"], a["content_type"], a["size"]) for a in m["attachments"]] == [
        ("attachment-1", "image/png", len(PNG)),
        ("boiler.log", "application/octet-stream", len(LOG_DATA))]
    assert http_get(catcher, m["attachments"][0]["url"])[2] == PNG
    assert http_get(catcher, m["attachments"][1]["url"])[2] == LOG_DATA
    one = json.loads(http_get(catcher, m["json_url"])[2])
    for field in ("header_to", "cc", "bcc", "has_html", "html_url", "inline_images"):
        assert one[field] == m[field], field
    html_only = EmailMessage()
    html_only["From"], html_only["To"], html_only["Subject"] = SENDER, RCPT, "HTML only"
    html_only.set_content("<p>Boiler <b>hot</b></p>", subtype="html")
    smtp_send(catcher.smtp_port, html_only)
    [alone] = [m for m in json.loads(http_get(catcher, "/messages.json")[2])
               if m["subject"] == "HTML only"]
    # A lone HTML part: its source is the text body, as before, and it is the HTML part.
    assert alone["has_html"] is True and alone["body"].strip() == "<p>Boiler <b>hot</b></p>"
    assert (alone["cc"], alone["bcc"], alone["inline_images"]) == ([], [], [])
    assert http_get(catcher, alone["html_url"])[2].strip() == b"<p>Boiler <b>hot</b></p>"
    plain = listed_mails["plain only"]
    assert (plain["cc"], plain["bcc"], plain["has_html"], plain["html_url"],
            plain["inline_images"]) == ([], [], False, None, [])
    assert listed(catcher, "night@example.org") == ["Boiler chart"]  # Cc is searched

    # The HTML part: its own URL, text/html under a policy of its own.
    status, headers, body = http_get(catcher, m["html_url"])
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    origin = catcher.web_url.rstrip("/")
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp == {"default-src": "'none'", "img-src": "data: %s/inline/%s/" % (origin, key),
                   "style-src": "'unsafe-inline'", "base-uri": "'none'",
                   "form-action": "'none'", "frame-ancestors": origin, "sandbox": ""}
    html = body.decode()
    # cid: of the inline image -> the catcher's URL for it; a cid: of a part that is no
    # image, or of no part at all, stays as it was (and the policy loads neither).
    assert 'id="chart" src="/inline/%s/0"' % key in html
    assert 'src="cid:%s"' % LOG_CID in html and 'src="CID:no-such-part@example.org"' in html
    assert "Boiler at 92 °C" in html

    status, headers, body = http_get(catcher, m["inline_images"][0]["url"])
    assert status == 200 and body == PNG and headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in csp_directives(headers["Content-Security-Policy"])

    for path in ("/inline/%s/1" % key,  # the binary attachment: a Content-ID, but no image
                 "/inline/%s/2" % key, "/inline/%s/99999999999" % key,
                 "/inline/..%2F..%2Fetc%2Fpasswd/0", "/html/" + urllib.parse.quote(
                     keys["plain only"], ""), "/html/no-such-key", "/html/..%2Fnew"):
        assert http_get(catcher, path)[0] == 404, path
    # A digit that is not ASCII ("²" as one Latin-1 byte, as http.server reads a request
    # line) is no index: 404, not a failed int().
    for kind in ("inline", "attachment"):
        with socket.create_connection(("127.0.0.1", catcher.http_port), timeout=10) as s:
            s.sendall(b"GET /%s/%s/\xb2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Connection: close\r\n\r\n" % (kind.encode(), key.encode(),
                                                        catcher.http_port))
            assert s.makefile("rb").readline().startswith(b"HTTP/1.1 404 "), kind


def test_cc_and_bcc_are_bounded_and_clean(catcher):
    msg = attachment_mail(subject="many recipients")
    msg.replace_header("To", '"Night \x1b[2J shift" <%s>' % RCPT)
    msg["Cc"] = ", ".join(['"%s" <cc000@example.org>' % ("boiler room " * 200).strip()]
                          + ["cc%03d@example.org" % i for i in range(1, 150)])
    envelope = [RCPT] + ["bcc%03d@example.org" % i for i in range(150)]
    smtp_send(catcher.smtp_port, msg, to_addrs=envelope)
    [m] = json.loads(http_get(catcher, "/messages.json")[2])
    assert len(m["cc"]) == len(m["bcc"]) == catcher_module.MAX_LISTED
    assert m["bcc"][0] == "bcc000@example.org" and m["cc"][1] == "cc001@example.org"
    assert len(m["cc"][0]) == catcher_module.HEADER_CHARS  # one address, cut
    [to] = m["header_to"]
    assert RCPT in to and "\x1b" not in to  # one printable line


def test_cid_urls_are_rewritten_only_for_inline_images():
    from microsmtp_host.catcher.web import inline_html

    html = ('<img src="cid:a%40b"><img src=\'CID:a@b\'><img src="cid:c@d">'
            '<div style="background:url(cid:a@b)">cid:x</div>')
    assert inline_html(html, {"a@b": 3}, "k y") == (
        '<img src="/inline/k%20y/3"><img src=\'/inline/k%20y/3\'><img src="cid:c@d">'
        '<div style="background:url(/inline/k%20y/3)">cid:x</div>')


def hostile_mail():
    msg = EmailMessage()
    msg["From"] = '"<b>Mallory</b>" <mallory@example.org>'
    msg["To"] = RCPT
    msg["Subject"] = INJECTION
    msg.set_content("</pre><script>alert(3)</script>\n")
    return msg


def test_page_is_a_static_shell_with_a_strict_csp(catcher):
    # One renderer: the server sends a fixed shell and JSON; the page's own script draws the
    # mail with textContent (checked in Chromium below). No mail content is in the HTML at all.
    smtp_send(catcher.smtp_port, hostile_mail())

    status, headers, body = http_get(catcher, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "alert" not in page and "Mallory" not in page and "mallory" not in page
    assert page == (HOST_DIR / "microsmtp_host/catcher/static/index.html").read_text()
    # Nothing inline for the CSP to allow: one script and one stylesheet, both files.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/catcher.js" defer>']
    assert re.findall(r"<link[^>]*>", page) == [
        '<link rel="stylesheet" href="/static/catcher.css">']
    assert "<style" not in page and " style=" not in page and not re.search(r" on\w+=", page)
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "form-action 'none'", "frame-ancestors 'none'",
                      "require-trusted-types-for 'script'", "trusted-types 'none'"):
        assert directive in csp.split("; "), directive
    assert "unsafe" not in csp and "http:" not in csp and "*" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"

    for path, ctype in (("/static/catcher.js", "text/javascript; charset=utf-8"),
                        ("/static/catcher.css", "text/css; charset=utf-8")):
        status, headers, asset = http_get(catcher, path)
        assert status == 200 and headers["Content-Type"] == ctype
        assert headers["Content-Security-Policy"] == csp
        assert b"http:" not in asset and b"https:" not in asset  # no external resources
    script = re.sub(r"//[^\n]*", "", http_get(catcher, "/static/catcher.js")[2].decode())
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "document.write" not in script and "eval(" not in script
    assert http_get(catcher, "/static/../store.py")[0] == 404
    assert http_get(catcher, "/static/store.py")[0] == 404

    # The mail itself only as JSON data (and text/plain for the raw source), never as HTML.
    status, headers, body = http_get(catcher, "/messages.json")
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    [m] = json.loads(body)
    assert m["subject"] == INJECTION and "<b>Mallory</b>" in m["from"]
    status, headers, raw = http_get(catcher, m["raw_url"])
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_web_server_refuses_foreign_host_headers(catcher):
    # What a DNS-rebinding page would send: its own name for 127.0.0.1.
    req = urllib.request.Request(catcher.web_url + "messages.json",
                                 headers={"Host": "evil.example:%d" % catcher.http_port})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    e.value.close()
    assert e.value.code == 421


# --- the JSON API: priority, search, one message, delete ----------------------------------

def http_post(catcher, path, body=b"", headers=None):
    """(status, headers, body) of a POST on the catcher's web server."""
    req = urllib.request.Request(catcher.web_url.rstrip("/") + path, data=body,
                                 headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def listed(catcher, query=None):
    path = "/messages.json" + ("?q=" + urllib.parse.quote(query) if query is not None else "")
    status, _, body = http_get(catcher, path)
    assert status == 200
    return [m["subject"] for m in json.loads(body)]


def test_priority_is_read_from_x_priority_importance_and_priority(catcher):
    firmware_send(catcher.smtp_port, "high", "x", priority=microsmtp.PRIORITY_HIGH)
    firmware_send(catcher.smtp_port, "low", "x", priority=microsmtp.PRIORITY_LOW)
    firmware_send(catcher.smtp_port, "normal", "x")
    for subject, name, value in (("importance", "Importance", "High"),
                                 ("x-priority 2", "X-Priority", "2 (High)"),
                                 ("urgent", "Priority", "urgent"),
                                 ("nonsense", "X-Priority", "<b>9</b>")):
        msg = attachment_mail(subject=subject)
        msg[name] = value
        smtp_send(catcher.smtp_port, msg)
    got = {m["subject"]: m["priority"] for m in json.loads(http_get(catcher, "/messages.json")[2])}
    assert got == {"high": "high", "low": "low", "normal": "normal", "importance": "high",
                   "x-priority 2": "high", "urgent": "high", "nonsense": "normal"}


def test_search_over_subject_sender_and_recipients(catcher):
    firmware_send(catcher.smtp_port, SUBJECT, "hot")
    msg = attachment_mail(subject="Daily log")
    msg.replace_header("From", "Logger <logger@example.net>")
    msg.replace_header("To", "ops@example.com")
    smtp_send(catcher.smtp_port, msg)
    smtp_send(catcher.smtp_port, hostile_mail())

    assert len(listed(catcher)) == len(listed(catcher, "")) == 3
    assert listed(catcher, "überhitzung") == [SUBJECT]  # the decoded subject, any case
    assert listed(catcher, "LOGGER@example") == ["Daily log"]  # the sender
    assert listed(catcher, "ops@example.com") == ["Daily log"]  # a recipient (envelope)
    assert listed(catcher, "oncall@example.org") == [INJECTION, SUBJECT]
    assert listed(catcher, "boiler 92") == [SUBJECT]  # every word, anywhere
    assert listed(catcher, "boiler log") == []
    assert listed(catcher, "<script>") == [INJECTION]
    assert listed(catcher, "Temperature") == []  # bodies are not searched
    assert listed(catcher, "x" * 10_000) == []  # a long query is cut, not an error


def test_one_message_with_headers_and_raw_source(catcher):
    firmware_send(catcher.smtp_port, SUBJECT, "Boiler temperature: 92 °C\n",
                  priority=microsmtp.PRIORITY_HIGH)
    [m] = json.loads(http_get(catcher, "/messages.json")[2])
    assert m["url"] == "/message/" + urllib.parse.quote(m["key"], "")
    [path] = stored_files(catcher.maildir)

    status, headers, body = http_get(catcher, m["json_url"])
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    one = json.loads(body)
    assert one["key"] == m["key"] and one["subject"] == SUBJECT and one["priority"] == "high"
    names = [name for name, _ in one["headers"]]
    assert names[:3] == ["Received", "X-microsmtp-Mail-From", "X-microsmtp-Rcpt-To"]
    fields = dict(one["headers"])
    assert fields["Subject"] == SUBJECT  # decoded from RFC 2047
    assert fields["X-Priority"] == "1 (Highest)" and fields["Importance"] == "high"
    assert one["headers_total"] == len(one["headers"])
    raw = path.read_bytes()
    assert one["raw_size"] == len(raw) and one["raw_complete"] is True
    assert one["raw"] == raw.decode() and "X-Priority: 1 (Highest)\r\n" in one["raw"]

    status, headers, body = http_get(catcher, one["raw_url"])
    assert status == 200 and body == raw
    assert headers["Content-Type"] == "text/plain; charset=utf-8"

    # The page for one mail is the same shell (its script draws the view); 404 if unknown.
    status, _, page = http_get(catcher, m["url"])
    assert status == 200 and page == http_get(catcher, "/")[2]
    for path in ("/message/no-such-key", "/messages/no-such-key.json", "/raw/no-such-key",
                 "/raw/..%2F..%2Fetc%2Fpasswd", "/messages/..%2Fnew.json"):
        assert http_get(catcher, path)[0] == 404, path


def test_one_message_view_is_bounded(catcher):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RCPT, "many headers"
    for i in range(150):
        msg["X-Sensor-%03d" % i] = "reading %d \x1b[2J" % i
    msg.set_content("".join("line %06d\n" % i for i in range(20_000)))  # 240 KB
    smtp_send(catcher.smtp_port, msg)
    [m] = json.loads(http_get(catcher, "/messages.json")[2])
    one = json.loads(http_get(catcher, m["json_url"])[2])
    assert len(one["headers"]) == catcher_module.MAX_LISTED < one["headers_total"]
    assert all("\x1b" not in value for _, value in one["headers"])  # one printable line each
    assert one["raw_complete"] is False and len(one["raw"]) == catcher_module.VIEW_CHARS
    assert one["raw_size"] > 240_000
    assert len(http_get(catcher, one["raw_url"])[2]) == one["raw_size"]


def test_delete_one_and_clear_all_take_a_post(catcher, tmp_path):
    for i in range(3):
        firmware_send(catcher.smtp_port, "alert %d" % i, "x")
    keys = [m["key"] for m in catcher.messages()]
    urls = [m["delete_url"] for m in json.loads(http_get(catcher, "/messages.json")[2])]

    # A GET (a link, a prefetch, an <img src>) never deletes.
    assert http_get(catcher, urls[0])[0] == 405 and http_get(catcher, "/clear")[0] == 405
    assert len(stored_files(catcher.maildir)) == 3

    status, headers, body = http_post(catcher, urls[0])
    assert status == 200 and json.loads(body) == {"deleted": 1}
    assert [m["key"] for m in catcher.messages()] == keys[1:]
    assert len(stored_files(catcher.maildir)) == 2
    assert http_post(catcher, urls[0])[0] == 404  # already gone

    # Keys are looked up among the Maildir's names, never joined into a path; a symbolic
    # link in new/ is no mail: neither listed nor deleted, nor the file it points to.
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (catcher.maildir / "new" / "link").symlink_to(outside)
    for path in ("/delete/..%2F..%2Fprecious.txt", "/delete/..", "/delete/", "/delete/link",
                 "/delete/" + urllib.parse.quote(str(outside), ""), "/delete/a/b"):
        assert http_post(catcher, path)[0] in (404, 405), path
    assert outside.read_text() == "keep me"

    # Another site's page cannot make the browser delete: its Origin is refused.
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        assert http_post(catcher, "/clear", headers=headers)[0] == 403
    assert len(catcher.messages()) == 2
    # The body of a POST is not needed, and bounded.
    assert http_post(catcher, "/clear", body=b"x" * 5000)[0] == 413
    assert len(catcher.messages()) == 2

    (catcher.maildir / "tmp" / "under-way").write_bytes(b"a delivery in progress")
    same_origin = {"Origin": catcher.web_url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    status, _, body = http_post(catcher, "/clear", headers=same_origin)
    assert status == 200 and json.loads(body) == {"deleted": 2}
    assert stored_files(catcher.maildir) == [catcher.maildir / "new" / "link"]
    assert outside.read_text() == "keep me" and catcher.messages() == []
    assert (catcher.maildir / "tmp" / "under-way").exists()
    assert json.loads(http_get(catcher, "/status.json")[2])["messages"] == 0


def test_status_json(tmp_path):
    c = Catcher(tmp_path / "md", smtp_port=0, http_port=0, auth=("alerts", "pw"),
                max_messages=7, max_bytes=12345)
    with c:
        firmware_send(c.smtp_port, "one", "x", username="alerts", password="pw",
                      allow_plaintext_auth=True)
        status = json.loads(http_get(c, "/status.json")[2])
    assert status == {"smtp": c.smtp_address, "web": c.web_url, "maildir": str(c.maildir),
                      "messages": 1, "max_messages": 7, "max_bytes": 12345,
                      "auth_required": True, "starttls": False}


def test_the_package_ships_the_page():
    # A wheel holds only the packages pyproject.toml lists and the data files it names.
    import glob
    import tomllib

    root = HOST_DIR.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {str(p.parent.relative_to(HOST_DIR)).replace("/", ".")
                for p in (HOST_DIR / "microsmtp_host").rglob("__init__.py")}
    assert packages <= set(config["packages"])
    static = HOST_DIR / "microsmtp_host" / "catcher"
    shipped = {Path(f) for pattern in config["package-data"]["microsmtp_host.catcher"]
               for f in glob.glob(str(static / pattern))}
    assert shipped == set((static / "static").iterdir()) and len(shipped) == 3


# --- AUTH and host checks -----------------------------------------------------------------

def test_auth_required_when_configured(tmp_path):
    c = Catcher(tmp_path / "md", smtp_port=0, http_port=0, auth=("alerts", "s3cret"))
    c.start()
    try:
        msg = attachment_mail(subject="no auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            smtp_send(c.smtp_port, msg)
        assert e.value.smtp_code == 530
        with pytest.raises(microsmtp.SMTPError):
            firmware_send(c.smtp_port, "wrong password", "x", username="alerts",
                          password="nope", allow_plaintext_auth=True)
        firmware_send(c.smtp_port, "with AUTH", "x", username="alerts", password="s3cret",
                      allow_plaintext_auth=True)
        smtp_send(c.smtp_port, attachment_mail(subject="smtplib AUTH"), user="alerts",
                  password="s3cret")
        assert sorted(m["subject"] for m in c.messages()) == ["smtplib AUTH", "with AUTH"]
        received = stored_files(c.maildir)[0].read_bytes()
        assert b"with ESMTPA" in received
    finally:
        c.stop()


def test_without_auth_option_any_credentials_are_accepted(catcher):
    # A board configured for the real server can be pointed at the catcher unchanged.
    firmware_send(catcher.smtp_port, "board creds", "x", username="real-user",
                  password="real-password", allow_plaintext_auth=True)
    assert [m["subject"] for m in catcher.messages()] == ["board creds"]


def test_starttls_when_given_a_certificate(tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    c = Catcher(tmp_path / "md", smtp_port=0, http_port=0, auth=("alerts", "s3cret"),
                tls_context=server_ctx)
    c.start()
    try:
        with smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            with pytest.raises(smtplib.SMTPException):
                s.login("alerts", "s3cret")  # no AUTH before STARTTLS
            s.starttls(context=client_ctx)
            s.ehlo()
            s.login("alerts", "s3cret")
            s.send_message(attachment_mail(subject="over TLS"))
        [m] = c.messages()
        assert m["subject"] == "over TLS"
        assert b"with ESMTPSA" in stored_files(c.maildir)[0].read_bytes()
    finally:
        c.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.org", "::"])
def test_only_loopback_addresses(tmp_path, host, capsys, monkeypatch):
    with pytest.raises(ValueError):
        Catcher(tmp_path / "md", host=host)
    assert main(["catch", "--host", host, "--maildir", str(tmp_path / "md")],
                monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp catch: ") and err.count("\n") == 1
    assert not (tmp_path / "md").exists()


def test_refuses_a_folder_that_is_not_a_maildir(tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["catch", "--port", "0", "--http", "0", "--maildir", str(tmp_path)],
                monkeypatch) == 2
    assert "not a Maildir" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_port_in_use_is_a_one_line_error(catcher, tmp_path, capsys, monkeypatch):
    assert main(["catch", "--port", str(catcher.smtp_port), "--http", "0",
                 "--maildir", str(tmp_path / "other")], monkeypatch) == 2
    assert "cannot start" in capsys.readouterr().err


# --- the command --------------------------------------------------------------------------

def read_until(proc, needle, timeout=15, stream="stdout"):
    """Output of proc (stdout or stderr) up to and including the first line with needle."""
    out = b""
    deadline = time.monotonic() + timeout
    fd = getattr(proc, stream).fileno()
    while needle.encode() not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            raise AssertionError("no %r in the catcher's %s: %r" % (needle, stream, out))
        if select.select([fd], [], [], remaining)[0]:
            out += os.read(fd, 4096)
    return out.decode()


# `microsmtp catch` as a process (cli.main, only `catch` wired, as in main() above).
CATCH_COMMAND = ("import sys; from microsmtp_host import cli; "
                 "cli.COMMANDS = tuple(c for c in cli.COMMANDS if c[0] == 'catch'); "
                 "sys.exit(cli.main())")


def test_command_logs_each_mail_and_stops_on_sigterm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(HOST_DIR), PYTHONUNBUFFERED="1",
               PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-c", CATCH_COMMAND, "catch", "--port", "0", "--http", "0",
         "--maildir", str(tmp_path / "md")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        banner = read_until(proc, "Ctrl-C")
        smtp_line = next(line for line in banner.splitlines() if line.startswith("SMTP"))
        port = int(smtp_line.split()[1].rsplit(":", 1)[1])
        assert "web page http://127.0.0.1:" in banner and str(tmp_path / "md") in banner

        # With credentials: AUTH is optional here and must not make aiosmtpd log anything.
        firmware_send(port, "Boiler at 92 °C", "hot\n", username="board", password="pw",
                      allow_plaintext_auth=True)
        line = read_until(proc, "Boiler").splitlines()[-1]
        assert line.endswith("%s → %s: Boiler at 92 °C" % (SENDER, RCPT))
        assert line[2] == ":" and line[5] == ":"  # HH:MM:SS first

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr.read() == b""
        assert len(stored_files(tmp_path / "md")) == 1
    finally:
        _reap(proc)


# --- bounds: memory, Maildir, logs ---------------------------------------------------------

def test_summaries_hold_a_bounded_preview_and_bodies_come_from_the_maildir(catcher):
    # Before: every summary kept the whole body (eight 28 MB mails: RSS 28 -> 474 MB).
    body = "".join("line %06d: Kessel 92 °C\n" % i for i in range(8000))  # ~200 KB
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RCPT, "long " * 2000
    msg.set_content(body)
    smtp_send(catcher.smtp_port, msg)

    [m] = catcher.messages()
    assert len(m["body"]) == catcher_module.PREVIEW_CHARS
    assert len(m["subject"]) == catcher_module.HEADER_CHARS
    stored = catcher.body(m["key"])  # read from the Maildir now
    assert stored.replace("\r\n", "\n") == body
    assert m["body_chars"] == len(stored) and stored.startswith(m["body"])

    [listed] = json.loads(http_get(catcher, "/messages.json")[2])
    assert listed["body"].endswith("[... %d more characters]" % (len(stored) - 4096))
    status, headers, full = http_get(catcher, listed["body_url"])
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert full.decode().replace("\r\n", "\n") == body
    assert http_get(catcher, "/body/no-such-key")[0] == 404
    # One message's view: 64K characters of the body, the rest still behind body_url.
    one = json.loads(http_get(catcher, listed["json_url"])[2])
    assert one["body"].startswith(stored[:catcher_module.VIEW_CHARS])
    assert one["body_url"] == listed["body_url"] and one["body_chars"] == len(stored)


def test_oldest_mails_are_evicted_beyond_max_messages(tmp_path):
    c = Catcher(tmp_path / "md", smtp_port=0, http_port=0, max_messages=3)
    with c:
        for i in range(5):
            firmware_send(c.smtp_port, "alert %d" % i, "body %d" % i)
            assert len(stored_files(c.maildir)) == min(i + 1, 3)
        assert [m["subject"] for m in c.messages()] == ["alert 4", "alert 3", "alert 2"]
        assert sorted(c.store._cache) == sorted(m["key"] for m in c.messages())  # index too


def test_max_bytes_evicts_the_oldest_and_refuses_a_mail_that_cannot_fit(tmp_path):
    c = Catcher(tmp_path / "md", smtp_port=0, http_port=0, max_bytes=40_000)
    with c:
        for i in range(4):
            firmware_send(c.smtp_port, "log %d" % i, "%d" % i * 15_000)
            assert sum(p.stat().st_size for p in stored_files(c.maildir)) <= 40_000
        assert [m["subject"] for m in c.messages()] == ["log 3", "log 2"]
        with pytest.raises(smtplib.SMTPException) as e:  # SIZE: refused before it is stored
            smtp_send(c.smtp_port, attachment_mail(data=b"x" * 50_000))
        assert e.value.smtp_code == 552
        assert [m["subject"] for m in c.messages()] == ["log 3", "log 2"]


def test_command_logs_client_bytes_escaped_and_a_tls_abort_in_one_line(tmp_path):
    import ssl

    import trustme

    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    env = dict(os.environ, PYTHONPATH=str(HOST_DIR), PYTHONUNBUFFERED="1",
               PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-c", CATCH_COMMAND, "catch", "--port", "0", "--http", "0",
         "--maildir", str(tmp_path / "md"), "--tls-cert", str(tmp_path / "cert.pem"),
         "--tls-key", str(tmp_path / "key.pem"), "--max-messages", "7", "--max-bytes", "3M"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        banner = read_until(proc, "Ctrl-C")
        assert "(the newest 7 mails, 3145728 bytes at most)" in banner
        smtp_line = next(line for line in banner.splitlines() if line.startswith("SMTP"))
        port = int(smtp_line.split()[1].rsplit(":", 1)[1])

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo()
            # aiosmtpd logs an unknown command as sent: here window title + clear screen.
            assert s.docmd("\x1b]0;owned\x07\x1b[2J")[0] == 500
            wrong_ca = ssl.create_default_context()
            trustme.CA().configure_trust(wrong_ca)  # the board's mistake: another CA
            with pytest.raises(ssl.SSLCertVerificationError):
                s.starttls(context=wrong_ca)
        seen = read_until(proc, "STARTTLS failed", stream="stderr")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read()  # the rest, after the process ended
    finally:
        _reap(proc)
    err = seen + err.decode()
    assert "\x1b" not in err and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("microsmtp catch: smtp: ") for line in lines)
    assert lines[0].endswith(" unrecognised: \\x1b]0;OWNED\\x07\\x1b[2J")
    assert lines[1].startswith("microsmtp catch: smtp: STARTTLS failed, TLS handshake "
                               "aborted: TLSV1_ALERT_UNKNOWN_CA (does the client trust")


# --- the page in a real browser -----------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--mute-audio"]


def chromium():
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found: make test installs Debian's chromium as root; "
                    "otherwise run: sudo apt-get install chromium")
    return path


def test_chromium_renders_the_subject_escaped(catcher, tmp_path):
    firmware_send(catcher.smtp_port, SUBJECT, "Boiler temperature: 92 °C\n")
    smtp_send(catcher.smtp_port, attachment_mail(subject=INJECTION))

    # --virtual-time-budget lets the page's script run (its first poll of /messages.json
    # renders the list with DOM calls: the server sent none of it) before the DOM is dumped.
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, "--user-data-dir=%s" % (tmp_path / "profile"),
         "--virtual-time-budget=3000", "--dump-dom", catcher.web_url],
        capture_output=True, timeout=60)
    dom = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert 'data-live="yes"' in dom  # the script ran: the CSP allows it, the poll worked
    assert SUBJECT in dom
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;script&gt;alert(2)&lt;/script&gt;" in dom
    assert "<img" not in dom and "alert(2)</script>" not in dom
    assert "boiler-log 2024 ä.bin" in dom
    assert dom.index(INJECTION.replace("&", "&amp;").replace("<", "&lt;")
                     .replace(">", "&gt;")) < dom.index(SUBJECT)  # newest first


class DevTools:
    """Chromium driven over --remote-debugging-pipe: the DevTools protocol as NUL-separated
    JSON on the browser's fds 3 (commands in) and 4 (replies and events out)."""

    def __init__(self, profile):
        # The browser's ends go to fds >= 100 first, so moving them to 3 and 4 in the child
        # cannot overwrite one with the other; bash (not dash) takes two-digit fd numbers.
        to_browser_r, self.to_browser = (self._high(fd) for fd in os.pipe())
        self.from_browser, from_browser_w = (self._high(fd) for fd in os.pipe())
        script = 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (
            to_browser_r, from_browser_w, to_browser_r, from_browser_w)
        self.proc = subprocess.Popen(
            ["bash", "-c", script, chromium(), *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             "--user-data-dir=%s" % profile, "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buf = b""
        self.last_id = 0
        self.events = []  # events that came while waiting for replies

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(fd)
        return high

    def _receive(self, deadline):
        while b"\0" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from chromium")
            if select.select([self.from_browser], [], [], remaining)[0]:
                chunk = os.read(self.from_browser, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed its DevTools pipe")
                self.buf += chunk
        message, _, self.buf = self.buf.partition(b"\0")
        return json.loads(message)

    def call(self, method, session=None, timeout=15, **params):
        self.last_id += 1
        command = {"id": self.last_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self.to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if "method" in reply:
                self.events.append(reply)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply["result"]

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.to_browser)
        os.close(self.from_browser)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


def test_chromium_page_refreshes_as_mail_arrives(catcher, tmp_path):
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url=catcher.web_url)["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]

        def page():
            result = browser.call(
                "Runtime.evaluate", session, returnByValue=True,
                expression="document.body ? [document.body.dataset.live || '',"
                           " document.body.innerText] : ['', '']")["result"]
            return result.get("value") or ["", ""]

        wait_for(lambda: page()[0] == "yes", 15, "the page's script to poll")
        assert "No mail yet." in page()[1]

        firmware_send(catcher.smtp_port, SUBJECT, "Boiler temperature: 92 °C\n")
        sent = time.monotonic()
        text = wait_for(lambda: SUBJECT in page()[1] and page()[1], 10,
                        "the subject to appear without a reload")
        assert time.monotonic() - sent < 5  # one poll a second
        assert "Boiler temperature: 92 °C" in text and "1 message" in text
        assert "No mail yet." not in text
    finally:
        browser.close()


class Page:
    """One tab of a DevTools browser: evaluate JavaScript, navigate, take a screenshot."""

    def __init__(self, browser, url, width=1100, height=820):
        self.browser = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target,
                                    flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        # Runs before the page's own script in every document (DevTools scripts are not
        # subject to the page's CSP): a record of CSP violations, of alert() calls and of
        # messages posted to the page (by a frame in it).
        self.call("Page.addScriptToEvaluateOnNewDocument", source=(
            "window.__violations = []; window.__alerts = []; window.__messages = [];"
            "document.addEventListener('securitypolicyviolation', function (e) {"
            "  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI); });"
            "window.alert = function (m) { window.__alerts.push(String(m)); };"
            "window.addEventListener('message', function (e) {"
            "  window.__messages.push(String(e.data)); });"))
        self.goto(url)

    def call(self, method, **params):
        return self.browser.call(method, self.session, **params)

    def js(self, expression):
        """The value of a JavaScript expression in the page (an exception raises)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                          awaitPromise=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(reply["exceptionDetails"].get("exception", {})
                               .get("description", reply["exceptionDetails"]))
        return reply["result"].get("value")

    def goto(self, url):
        self.call("Page.navigate", url=url)
        wait_for(lambda: self.js("location.href") == url
                 and self.js("document.readyState") == "complete"
                 and self.js("document.body.dataset.live || ''") == "yes", 15,
                 "%s to load and draw" % url)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def subjects(self):
        return self.js("Array.from(document.querySelectorAll('article h2'),"
                       " function (h) { return h.textContent; })")

    def type_search(self, text):
        # As a person types: focus, select all, insert (fires the input event).
        self.js("document.getElementById('search').focus(),"
                " document.getElementById('search').select(), true")
        if text:
            self.call("Input.insertText", text=text)
        else:
            self.call("Input.dispatchKeyEvent", type="keyDown", key="Backspace",
                      code="Backspace", windowsVirtualKeyCode=8)
            self.call("Input.dispatchKeyEvent", type="keyUp", key="Backspace",
                      code="Backspace", windowsVirtualKeyCode=8)


def test_chromium_views(catcher, tmp_path):
    """The views a person uses, in the real browser: the list with its priority marker,
    search, one message with headers and raw source, delete one, clear all; hostile mail
    stays text throughout. Screenshots: build/catcher.png (list), build/catcher-message.png."""
    firmware_send(catcher.smtp_port, "Daily report: boiler fine", "All good.\n")
    msg = attachment_mail(subject="Weekly log")
    msg.replace_header("To", "ops@example.com")
    smtp_send(catcher.smtp_port, msg)
    smtp_send(catcher.smtp_port, hostile_mail())
    firmware_send(catcher.smtp_port, SUBJECT, "Boiler temperature: 92 °C\nstill rising\n",
                  priority=microsmtp.PRIORITY_HIGH)
    keys = {m["subject"]: m["key"] for m in catcher.messages()}
    all_subjects = [SUBJECT, INJECTION, "Weekly log", "Daily report: boiler fine"]

    browser = DevTools(tmp_path / "profile")
    try:
        page = Page(browser, catcher.web_url)
        wait_for(lambda: page.subjects() == all_subjects, 10, "the list, newest first")
        # The marker: on the high-priority alert only, as a badge and a coloured edge.
        marks = page.js("Array.from(document.querySelectorAll('article'), function (a) {"
                        " var p = a.querySelector('.prio');"
                        " return [a.dataset.key, a.className, p ? p.textContent : ''];})")
        assert marks[0] == [keys[SUBJECT], "msg prio-high", "high"]
        assert all(mark == "" and cls == "msg prio-normal" for _, cls, mark in marks[1:])
        # Hostile mail is text: its tags are not elements, its script never ran.
        assert page.js("document.querySelectorAll('img, b, main script').length") == 0
        assert page.js("document.scripts.length") == 1
        assert INJECTION in page.js("document.querySelector('main').innerText")
        assert '"<b>Mallory</b>" <mallory@example.org>' in page.js(
            "document.querySelector('main').innerText")
        att = page.js("(function (a) { return [a.getAttribute('href'), a.hasAttribute"
                      "('download'), a.textContent]; })(document.querySelector"
                      "('.attachments a'))")
        assert att == ["/attachment/%s/0" % urllib.parse.quote(keys["Weekly log"], ""),
                       True, "boiler-log 2024 ä.bin"]
        # The status line comes from its own fetch (/status.json), which may finish after
        # the list's: wait for it rather than read it once.
        info = wait_for(lambda: page.js("document.getElementById('info').textContent"), 10,
                        "the status line")
        assert "SMTP %s" % catcher.smtp_address in info
        page.screenshot(ROOT / "build" / "catcher.png")

        # Search: subject, sender, recipient; the query is kept in the address.
        for query, expected in (("überhitzung", [SUBJECT]), ("MALLORY", [INJECTION]),
                                ("ops@example.com", ["Weekly log"]),
                                ("fine REPORT", ["Daily report: boiler fine"]),
                                ("nothing-like-this", [])):
            page.type_search(query)
            wait_for(lambda e=expected: page.subjects() == e, 10, "the search %r" % query)
            assert page.js("location.search") == "?q=" + urllib.parse.quote(query)
        assert "No mail matches" in page.js("document.querySelector('main').innerText")
        page.type_search("")
        wait_for(lambda: page.subjects() == all_subjects, 10, "the whole list again")
        assert page.js("location.search") == ""

        # One message: clicking its subject opens its view with headers and raw source.
        page.js("document.querySelector('article[data-key=\"%s\"] h2 a').click(), true"
                % keys[SUBJECT])
        wait_for(lambda: page.js("document.querySelector('table.headers') !== null"), 15,
                 "the message view")
        assert page.js("location.pathname") == "/message/" + urllib.parse.quote(
            keys[SUBJECT], "")
        assert page.js("document.getElementById('tools').hidden") is True
        assert page.js("document.querySelector('h2 .prio.high').textContent") == "high"
        headers = dict(page.js("Array.from(document.querySelectorAll('table.headers tr'),"
                               " function (r) { return [r.cells[0].textContent,"
                               " r.cells[1].textContent]; })"))
        assert headers["Subject"] == SUBJECT and headers["X-Priority"] == "1 (Highest)"
        assert headers["Importance"] == "high" and headers["X-microsmtp-Rcpt-To"] == RCPT
        raw = page.js("document.querySelector('pre.raw').textContent")
        assert raw.startswith("Received: from ") and "X-Priority: 1 (Highest)\r\n" in raw
        assert "Boiler temperature: 92 °C" in page.js("document.querySelector('pre.body')"
                                                      ".textContent")
        page.screenshot(ROOT / "build" / "catcher-message.png")

        # The hostile one's view: its raw source is text too, its headers cells are text.
        page.goto(catcher.web_url + "message/" + urllib.parse.quote(keys[INJECTION], ""))
        wait_for(lambda: page.js("document.querySelector('pre.raw') !== null"), 15,
                 "the hostile message's view")
        assert "</pre><script>alert(3)</script>" in page.js(
            "document.querySelector('pre.raw').textContent")
        assert page.js("document.querySelectorAll('img, b, main script').length") == 0
        # Trusted Types are enforced: even the page itself cannot put a string into HTML.
        with pytest.raises(RuntimeError, match="TrustedHTML"):
            page.js("document.body.innerHTML = '<b>x</b>'")

        # Delete one, from its view: back to the list, the file gone from the Maildir.
        page.js("document.querySelector('button.delete').click(), true")
        wait_for(lambda: page.js("location.pathname") == "/"
                 and page.subjects() == [SUBJECT, "Weekly log", "Daily report: boiler fine"],
                 15, "the list without the deleted mail")
        assert len(stored_files(catcher.maildir)) == 3 and catcher.message(
            keys[INJECTION]) is None

        # Clear all: the first click only arms the button.
        page.js("document.getElementById('clear').click(), true")
        assert page.js("document.getElementById('clear').textContent").startswith("Click again")
        assert len(stored_files(catcher.maildir)) == 3
        page.js("document.getElementById('clear').click(), true")
        wait_for(lambda: "No mail yet." in page.js("document.querySelector('main').innerText"),
                 15, "the empty list")
        assert stored_files(catcher.maildir) == []
        assert page.js("document.getElementById('count').textContent") == "0 messages"

        # An unknown message's view says so (and the server answered 404).
        page.goto(catcher.web_url + "message/" + urllib.parse.quote(keys[SUBJECT], ""))
        assert "No such mail" in page.js("document.querySelector('main').innerText")

        assert page.js("window.__violations") == [] and page.js("window.__alerts") == []
        assert not [e for e in browser.events if e["method"] == "Page.javascriptDialogOpening"]
    finally:
        browser.close()


@pytest.fixture
def remote():
    """A tiny HTTP server on loopback standing in for the Internet: the paths asked of it."""
    asked = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    with servers.http_serving(server) as url:
        yield url, asked


def target_js(browser, url, kind):
    """A function evaluating JavaScript in the document at `url`, a target of type `kind`:
    "page" (a tab) or "iframe" (the HTML part's sandbox gives it an origin of its own, so
    Chromium runs it as an out-of-process iframe, a target of its own). DevTools evaluates
    where the document's own scripts may not run."""
    def target():
        found = [t for t in browser.call("Target.getTargets")["targetInfos"]
                 if t["url"] == url and t["type"] == kind]
        return found[0]["targetId"] if found else None

    session = browser.call("Target.attachToTarget", targetId=wait_for(
        target, 15, "a target for %s" % url), flatten=True)["sessionId"]

    def js(expression):
        reply = browser.call("Runtime.evaluate", session, expression=expression,
                             returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(str(reply["exceptionDetails"]))
        return reply["result"].get("value")

    return js


def test_chromium_html_part_runs_no_script_and_loads_nothing_remote(catcher, tmp_path, remote,
                                                                     monkeypatch):
    """The HTML part in its sandboxed iframe (and opened on its own): the inline image shows;
    its script does not run; nothing is fetched from anywhere else. Each document is checked
    once its load event has passed, which waits for every fetch it started (a script's image
    too): whatever was not asked of the servers by then was never going to be.
    Screenshot: build/catcher-html.png."""
    url, asked = remote
    head = ('<meta http-equiv="refresh" content="0;url={0}/refresh">'
            '<link rel="stylesheet" href="{0}/link.css">'
            '<style>@import url({0}/import.css); body {{ background: url({0}/bg.png) }}'
            '</style>').format(url)
    # The script would mark the document, call the page, navigate the top page, and fetch
    # an image from the catcher's own inline URLs (which the policy allows: so only the
    # sandbox stops it); the rest are loads that only the policy stops.
    body = ('<script>document.title = "script ran"; parent.postMessage("script ran", "*");'
            ' new Image().src = location.pathname.replace("/html/", "/inline/") + "/77";'
            ' top.location = "{0}/top";</script>'
            '<img id="remote" src="{0}/remote.png"><iframe src="{0}/frame"></iframe>'
            '<video poster="{0}/poster.png"></video><object data="{0}/object"></object>'
            ).format(url)
    smtp_send(catcher.smtp_port, rich_mail(head=head, body=body), to_addrs=[RCPT, BCC])
    [m] = json.loads(http_get(catcher, "/messages.json")[2])
    html_url = catcher.web_url.rstrip("/") + m["html_url"]
    inline_asked = []  # attachment indexes asked of /inline/
    real_inline_image = catcher.store.inline_image

    def recording_inline_image(key, index):
        inline_asked.append(index)
        return real_inline_image(key, index)

    monkeypatch.setattr(catcher.store, "inline_image", recording_inline_image)

    browser = DevTools(tmp_path / "profile")
    try:
        # The list: To, Cc, Bcc with its note, and a badge for the HTML part.
        page = Page(browser, catcher.web_url)
        meta = wait_for(lambda: page.js("(document.querySelector('article .meta') || {})"
                                        ".textContent"), 10, "the list")
        assert meta.endswith(" \u2192 %s \u00b7 cc %s \u00b7 bcc %s (received but not in "
                             "headers) HTML" % (RCPT, CC, BCC)), meta
        assert page.js("document.querySelector('article .meta .badge').textContent") == "HTML"
        assert page.js("document.querySelectorAll('iframe').length") == 0  # not in the list

        page.goto(catcher.web_url + "message/" + urllib.parse.quote(m["key"], ""))
        wait_for(lambda: page.js("document.querySelector('iframe.html') !== null"), 15,
                 "the HTML part's iframe")
        fields = dict(page.js("Array.from(document.querySelectorAll('table.fields tr'),"
                              " function (r) { return [r.cells[0].textContent,"
                              " r.cells[1].textContent]; })"))
        assert fields["To"] == RCPT and fields["Cc"] == CC
        assert fields["Bcc"] == BCC + " (received but not in headers)"
        assert fields["Envelope to"] == RCPT + ", " + BCC
        # The text body is shown as before, above the HTML part.
        assert "the chart is in the HTML part" in page.js(
            "document.querySelector('pre.body').textContent")

        frame = target_js(browser, html_url, "iframe")
        check_html_part(frame, html_url)
        assert page.js("location.pathname") == "/message/" + urllib.parse.quote(m["key"], "")
        assert page.js("window.__messages") == [] and page.js("window.__alerts") == []
        assert page.js("window.__violations") == []  # frame-src 'self' lets the part in
        # Sandboxed with every flag off, from the URL the JSON gives.
        assert page.js("(function (f) { return [f.getAttribute('sandbox'),"
                       " f.getAttribute('src')]; })(document.querySelector('iframe.html'))"
                       ) == ["", m["html_url"]]
        assert asked == [] and inline_asked == [0]
        page.screenshot(ROOT / "build" / "catcher-html.png")

        # Opened on its own (the page's "open it on its own" link): its policy sandboxes it
        # as a tab too.
        browser.call("Target.createTarget", url=html_url)
        check_html_part(target_js(browser, html_url, "page"), html_url)
        assert inline_asked == [0, 0]
        # A meta refresh is the one load the load event does not bound (its timer starts
        # then): Chromium refuses it in a sandbox as it parses the tag; were it let through,
        # with its 0 s delay it would show in the location checks above or here.
        assert asked == []
    finally:
        browser.close()


def check_html_part(js, html_url):
    """The HTML part of rich_mail(), loaded (its load event passed): the inline image shown,
    nothing else loaded, its script not run, not navigated."""
    def loaded():
        # A new tab's target has its URL before its document does: about:blank until then.
        try:
            return js("location.href !== 'about:blank' && document.readyState") == "complete"
        except RuntimeError as e:  # just attached: the document is not there yet
            if "execution context" not in str(e):
                raise
            return False

    wait_for(loaded, 15, "the HTML part to load")
    assert js("location.href") == html_url  # neither the refresh nor the script navigated it
    assert js("document.title") == ""  # the script never ran
    images = dict(js("Array.from(document.images, function (i) {"
                     " return [i.id, [i.complete, i.naturalWidth]]; })"))
    assert images["chart"] == [True, 2]  # the inline image, from the catcher's URL
    for name in ("remote", "log", "unknown"):
        assert images[name] == [True, 0], name  # not loaded
    assert "Boiler at 92 °C" in js("document.body.innerText")
