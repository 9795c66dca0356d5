"""Rich mails (issue 14): Cc/Bcc, display names, Reply-To, custom headers, HTML, inline
images and attachments streamed as base64, on both runtimes through aiosmtpd
(tests/mp_rich.py sends; Python's email parser reads what arrived back).

Checked: every part, filename (non-ASCII too), charset and byte of the attachments comes
back (all 256 byte values; a 1 MB file); Bcc is in the envelope and in no header; display
names decode back exactly; the boundaries never occur in a part; a text part takes the
transfer encoding a plain mail would (quoted-printable without 8BITMIME, or when it holds
"=_"); mime.py loads only for a rich mail; after a rich mail a plain one is plain again;
on the MicroPython unix port a mail with a 1 MB file attachment allocates within 10 % of a
plain 1 KB alert, and its attachment is read with the heap locked."""

import email
import email.policy
import json
import subprocess
import sys

import pytest
import runtimes
from servers import RCPT, SENDER, Server

BOTH = pytest.mark.parametrize("runtime", ["cpython", pytest.param(
    "micropython", marks=pytest.mark.unixport), pytest.param(
    "micropython-ram", marks=pytest.mark.unixport)])
# Not heap bars (test_a_1mb_attachment_allocates_as_a_plain_alert_does is one): room for the
# client, mime.py's Mail and the harness's JSON (a kilobyte or two of hex), with the code in
# flash; the .mpy files in RAM take about 24K more (README, "Memory").
RICH_HEAP = "64K"
RICH_RAM_HEAP = "96K"
ALL_BYTES = bytes(range(256)) * 5
BOUNDARIES = ("=_mixed.microsmtp", "=_alt.microsmtp", "=_rel.microsmtp")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def run(runtime, cfg, tmp_path, heap=None):
    """tests/mp_rich.py's results for cfg on runtime ("micropython": the code in emulated
    flash; "micropython-ram": the .mpy files in the heap, as a board loads them)."""
    cfg = dict({"server": "127.0.0.1", "from": SENDER}, **cfg)
    if runtime == "cpython":
        import mp_rich
        from microsmtp_host.shim import net

        out = []
        mp_rich.run(cfg, out.append, net=net)
        return out
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_rich.py"], tmp_path / "mp_rich")
    path = tmp_path / "mp_rich.json"
    path.write_text(json.dumps(cfg))
    proc = runtimes.run_micropython("mp_rich", [str(path)], [mpy, runtimes.firmware_mpy()],
                                    timeout=60, rom=runtime == "micropython",
                                    heap=heap or (RICH_HEAP if runtime == "micropython"
                                                  else RICH_RAM_HEAP))
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(cfg.get("sends", ())), "MicroPython exit %d: %s" % (
        proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    return out


@pytest.fixture
def server():
    srv = Server(auth=False).start()
    yield srv
    srv.stop()


@pytest.fixture
def seven_bit():
    """aiosmtpd without 8BITMIME, refusing any byte over 127: a 7-bit-only server."""
    srv = Server(auth=False, eight_bit=False).start()
    yield srv
    srv.stop()


def parsed(message):
    return email.message_from_bytes(message["content"], policy=email.policy.default)


def files_of(msg):
    """{filename: (content type, bytes, Content-ID or None, disposition)} of every part
    with a filename."""
    return {p.get_filename(): (p.get_content_type(), p.get_payload(decode=True),
                               p["Content-ID"], p.get_content_disposition())
            for p in msg.walk() if p.get_filename()}


def assert_boundaries_only_as_delimiters(raw):
    """No boundary string anywhere but on its own delimiter lines, and in the
    Content-Type parameters that name it."""
    for line in raw.split(b"\r\n"):
        for b in BOUNDARIES:
            if b.encode() in line:
                assert line in (b"--" + b.encode(), b"--" + b.encode() + b"--") or \
                    b"boundary=\"%s\"" % b.encode() in line, line


@BOTH
def test_a_full_rich_mail_round_trips(runtime, server, tmp_path):
    big = tmp_path / "readings.bin"
    big.write_bytes(bytes((i * 7 + i // 256) & 255 for i in range(1 << 20)))
    html = "<p>Boiler at <b>92 °C</b><img src=\"cid:logo\"></p>\n"
    rich = {
        "cc": ["Zoë Müller <zoe@example.org>", "pager@example.org"],
        "bcc": "audit@example.org",
        "reply_to": '"Help Desk, 2nd line" <help@example.org>',
        "headers": [["X-Device", "boiler-7"], ["X-Note", "long " * 40 + "end"]],
        "html": html,
        "attachments": [
            {"name": "all-bytes.bin", "type": "application/octet-stream",
             "hex": ALL_BYTES.hex()},
            {"name": "Übersicht €.csv", "type": "text/csv", "chunks": ["t,v\n", "1,92\n"]},
            {"name": "readings.bin", "type": "application/octet-stream", "file": str(big)},
            {"name": "logo.png", "type": "image/png", "hex": PNG.hex(), "cid": "logo"},
        ],
    }
    body = "Boiler at 92 °C.\nSee the readings attached.\n"
    res = run(runtime, {"port": server.port, "sends": [
        {"to": ['"Ops" <ops@example.org>', RCPT], "subject": "Boiler 92 °C", "body": body,
         "rich": rich}]}, tmp_path)
    assert res[0]["status"] == 0 and res[0]["pool_full"], res
    assert res[0]["mime_loaded"], res
    m = server.handler.messages[0]
    assert m["rcpt_tos"] == ["ops@example.org", RCPT, "zoe@example.org",
                             "pager@example.org", "audit@example.org"]
    assert b"audit@example.org" not in m["content"]  # Bcc: the envelope only
    msg = parsed(m)
    assert msg["Bcc"] is None
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Ops", "ops@example.org"), ("", RCPT)]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Zoë Müller", "zoe@example.org"), ("", "pager@example.org")]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        ("Help Desk, 2nd line", "help@example.org")]
    assert msg["X-Device"] == "boiler-7"
    assert msg["X-Note"] == "long " * 40 + "end"
    assert msg["Subject"] == "Boiler 92 °C"
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == body
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html
    assert msg.get_body(("plain",)).get_content_charset() == "utf-8"
    files = files_of(msg)
    assert files["all-bytes.bin"] == ("application/octet-stream", ALL_BYTES, None,
                                      "attachment")
    assert files["Übersicht €.csv"] == ("text/csv", b"t,v\n1,92\n", None, "attachment")
    assert files["readings.bin"][1] == big.read_bytes()
    assert files["logo.png"] == ("image/png", PNG, "<logo>", "inline")
    # The image is in a multipart/related with the HTML it is shown in (RFC 2387).
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    assert [p.get_content_type() for p in related[0].iter_parts()] == ["text/html",
                                                                        "image/png"]
    assert_boundaries_only_as_delimiters(m["content"])
    for line in m["content"].split(b"\r\n"):  # RFC 5322 §2.1.1
        assert len(line) <= 998


@BOTH
def test_text_parts_take_the_plain_mails_encoding(runtime, seven_bit, tmp_path):
    """No 8BITMIME: non-ASCII text and HTML go quoted-printable, the multipart 7bit; a line
    of 2,000 characters too; the 7-bit server takes it all."""
    long_line = "x" * 2000
    res = run(runtime, {"port": seven_bit.port, "sends": [
        {"to": RCPT, "body": "Zoë: 92 °C\n" + long_line + "\n",
         "rich": {"html": "<p>Zoë</p>", "attachments": [
             {"name": "a.txt", "type": "text/plain", "text": "é"}]}}]}, tmp_path)
    assert res[0]["status"] == 0, res
    m = seven_bit.handler.messages[0]
    msg = parsed(m)
    assert msg["Content-Transfer-Encoding"] == "7bit"
    plain = msg.get_body(("plain",))
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content().replace("\r\n", "\n") == "Zoë: 92 °C\n" + long_line + "\n"
    assert msg.get_body(("html",)).get_content().rstrip() == "<p>Zoë</p>"
    assert files_of(msg)["a.txt"][1] == "é".encode()
    assert all(b < 128 for b in m["content"])


@BOTH
def test_a_text_holding_a_boundary_prefix_goes_quoted_printable(runtime, server, tmp_path):
    """7bit text would be sent as it is; one holding "=_" (a boundary's start) goes
    quoted-printable, where "=" is always "=3D": no boundary can occur in any part."""
    trap = "--=_mixed.microsmtp--\n--=_alt.microsmtp\n"
    res = run(runtime, {"port": server.port, "sends": [
        {"to": RCPT, "body": "plain ASCII\n", "rich": {"html": "<p>hi</p>", "attachments": [
            {"name": "a.bin", "type": "application/octet-stream", "text": "x"}]}},
        {"to": RCPT, "body": trap, "rich": {"html": "<p>" + trap + "</p>", "attachments": [
            {"name": "a.bin", "type": "application/octet-stream", "text": trap}]}},
    ]}, tmp_path)
    assert [r["status"] for r in res] == [0, 0], res
    first, second = (parsed(m) for m in server.handler.messages)
    assert first.get_body(("plain",))["Content-Transfer-Encoding"] == "7bit"
    assert second.get_body(("plain",))["Content-Transfer-Encoding"] == "quoted-printable"
    assert second.get_body(("plain",)).get_content().replace("\r\n", "\n") == trap
    assert files_of(second)["a.bin"][1] == trap.encode()
    assert_boundaries_only_as_delimiters(server.handler.messages[1]["content"])


@BOTH
@pytest.mark.parametrize("how", ["session", "aio"])
def test_rich_and_plain_mails_mixed(runtime, how, server, tmp_path):
    """A rich mail, a plain one, a rich one with only headers: each as it was asked for
    (the plain one after a rich one has no Cc, no multipart)."""
    heap = "128K" if how == "aio" and runtime == "micropython-ram" else None  # asyncio too
    res = run(runtime, {"port": server.port, "how": how, "sends": [
        {"to": RCPT, "subject": "one", "rich": {"cc": "pager@example.org", "attachments": [
            {"name": "a.bin", "type": "application/octet-stream", "hex": "00ff"}]}},
        {"to": RCPT, "subject": "two"},
        {"to": "Ops <ops@example.org>", "subject": "three"},
    ]}, tmp_path, heap)
    assert [r["status"] for r in res] == [0, 0, 0], res
    one, two, three = (parsed(m) for m in server.handler.messages)
    assert one.get_content_type() == "multipart/mixed" and one["Cc"] == "pager@example.org"
    assert two.get_content_type() == "text/plain" and two["Cc"] is None
    assert two["To"] == RCPT and two.get_content().strip() == "Boiler at 92 C."
    assert three.get_content_type() == "text/plain" and three["To"] == "Ops <ops@example.org>"
    assert [m["rcpt_tos"] for m in server.handler.messages] == [
        [RCPT, "pager@example.org"], [RCPT], ["ops@example.org"]]


@BOTH
def test_a_plain_alert_loads_no_mime(runtime, server, tmp_path):
    """In a process of its own (CPython too): a plain alert, then a rich mail."""
    cfg = {"server": "127.0.0.1", "from": SENDER, "port": server.port, "sends": [
        {"to": RCPT}, {"to": RCPT, "rich": {"cc": "pager@example.org"}}]}
    if runtime != "cpython":
        res = run(runtime, cfg, tmp_path)
    else:
        path = tmp_path / "mp_rich.json"
        path.write_text(json.dumps(cfg))
        proc = subprocess.run([sys.executable, "-c", "from microsmtp_host import shim; "
                               "shim.install(); import runpy, sys; sys.argv[1:] = [%r]; "
                               "runpy.run_path(%r, run_name='__main__')" % (
                                   str(path), str(runtimes.ROOT / "tests" / "mp_rich.py"))],
                              capture_output=True, text=True, timeout=60)
        res = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert len(res) == 2, proc.stderr[-2000:]
    assert [r["status"] for r in res] == [0, 0], res
    assert [r["mime_loaded"] for r in res] == [False, True], res


@BOTH
@pytest.mark.parametrize("rich, error", [
    ({"cc": "Eve\r\nBcc: x@example.org <eve@example.org>"}, "control character"),
    ({"cc": "eve@example.org, x@example.org"}, "is not an address"),
    ({"headers": [["Bcc", "x@example.org"]]}, "client's to write"),
    ({"headers": [["Content-Type", "text/html"]]}, "client's to write"),
    ({"headers": [["X-A: b\r\nX-C", "d"]]}, "not a field name"),
    ({"headers": [["X-A", "b\r\nBcc: x@example.org"]]}, "control character"),
    ({"attachments": [{"name": "a\r\n.b", "type": "text/plain", "text": "x"}]},
     "control character"),
    ({"attachments": [{"name": "../etc/passwd", "type": "text/plain", "text": "x"}]},
     "not a path"),
    ({"attachments": [{"name": "report.txt\u00a0", "type": "text/plain", "text": "x"}]},
     "begins or ends with a space"),  # a reader strips it: another name (hypothesis found)
    ({"attachments": [{"name": "a", "type": "text/plain; charset=\"x\r\n\"", "text": "x"}]},
     "type/subtype"),
    ({"html": "<p>x</p>", "attachments": [
        {"name": "a", "type": "image/png", "text": "x", "cid": "a>\r\nX-Evil: 1"}]},
     "control character"),
    ({"attachments": [{"name": "a", "type": "image/png", "text": "x", "cid": "logo"}]},
     "needs html="),
    ({"priority_of_nothing": 1}, "unexpected keyword"),
])
def test_injection_is_refused_before_anything_is_sent(runtime, rich, error, server,
                                                      tmp_path):
    res = run(runtime, {"port": server.port, "sends": [
        {"to": RCPT, "rich": rich}, {"to": RCPT, "subject": "after"}]}, tmp_path)
    assert error in str(res[0]["status"]), res
    assert str(res[0]["status"]).split(":")[0] in ("ValueError", "TypeError"), res
    assert res[0]["pool_full"] and res[1]["status"] == 0, res
    assert [m["subject"] for m in server.handler.messages] == ["after"]  # nothing else
    assert parsed(server.handler.messages[0]).get_content_type() == "text/plain"


@BOTH
def test_a_second_address_in_a_display_name_stays_in_the_name(runtime, server, tmp_path):
    """Everything before the last "<" is the display name, written as a quoted string
    (its quotes and backslashes escaped): it cannot add a recipient, to the envelope or to
    a header."""
    res = run(runtime, {"port": server.port, "sends": [
        {"to": RCPT, "rich": {"cc": 'Eve" <eve@example.org>, "x <x@example.org>'}}]},
        tmp_path)
    assert res[0]["status"] == 0, res
    m = server.handler.messages[0]
    assert m["rcpt_tos"] == [RCPT, "x@example.org"]
    assert [(a.display_name, a.addr_spec) for a in parsed(m)["Cc"].addresses] == [
        ('Eve" <eve@example.org>, "x', "x@example.org")]


@BOTH
def test_an_angle_address_is_its_address(runtime, server, tmp_path):
    """"<a@example.org>" is a mailbox with no display name (RFC 5322 §3.4): RCPT TO and To
    carry the bare address; as the sender it is refused (From is an address only)."""
    res = run(runtime, {"port": server.port, "sends": [
        {"to": ["<a@example.org>", " <b@example.org>"]},
        {"to": "\r\n<c@example.org>"}]}, tmp_path)
    assert res[0]["status"] == 0, res
    assert "control character" in str(res[1]["status"]), res
    m = server.handler.messages[0]
    assert m["rcpt_tos"] == ["a@example.org", "b@example.org"]
    assert parsed(m)["To"] == "a@example.org, b@example.org"
    assert b"To: a@example.org,\r\n b@example.org\r\n" in m["content"]
    assert len(server.handler.messages) == 1
    import microsmtp

    with pytest.raises(ValueError):
        microsmtp.Client("127.0.0.1", 25, from_address="<a@example.org>")


@BOTH
def test_encoded_words_in_names_and_headers_show_literally(runtime, server, tmp_path):
    """"=?...?=" in a display name or a header value would be decoded by a reader: it is
    encoded itself, so it shows as it was written (CVE-2024-6923's shape)."""
    trick = "=?utf-8?B?QmNjOiBldmVAZXhhbXBsZS5vcmc=?="
    res = run(runtime, {"port": server.port, "sends": [
        {"to": "%s <ops@example.org>" % trick, "rich": {"headers": [["X-Note", trick]]}}]},
        tmp_path)
    assert res[0]["status"] == 0, res
    msg = parsed(server.handler.messages[0])
    assert msg["To"].addresses[0].display_name == trick
    assert msg["X-Note"] == trick
    assert server.handler.messages[0]["rcpt_tos"] == ["ops@example.org"]


@pytest.mark.unixport
def test_a_1mb_attachment_allocates_as_a_plain_alert_does(server, tmp_path):
    """MicroPython, the .mpy files in RAM: the second plain 1 KB alert of a client and its
    second mail with the same alert and a 1 MB file attachment (the steady state, as
    test_engine.py measures a send), mem_total() around each send whole; then the same
    mail once more, its attachment read with the heap locked from its first byte to its
    last (a wrapper of the file that locks it: its own calls are not measured above)."""
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 4096)
    alert = "Boiler at 92 C. " * 64  # 1 KB
    plain = {"to": RCPT, "body": alert, "measure": True}
    rich = dict(plain, rich={"attachments": [
        {"name": "big.bin", "type": "application/octet-stream", "file": str(big)}]})
    locked = {"to": RCPT, "body": alert, "rich": {"attachments": [
        {"name": "big.bin", "type": "application/octet-stream", "locked": str(big)}]}}
    res = run("micropython-ram", {"port": server.port,
                                  "sends": [plain, rich, plain, rich, locked]}, tmp_path)
    assert [r["status"] for r in res] == [0] * 5, res
    print("\nsecond plain 1 KB alert: %d B; second with a 1 MB attachment: %d B" % (
        res[2]["mem"], res[3]["mem"]))
    assert res[3]["mem"] <= res[2]["mem"] * 1.10, res
    assert res[4]["locked_ok"], res
    for m in server.handler.messages[3:]:
        assert files_of(parsed(m))["big.bin"][1] == big.read_bytes()


