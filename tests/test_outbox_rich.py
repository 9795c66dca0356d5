"""Rich mails through the outbox (issue 14, item 6), on CPython and the MicroPython unix
port against aiosmtpd: put() keeps Cc, Bcc, display names, Reply-To, headers, HTML and
attachments (copied into the outbox file, or read at flush time through outbox.Path) and a
flush sends the mail put() was given, with put()'s Message-ID and Date; copied parts count
in max_bytes; a Path gone by flush time buries its mail alone; a tampered rich file buries
itself; a partial refusal keeps the headers and retries only the refused; a power cut
during a rich put leaves no file or the whole; a plain put still writes the old format and
loads no mime.py."""

import email
import email.policy
import email.utils
import json
import os
import random
import select
import signal
import subprocess
import sys
import time

import microsmtp
import outbox_ops
import pytest
import runtimes
import servers
from microsmtp import outbox
from microsmtp_host.shim import net
from servers import Recorder, Server, grey_or_gone

RUNTIMES = ["cpython", pytest.param("micropython", marks=pytest.mark.unixport)]
# The unix port's heap for these runs, the code in emulated flash: not a bar for the
# outbox (its own cost is printed by test_a_rich_put_allocates_little), room for the
# harness, which holds every op's data as JSON and hex for the whole run, the client,
# mime.py's Mail and the outbox. Measured (2026-11-30, outbox_rich.py apart): every test
# passes at 80K; at 72K the aflush round trip (asyncio too) fails, at 68K also
# test_copied_parts_count_against_max_bytes (8 KB of hex in its ops); the flush round
# trip passes at 64K, fails at 60K. test_outbox.py's HARNESS_HEAP is unchanged.
RICH_HEAP = os.environ.get("MICROSMTP_OUTBOX_RICH_HEAP", "80K")
AIO_HEAP = os.environ.get("MICROSMTP_OUTBOX_AIO_HEAP", "80K")
OPS, GREY, GONE = "ops@example.org", "grey@example.org", "gone@example.org"
ALL_BYTES = bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(120))
HTML = "<p>Boiler at <b>92 °C</b><img src=\"cid:logo\"></p>\n"
BODY = "Boiler at 92 °C.\n.\nSee the readings attached.\n"



@pytest.fixture
def server():
    yield from servers.serving(Recorder(), auth=False)


def run_ops(runtime, port, path, ops, mp_box, tmp_path, aio=False, heap=None, **kwargs):
    """outbox_ops.run on runtime: a microsmtp.Client, or a microsmtp.aio.Client (aio)."""
    args = {"client_domain": "boiler.example.org", "tls": microsmtp.TLS_NONE,
            "timeouts": {"connect": 2, "greeting": 2, "envelope": 2, "message": 3}}
    if runtime == "cpython":
        if aio:
            from microsmtp import aio as aio_module

            client = aio_module.Client("127.0.0.1", port, from_address="boiler@example.org",
                                       net=net, **args)
        else:
            client = microsmtp.Client("127.0.0.1", port, from_address="boiler@example.org",
                                      net=net, **args)
        return json.loads(json.dumps(outbox_ops.run(microsmtp, outbox, client, str(path), ops,
                                                    kwargs)))
    cfg = tmp_path / "outbox.json"
    cfg.write_text(json.dumps({"port": port, "path": str(path), "ops": ops, "kwargs": kwargs,
                               "aio": aio}))
    proc = runtimes.run_micropython("mp_outbox", [str(cfg)], [mp_box, runtimes.firmware_mpy()],
                                    timeout=60, heap=heap or (AIO_HEAP if aio else RICH_HEAP))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert lines, (proc.stdout + proc.stderr)[-2000:]
    return json.loads(lines[-1])


def head_of(path):
    return json.loads(path.read_bytes().split(b"\n", 1)[0])


def parsed(message):
    return email.message_from_bytes(message["content"], policy=email.policy.default)


def files_of(msg):
    return {p.get_filename(): (p.get_content_type(), p.get_payload(decode=True),
                               p["Content-ID"], p.get_content_disposition())
            for p in msg.walk() if p.get_filename()}


def put(subject, body=None):
    return ["put", [OPS], subject, body or "Reading: %s\n" % subject]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("how", ["flush", "aflush"])