def test_an_html_mail_with_attachments_through_postfix_byte_exact(pf, server, tmp_path):
    """The same mail (its Date and Message-ID given) to aiosmtpd and to the private Postfix
    (the real-servers issue's): what Postfix delivers to the Maildir is what the client
    sent, byte for byte, below the lines Postfix adds on top (Return-Path, X-Original-To,
    Delivered-To, Received); every part decodes back. On both runtimes, through a session each."""
    photo = tmp_path / "still.jpg"
    photo.write_bytes(bytes((i * 131) & 255 for i in range(60000)))
    mail = {"to": ['"Ops" <ops@example.org>'], "subject": "Boiler 92 °C",
            "body": "Boiler at 92 °C.\nStill attached.\n", "date": 1790000000,
            "message_id": "rich1", "rich": {
                "cc": "pager@example.org", "html": "<p>Boiler at <b>92 °C</b></p>\n",
                "attachments": [
                    {"name": "still.jpg", "type": "image/jpeg", "file": str(photo)},
                    {"name": "all.bin", "type": "application/octet-stream",
                     "hex": ALL_BYTES.hex()}]}}
    for runtime in ("cpython", "micropython"):
        pf.clear()
        server.handler.reset()
        for port in (server.port, pf.ports["plain"]):
            res = run(runtime, {"port": port, "how": "session", "sends": [mail]}, tmp_path)
            assert res[0]["status"] == 0 and res[0]["pool_full"], (runtime, res)
        sent = server.handler.messages[0]["content"].replace(b"\r\n", b"\n")
        assert len(pf.wait_messages(1, "pager")) == 1  # the Cc copy
        files = pf.wait_messages(1)
        delivered = files[0].read_bytes()
        assert delivered.endswith(sent), runtime
        added = delivered[:-len(sent)].decode().splitlines()
        assert [line.split(":")[0] for line in added if not line[0].isspace()] == [
            "Return-Path", "X-Original-To", "Delivered-To", "Received"], added
        msg = email.message_from_bytes(delivered, policy=email.policy.default)
        got = files_of(msg)
        assert got["still.jpg"][1] == photo.read_bytes()
        assert got["all.bin"][1] == ALL_BYTES
        assert msg.get_body(("html",)).get_content() == "<p>Boiler at <b>92 °C</b></p>\n"