def test_a_rich_mail_round_trips_through_the_outbox(runtime, how, server, mp_box, tmp_path):
    # Put in one process, flushed in the next (a reboot): every field, part and byte.
    box = tmp_path / "outbox"
    cam, copied = tmp_path / "cam.jpg", tmp_path / "readings.bin"
    cam.write_bytes(b"old picture")
    readings = bytes((i * 7) & 255 for i in range(5000))
    copied.write_bytes(readings)
    rich = {
        "cc": ["Zoë Müller <zoe@example.org>", "pager@example.org"],
        "bcc": "audit@example.org",
        "reply_to": '"Help Desk, 2nd line" <help@example.org>',
        "headers": [["X-Device", "boiler-7"], ["X-Note", "long " * 30 + "end"]],
        "html": HTML,
        "attachments": [
            {"name": "all-bytes.bin", "type": "application/octet-stream",
             "hex": ALL_BYTES.hex()},
            {"name": "readings.bin", "type": "application/octet-stream", "file": str(copied)},
            {"name": "Übersicht €.csv", "type": "text/csv", "chunks": ["t,v\n", "1,92\n"]},
            {"name": "cam.jpg", "type": "image/jpeg", "path": str(cam)},
            {"name": "logo.png", "type": "image/png", "hex": PNG.hex(), "cid": "logo"},
        ]}
    res = run_ops(runtime, server.port, box, [
        ["rich", ['"Ops" <ops@example.org>', "desk@example.org"], "Boiler 92 °C", BODY, rich,
         microsmtp.PRIORITY_HIGH], ["modules"]], mp_box, tmp_path, aio=how == "aflush")
    assert res[:2] == [["put", "00000001.msg"], ["modules", True]], res
    stored = (box / "00000001.msg").read_bytes()
    head = head_of(box / "00000001.msg")
    assert ALL_BYTES in stored and readings in stored  # copied into the one file
    assert head["rich"]["attachments"][3][2] == {"path": str(cam)}  # not copied: a name
    # The Path is read when the mail is sent, not when it was put.
    picture = bytes(range(256)) * 40
    cam.write_bytes(picture)
    copied.write_bytes(b"changed after put")  # a copied one is not
    res = run_ops(runtime, server.port, box, [["flush"], ["error"]], mp_box, tmp_path,
                  aio=how == "aflush")
    assert res[:2] == [["flush", 1, [], []], ["error"]] and res[-1] == ["pool", True], res
    m = server.handler.messages[0]
    assert m["rcpt_tos"] == [OPS, "desk@example.org", "zoe@example.org", "pager@example.org",
                             "audit@example.org"]
    assert b"audit@example.org" not in m["content"]  # Bcc: the envelope only
    msg = parsed(m)
    assert msg["Bcc"] is None
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Ops", OPS), ("", "desk@example.org")]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Zoë Müller", "zoe@example.org"), ("", "pager@example.org")]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        ("Help Desk, 2nd line", "help@example.org")]
    assert msg["X-Device"] == "boiler-7" and msg["X-Note"] == "long " * 30 + "end"
    assert msg["Subject"] == "Boiler 92 °C" and msg["X-Priority"].startswith("1")
    assert msg["Message-ID"] == "<%s@example.org>" % head["id"]  # put()'s, kept
    assert msg["Date"] == email.utils.formatdate(head["time"], usegmt=True).replace(
        "GMT", "+0000")
    assert abs(head["time"] - time.time()) < 600
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == BODY
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == HTML
    assert files_of(msg) == {
        "all-bytes.bin": ("application/octet-stream", ALL_BYTES, None, "attachment"),
        "readings.bin": ("application/octet-stream", readings, None, "attachment"),
        "Übersicht €.csv": ("text/csv", b"t,v\n1,92\n", None, "attachment"),
        "cam.jpg": ("image/jpeg", picture, None, "attachment"),
        "logo.png": ("image/png", PNG, "<logo>", "inline")}
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert [p.get_content_type() for p in related[0].iter_parts()] == ["text/html",
                                                                        "image/png"]
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "dead") == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_copied_parts_count_against_max_bytes(runtime, server, mp_box, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(20000))  # a Path: not copied, not counted

    def attach(**data):
        return {"attachments": [dict(name="a.bin", type="application/octet-stream", **data)]}

    res = run_ops(runtime, server.port, tmp_path / "refuse", [
        put("one"),
        ["rich", [OPS], "bytes", "b\n", attach(hex=bytes(1600).hex())],
        ["rich", [OPS], "chunks", "b\n", attach(chunks=["x" * 400] * 4)],
        ["rich", [OPS], "file", "b\n", attach(file=str(big))],
        ["rich", [OPS], "html", "b\n", {"html": "<p>" + "x" * 1600 + "</p>"}],
        ["rich", [OPS], "path", "b\n", attach(path=str(big))],
        ["rich", [OPS], "small", "b\n", attach(hex=bytes(500).hex())],
        ["flush"]], mp_box, tmp_path, max_bytes=1500)
    full = ["put-error", microsmtp.OUTBOX_FULL]
    assert res[:8] == [["put", "00000001.msg"], full, full, full, full,
                       ["put", "00000002.msg"], ["put", "00000003.msg"],
                       ["flush", 3, [], []]], res
    assert server.handler.subjects == ["one", "path", "small"]
    assert files_of(parsed(server.handler.messages[1]))["a.bin"][1] == bytes(20000)
    assert files_of(parsed(server.handler.messages[2]))["a.bin"][1] == bytes(500)
    assert os.listdir(tmp_path / "refuse" / "tmp") == []
    server.handler.reset()
    # DROP_OLDEST: the oldest go to make room for the copied parts; one bigger than the
    # whole outbox is refused before anything is dropped for it.
    drop = tmp_path / "drop"
    res = run_ops(runtime, server.port, drop, [
        put("one", "x" * 300), put("two", "x" * 300),
        ["rich", [OPS], "rich", "b\n", attach(hex=bytes(1200).hex())],
        ["rich", [OPS], "huge", "b\n", attach(chunks=["x" * 500] * 5)]],
        mp_box, tmp_path, max_bytes=2000, policy=outbox.DROP_OLDEST)
    assert res[:4] == [["put", "00000001.msg"], ["put", "00000002.msg"],
                       ["put", "00000003.msg"], full], res
    assert sorted(os.listdir(drop)) == ["00000002.msg", "00000003.msg", "dead", "tmp"]
    assert sum(os.stat(drop / n).st_size for n in ("00000002.msg", "00000003.msg")) <= 2000
    assert os.stat(drop / "00000003.msg").st_size > 1200


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_path_gone_at_flush_buries_its_mail_alone(runtime, server, mp_box, tmp_path):
    cam = tmp_path / "cam.jpg"
    cam.write_bytes(b"picture")
    box = tmp_path / "outbox"
    res = run_ops(runtime, server.port, box, [
        ["rich", [OPS], "nowhere", "b\n", {"attachments": [
            {"name": "x.jpg", "type": "image/jpeg", "path": str(tmp_path / "nowhere.jpg")}]}],
        put("one"),
        ["rich", [OPS], "camera", "b\n", {"cc": "pager@example.org", "attachments": [
            {"name": "cam.jpg", "type": "image/jpeg", "path": str(cam)}]}],
        put("three"), ["unlink", str(cam)], ["flush"], ["error"]], mp_box, tmp_path)
    assert res[0] == ["put-refused", "ValueError"]  # gone already: refused by put()
    assert res[4:7] == [["unlink"], ["flush", 2, [], ["00000002.msg"]], ["error"]], res
    assert res[-1] == ["pool", True]
    assert server.handler.subjects == ["one", "three"] and server.handler.sessions == 1
    reply = (box / "dead" / "00000002.reply").read_text()
    assert reply.startswith("Not sent: attachment cam.jpg: its file %s cannot be read"
                            % cam), reply
    # Put back, it can be sent by hand from dead/: the file there is whole.
    assert head_of(box / "dead" / "00000002.msg")["rich"]["cc"] == "pager@example.org"


RICH_TAMPERED = {
    "place-outside": {"body": 2, "attachments": [["a.bin", "text/plain", [0, 999]]]},
    "place-negative": {"body": 2, "html": [-1, 2]},
    "unknown-field": {"body": 2, "sender": "boss@example.org"},
    "injected-cc": {"body": 2, "cc": "x@example.org\r\nBcc: y@evil.org"},
    "own-header": {"body": 2, "headers": [["Bcc", "y@evil.org"]]},
    "injected-header": {"body": 2, "headers": [["X-A", "b\r\nBcc: y@evil.org"]]},
    "injected-filename": {"body": 2, "attachments": [["a\r\nX-Evil: 1", "text/plain",
                                                      [0, 2]]]},
    "injected-type": {"body": 2, "attachments": [["a", "text/plain; x=\"\r\n\"", [0, 2]]]},
    "injected-path": {"body": 2, "attachments": [["a", "text/plain", {"path": "/x\n"}]]},
    "cid-without-html": {"body": 2, "attachments": [["a", "image/png", [0, 2], "logo"]]},
    "no-body": {"cc": "pager@example.org"},
    "not-a-dict": ["cc", "pager@example.org"],
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", list(RICH_TAMPERED) + ["rcpt-not-a-recipient",
                                                        "named-to-without-rich"])