@BOTH
def test_a_mail_over_the_servers_size_is_refused_before_its_upload(runtime, tmp_path):
    """RFC 1870: the parts' size (base64 counted) goes into SIZE=; a mail over the limit
    the server announced is refused at MAIL, before a byte of it is uploaded."""
    srv = Server(auth=False, data_size_limit=50000).start()
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(bytes(40000))  # 53 KB as base64
        small = tmp_path / "small.bin"
        small.write_bytes(bytes(9000))
        res = run(runtime, {"port": srv.port, "sends": [
            {"to": RCPT, "rich": {"attachments": [
                {"name": "big.bin", "type": "application/octet-stream", "file": str(big)}]}},
            {"to": RCPT, "rich": {"attachments": [
                {"name": "small.bin", "type": "application/octet-stream",
                 "file": str(small)}]}},
        ]}, tmp_path)
        import microsmtp

        assert res[0]["status"] == microsmtp.OVERSIZE_MAIL_DATA, res
        assert "SIZE" in res[0]["error"] and res[0]["pool_full"], res
        assert res[1]["status"] == 0, res
        assert [m["subject"] for m in srv.handler.messages] == ["Boiler alert"]
        assert srv.handler.events.count("DATA") == 1  # the small one only
        size = int(next(o for o in srv.handler.messages[0]["mail_options"]
                        if o.startswith("SIZE="))[5:])
        assert len(srv.handler.messages[0]["content"]) <= size
    finally:
        srv.stop()