def test_a_tampered_rich_file_goes_to_dead_and_the_rest_goes_out(runtime, case, server,
                                                                 mp_box, tmp_path):
    box = tmp_path / "outbox"
    box.mkdir()
    head = {"to": [OPS], "subject": "x", "rich": RICH_TAMPERED.get(case, {"body": 2})}
    if case == "rcpt-not-a-recipient":  # the retry list may only narrow the envelope
        head["rcpt"] = ["evil@example.org"]
    elif case == "named-to-without-rich":  # a display name is for mime.py's checks only
        head = {"to": ['"Ops" <ops@example.org>'], "subject": "x"}
    (box / "00000001.msg").write_bytes(json.dumps(head).encode() + b"\nb\n")
    res = run_ops(runtime, server.port, box, [put("good"), ["flush"]], mp_box, tmp_path)
    assert res[:2] == [["put", "00000002.msg"], ["flush", 1, [], ["00000001.msg"]]], res
    assert server.handler.subjects == ["good"] and server.handler.sessions == 1
    assert b"evil" not in server.handler.messages[0]["content"]
    assert "Unreadable outbox file" in (box / "dead" / "00000001.reply").read_text()


@pytest.fixture
def rcpt_server():
    yield from servers.serving(Recorder(rcpt_reply=grey_or_gone), auth=False)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_partly_refused_rich_mail_keeps_its_headers(runtime, rcpt_server, mp_box, tmp_path):
    # grey (Cc) is greylisted, gone (Bcc) refused for good: ops took it. The retry goes to
    # grey alone, the same mail (To, Cc, no Bcc, Date, Message-ID, parts); gone's copy is
    # buried whole. (A plain mail's To is rewritten instead: its old format has no room.)
    srv = rcpt_server
    box = tmp_path / "outbox"
    rich = {"cc": "Grey <%s>" % GREY, "bcc": GONE, "attachments": [
        {"name": "all-bytes.bin", "type": "application/octet-stream", "hex": ALL_BYTES.hex()}]}
    res = run_ops(runtime, srv.port, box, [["rich", [OPS], "Door", BODY, rich], ["flush"],
                                           ["error"], ["reboot"], ["flush"], ["error"]],
                  mp_box, tmp_path)
    assert res[1] == ["flush", 1, ["00000001.msg"], ["00000002.msg"]], res
    assert res[2][:3] == ["error", microsmtp.RCPT_REPLY_ERROR, "RCPT"]
    assert res[4] == ["flush", 1, [], ["00000002.msg"]] and res[5] == ["error"], res
    first, retry = srv.handler.messages
    assert first["rcpt_tos"] == [OPS] and retry["rcpt_tos"] == [GREY]
    a, b = parsed(first), parsed(retry)
    for field in ("To", "Cc", "Date", "Message-ID", "Subject"):
        assert a[field] == b[field], field
    assert b["Cc"].addresses[0].display_name == "Grey" and b["Bcc"] is None
    assert b"gone@" not in retry["content"]
    assert files_of(b)["all-bytes.bin"][1] == ALL_BYTES
    dead = box / "dead" / "00000002.msg"
    assert head_of(dead)["rcpt"] == [GONE] and head_of(dead)["rich"]["bcc"] == GONE
    assert dead.read_bytes().endswith(ALL_BYTES)
    assert GONE + " 550" in (box / "dead" / "00000002.reply").read_text()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_plain_put_writes_the_old_format_and_loads_no_mime(runtime, server, mp_box,
                                                             tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "microsmtp.mime", raising=False)  # (CPython: shared)
    box = tmp_path / "outbox"
    box.mkdir()
    # Files an older firmware wrote: the fewest fields, and all of them.
    (box / "00000001.msg").write_bytes(b'{"to": ["ops@example.org"], "subject": "old"}\n'
                                       b"Old body.\n")
    (box / "00000002.msg").write_bytes(
        b'{"to": ["ops@example.org"], "subject": "old 2", "priority": 4, "time": 1767323045, '
        b'"id": "0123456789abcdef01234567"}\nOld body 2.\n')
    res = run_ops(runtime, server.port, box, [put("new", "New body.\n"), ["modules"],
                                              ["flush"], ["modules"]], mp_box, tmp_path)
    assert res[:4] == [["put", "00000003.msg"], ["modules", False], ["flush", 3, [], []],
                       ["modules", False]], res
    assert server.handler.subjects == ["old", "old 2", "new"]
    assert [parsed(m).get_content().replace("\r\n", "\n")
            for m in server.handler.messages] == ["Old body.\n", "Old body 2.\n", "New body.\n"]
    assert server.handler.tries[1][1:] == ("Fri, 02 Jan 2026 03:04:05 +0000",
                                           "<0123456789abcdef01234567@example.org>")
    res = run_ops(runtime, server.port, box, [put("format", "Body.\n")], mp_box, tmp_path)
    line, body = (box / res[0][1]).read_bytes().split(b"\n", 1)
    assert sorted(json.loads(line)) == ["id", "priority", "subject", "time", "to"]
    assert body == b"Body.\n" and not line.endswith(b" ")


class PowerCut(BaseException):
    """The board loses power: nothing in the firmware catches it."""


@pytest.mark.parametrize("at", ["copy", "sync", "rename"])
def test_a_power_cut_in_a_rich_put_leaves_no_message(at, server, tmp_path, monkeypatch):
    # Cut while the parts are copied, before the sync, before the rename: after the
    # reboot there is no message and tmp/ is empty; the next put and flush go on. (The
    # SIGKILL test below cuts the unix port at random moments instead.)
    client = microsmtp.Client("127.0.0.1", server.port, from_address="boiler@example.org",
                              tls=microsmtp.TLS_NONE, net=net)
    box = tmp_path / "outbox"
    o = outbox.Outbox(client, str(box))

    def chunks():
        yield b"x" * 300
        if at == "copy":
            raise PowerCut
        yield b"y" * 300

    if at == "sync":
        from microsmtp import outbox_rich

        monkeypatch.setattr(outbox_rich, "_sync", lambda f: (_ for _ in ()).throw(PowerCut))
    elif at == "rename":
        monkeypatch.setattr(os, "rename", lambda a, b: (_ for _ in ()).throw(PowerCut))
    with pytest.raises(PowerCut):
        o.put(OPS, "cut", "b\n", attachments=[("a.bin", "application/octet-stream",
                                                chunks())])
    monkeypatch.undo()
    o = outbox.Outbox(client, str(box))  # the reboot
    assert o.pending() == [] and os.listdir(box / "tmp") == []
    o.put(OPS, "after", "b\n", attachments=[("a.bin", "text/plain", b"whole")])
    assert o.flush() == 1 and server.handler.subjects == ["after"]


POWER_TRIALS = 60


def until(proc, marker, deadline):
    """proc's output until it holds marker (or it ends, or the deadline)."""
    seen = b""
    while marker not in seen and time.monotonic() < deadline:
        ready = select.select([proc.stdout], [], [], 0.2)[0]
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.unixport
def test_no_rich_alert_lost_or_torn_across_power_cuts(tmp_path):
    # test_powercut.py's approach with rich puts (a 48 KB attachment copied from a file, a
    # Path one): the unix port killed at random moments (half of them aimed at a put()),
    # then drained. Every file left is
    # whole (its parts all there), every put() that returned is delivered, byte-exact.
    from test_powercut import launcher

    rng = random.Random(20261130)
    srv = Server(auth=False).start()
    box = tmp_path / "outbox"
    data = bytes((i * 13 + i // 256) & 255 for i in range(48 * 1024))
    (tmp_path / "data.bin").write_bytes(data)
    (tmp_path / "cam.jpg").write_bytes(b"picture" * 100)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"port": srv.port, "path": str(box), "per_trial": 2,
                               "rich": {"data": str(tmp_path / "data.bin"),
                                        "path": str(tmp_path / "cam.jpg")}}))
    cmd, env = launcher(tmp_path)
    # A rich mail's flush does not fit HARNESS_HEAP (see HEAP_TEST_HEAP): test_rich's 64K.
    cmd = ["heapsize=" + HEAP_TEST_HEAP if c.startswith("heapsize=") else c for c in cmd]
    confirmed = []
    cut_in_put = 0  # trials killed inside a put()
    deadline = time.monotonic() + 120
    try:
        for trial in range(POWER_TRIALS):
            assert time.monotonic() < deadline, "the power-cut test ran out of time"
            proc = subprocess.Popen(cmd + [str(cfg), str(trial)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            seen = b""
            if trial % 2:  # aimed: the cut within a few ms of a put() starting
                seen = until(proc, b"putting ", deadline)
                wait = rng.uniform(0.0, 0.004)
            else:  # any moment of the run
                wait = rng.uniform(0.0, 0.4)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            out = (seen + proc.communicate(timeout=10)[0]).decode().splitlines()
            confirmed += [line.split()[1] for line in out if line.startswith("put ")]
            cut_in_put += bool(out) and out[-1].startswith("putting ") and \
                proc.returncode == -signal.SIGKILL
        for name in os.listdir(box):  # whole: the head line and every part it names
            if name.endswith(".msg"):
                raw = (box / name).read_bytes()
                line, rest = raw.split(b"\n", 1)
                fields = json.loads(line)["rich"]
                assert len(rest) == fields["body"] + sum(
                    a[2][1] for a in fields["attachments"] if isinstance(a[2], list)), name
        drain = subprocess.run(cmd + [str(cfg), "drain"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert "left 0" in drain.stdout, drain.stdout + drain.stderr + str(
            {n: (box / "dead" / n).read_text() for n in os.listdir(box / "dead")
             if n.endswith(".reply")})
    finally:
        srv.stop()
    delivered = srv.handler.subjects
    lost = [s for s in confirmed if s not in delivered]
    assert not lost, "alerts lost: %r" % lost[:10]
    for m in srv.handler.messages:
        files = files_of(parsed(m))
        assert files["data.bin"][1] == data and files["cam.jpg"][1] == b"picture" * 100
        assert m["rcpt_tos"] == [OPS, "audit@example.org"]
    print("\n%d power cuts (%d inside a put), %d rich alerts queued, %d delivered (%d "
          "duplicates)" % (POWER_TRIALS, cut_in_put, len(confirmed), len(set(delivered)),
                           len(delivered) - len(set(delivered))))
    assert len(confirmed) >= POWER_TRIALS // 2 and cut_in_put >= 3
    assert not os.listdir(box / "tmp") and not os.listdir(box / "dead")


# test_rich.py's RICH_HEAP: a rich mail's flush with mime.py's Mail (its fixed buffers)
# does not fit the plain outbox tests' HARNESS_HEAP (56K: "Out of memory (OUTBOX)").
HEAP_TEST_HEAP = "64K"


@pytest.mark.unixport
def test_a_rich_put_allocates_little(server, tmp_path):
    # No whole-attachment reads: on the unix port (the code in emulated flash, as on a
    # board) a rich put and its flush allocate the same whether the copied attachment is
    # 1 KB or 48 KB (its bytes go through a 256-byte buffer at put, through file slices
    # and the pool at flush), each mail measured the second time round.
    small, big, cam = tmp_path / "small.bin", tmp_path / "big.bin", tmp_path / "cam.jpg"
    small.write_bytes(bytes(range(256)) * 4)
    big.write_bytes(bytes(range(256)) * 192)
    cam.write_bytes(b"picture" * 300)
    cfg = tmp_path / "heap.json"
    cfg.write_text(json.dumps({"port": server.port, "path": str(tmp_path / "outbox"),
                               "small": str(small), "big": str(big), "cam": str(cam)}))
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_outbox_heap.py"],
                               tmp_path / "mp_heap")
    proc = runtimes.run_micropython("mp_outbox_heap", [str(cfg)],
                                    [mpy, runtimes.firmware_mpy()], timeout=60,
                                    heap=HEAP_TEST_HEAP)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (proc.stdout + proc.stderr)[-2000:]
    m = json.loads(lines[-1])
    print("\n" + ", ".join("%s %s" % (k, m[k]) for k in sorted(m)))
    assert all(m["sent " + k] for k in ("plain", "small", "big")), json.dumps(m)
    assert m["put big"] <= m["put small"] + 256, m  # (slack: a longer number in JSON)
    assert m["flush big"] <= m["flush small"] + 256, m
    assert len(server.handler.messages) == 6
    got = files_of(parsed(server.handler.messages[5]))
    assert got["data.bin"][1] == big.read_bytes() and got["cam.jpg"][1] == cam.read_bytes()


def test_a_part_that_fails_mid_send_keeps_the_mail(server, tmp_path, monkeypatch):
    # An OSError while an attachment streams (flash, an SD card pulled: injected) ends the
    # session; flush() does not raise, the mail stays queued with last_error, every buffer
    # is back, and the next flush sends it whole.
    from microsmtp import outbox_rich

    client = microsmtp.Client("127.0.0.1", server.port, from_address="boiler@example.org",
                              tls=microsmtp.TLS_NONE, net=net)
    o = outbox.Outbox(client, str(tmp_path / "outbox"), backoff=1)
    name = o.put(OPS, "flaky", "b\n", attachments=[("a.bin", "application/octet-stream",
                                                     ALL_BYTES)])
    readinto = outbox_rich._Part.readinto

    def failing(self, buf):
        if self.size == len(ALL_BYTES):
            raise OSError(5, "EIO")
        return readinto(self, buf)

    monkeypatch.setattr(outbox_rich._Part, "readinto", failing)
    assert o.flush() == 0 and o.pending() == [name] and o.dead() == []
    assert o.last_error.status == microsmtp.MESSAGE_FORMAT_ERROR
    assert "could not be read" in str(o.last_error)
    assert client.pool.available() == client.pool.count
    monkeypatch.undo()
    o = outbox.Outbox(client, str(tmp_path / "outbox"))  # a reboot: due at once
    assert o.flush() == 1 and o.pending() == []
    assert server.handler.subjects == ["flaky"]
    assert files_of(parsed(server.handler.messages[0]))["a.bin"][1] == ALL_BYTES


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_partly_refused_rich_mail_without_cc_keeps_its_to(runtime, rcpt_server, mp_box,
                                                            tmp_path):
    # Bare addresses in To, an attachment: To is written from the envelope, so the retry
    # for grey alone must still show both (the headers are the mail's, not the retry's).
    srv = rcpt_server
    res = run_ops(runtime, srv.port, tmp_path / "outbox", [
        ["rich", [OPS, GREY], "Window", BODY, {"attachments": [
            {"name": "a.txt", "type": "text/plain", "text": "open"}]}],
        ["flush"], ["reboot"], ["flush"]], mp_box, tmp_path)
    assert res[1] == ["flush", 1, ["00000001.msg"], []], res
    assert res[3] == ["flush", 1, [], []], res
    first, retry = srv.handler.messages
    assert first["rcpt_tos"] == [OPS] and retry["rcpt_tos"] == [GREY]
    assert parsed(retry)["To"] == parsed(first)["To"] == "%s, %s" % (OPS, GREY)
    assert files_of(parsed(retry))["a.txt"][1] == b"open"


def test_keywords_given_as_none_are_none_as_send_takes_them(server, tmp_path):
    client = microsmtp.Client("127.0.0.1", server.port, from_address="boiler@example.org",
                              tls=microsmtp.TLS_NONE, net=net)
    o = outbox.Outbox(client, str(tmp_path / "outbox"))
    o.put(OPS, "nones", "b\n", html=None, reply_to=None, headers=None)
    assert head_of(tmp_path / "outbox" / "00000001.msg")["rich"] == {"body": 2}
    assert o.flush() == 1
    msg = parsed(server.handler.messages[0])
    assert msg.get_content_type() == "text/plain" and msg["Reply-To"] is None
    with pytest.raises(TypeError):  # as send() refuses it
        o.put(OPS, "x", "b\n", cc=None)
    assert o.pending() == [] and os.listdir(tmp_path / "outbox" / "tmp") == []
