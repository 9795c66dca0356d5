"""The durable outbox against a real aiosmtpd server, on CPython and the MicroPython unix
port: one session for the whole queue, 5xx to dead/, 4xx and outages kept, a reboot, the
full policies, and a put() cut short by a power cut."""

import email
import email.policy
import email.utils
import json
import os
import socket
import subprocess
import sys
import time

import microsmtp
import outbox_ops
import pytest
import runtimes
from microsmtp import outbox
from microsmtp_host.shim import net
from test_integration import LoopbackController

RUNTIMES = ["cpython", "micropython"]


class Handler:
    """Counts sessions; refuses by subject: "bad" → 550, "later" → 451."""

    def __init__(self):
        self.sessions = 0
        self.subjects = []
        self.tries = []  # (Subject, Date, Message-ID) of every message, refused ones too

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        subject = msg["Subject"]
        self.tries.append((subject, msg["Date"], msg["Message-ID"]))
        if "bad" in subject:
            return "550 5.7.1 refused for good"
        if "later" in subject:
            return "451 4.3.0 try again later"
        self.subjects.append(subject)
        return "250 OK"


@pytest.fixture
def server():
    handler = Handler()
    ctl = LoopbackController(handler, hostname="127.0.0.1")
    ctl.start()
    yield ctl, handler
    ctl.stop()


@pytest.fixture
def mp_dir(tmp_path_factory):
    return runtimes.compile_mpy([runtimes.ROOT / "tests" / "outbox_ops.py",
                                 runtimes.ROOT / "tests" / "mp_outbox.py"],
                                tmp_path_factory.mktemp("mp_outbox"))


def run_ops(runtime, port, path, ops, mp_dir, tmp_path, **kwargs):
    if runtime == "cpython":
        client = microsmtp.Client("127.0.0.1", port, from_address="boiler@example.org",
                                  client_domain="boiler.example.org", tls=microsmtp.TLS_NONE,
                                  net=net, timeouts={"connect": 2, "greeting": 2,
                                                     "envelope": 2, "message": 3})
        return json.loads(json.dumps(outbox_ops.run(microsmtp, outbox, client, str(path), ops,
                                                    kwargs)))
    cfg = tmp_path / "outbox.json"
    cfg.write_text(json.dumps({"port": port, "path": str(path), "ops": ops, "kwargs": kwargs}))
    proc = runtimes.run_micropython("mp_outbox", [str(cfg)], [mp_dir, runtimes.firmware_mpy()],
                                    timeout=60, heap=runtimes.HARNESS_HEAP)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert lines, proc.stderr[-2000:]
    return json.loads(lines[-1])


def put(subject):
    return ["put", ["ops@example.org"], subject, "Reading: %s\n.\nend\n" % subject]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_whole_queue_in_one_session(runtime, server, mp_dir, tmp_path):
    ctl, handler = server
    res = run_ops(runtime, ctl.port, tmp_path / "outbox",
                  [put("one"), put("two"), put("three"), ["flush"]], mp_dir, tmp_path)
    assert res[3] == ["flush", 3, [], []]
    assert handler.sessions == 1 and handler.subjects == ["one", "two", "three"]
    assert res[-1] == ["pool", True]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_refused_for_good_goes_to_dead_the_rest_goes_out(runtime, server, mp_dir, tmp_path):
    ctl, handler = server
    res = run_ops(runtime, ctl.port, tmp_path / "outbox",
                  [put("one"), put("bad one"), put("later one"), put("four"), ["flush"]],
                  mp_dir, tmp_path)
    flush = res[4]
    assert flush[1] == 2 and handler.subjects == ["one", "four"]
    assert flush[2] == ["00000003.msg"]  # 451: still queued
    assert flush[3] == ["00000002.msg"]  # 550: dead, with the server's words beside it
    reply = (tmp_path / "outbox" / "dead" / "00000002.reply").read_text()
    assert "550" in reply and "refused for good" in reply
    assert handler.sessions == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_outage_keeps_everything_until_the_server_is_back(runtime, mp_dir, tmp_path):
    with socket.socket() as s:  # a port with nothing listening: the server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = tmp_path / "outbox"
    res = run_ops(runtime, port, box, [put("a"), put("b"), ["flush"], ["flush"]], mp_dir,
                  tmp_path)
    assert res[2] == ["flush", 0, ["00000001.msg", "00000002.msg"], []]
    assert res[3][1] == 0  # not due yet: backoff
    # The server comes back; the board reboots (backoff is in RAM): all due at once.
    handler = Handler()
    ctl = LoopbackController(handler, hostname="127.0.0.1")
    ctl.start()
    try:
        res = run_ops(runtime, ctl.port, box, [["reboot"], ["flush"]], mp_dir, tmp_path)
    finally:
        ctl.stop()
    assert res[0] == ["reboot", ["00000001.msg", "00000002.msg"]]
    assert res[1] == ["flush", 2, [], []] and handler.subjects == ["a", "b"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_full_outbox_policies(runtime, server, mp_dir, tmp_path):
    ctl, handler = server
    res = run_ops(runtime, ctl.port, tmp_path / "refuse", [put("1"), put("2"), put("3")],
                  mp_dir, tmp_path, max_messages=2)
    assert res[2] == ["put-error", microsmtp.OUTBOX_FULL]
    res = run_ops(runtime, ctl.port, tmp_path / "drop", [put("1"), put("2"), put("3"),
                                                         ["flush"]],
                  mp_dir, tmp_path, max_messages=2, policy=outbox.DROP_OLDEST)
    assert res[2] == ["put", "00000003.msg"]
    assert res[3][1] == 2 and handler.subjects == ["2", "3"]


def test_a_put_cut_short_leaves_no_message(server, tmp_path):
    ctl, handler = server
    box = tmp_path / "outbox"
    os.makedirs(box / "tmp")
    (box / "tmp" / "00000001.msg").write_bytes(b'{"to": ["ops@exa')  # power cut mid-write
    client = microsmtp.Client("127.0.0.1", ctl.port, from_address="boiler@example.org",
                              tls=microsmtp.TLS_NONE, net=net)
    o = outbox.Outbox(client, str(box))
    assert o.pending() == [] and os.listdir(box / "tmp") == []
    assert o.flush() == 0 and handler.sessions == 0


def test_outbox_full_status_is_the_package_s():
    assert outbox.OUTBOX_FULL == microsmtp.OUTBOX_FULL
    with pytest.raises(ValueError):
        outbox.Outbox(None, "/nonexistent-never-made", policy=7)


class Clock:
    """time.ticks_* on a virtual clock that starts just before the wrap (as a board's does
    after 12.4 days), so a retry time is computed across it."""

    def __init__(self):
        self.now = (1 << 30) - 500

    def ticks_ms(self):
        return self.now & ((1 << 30) - 1)

    def ticks_add(self, t, delta):
        return (t + delta) & ((1 << 30) - 1)

    def ticks_diff(self, a, b):
        return ((a - b + (1 << 29)) & ((1 << 30) - 1)) - (1 << 29)

    gmtime = staticmethod(time.gmtime)
    time = staticmethod(time.time)


def unreachable_outbox(monkeypatch, tmp_path):
    """An outbox on the virtual clock whose server port has nothing listening: every
    flush fails at connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = Clock()
    monkeypatch.setattr(outbox, "time", clock)
    client = microsmtp.Client("127.0.0.1", port, from_address="boiler@example.org",
                              tls=microsmtp.TLS_NONE, net=net)
    return clock, client, outbox.Outbox(client, str(tmp_path / "outbox"), backoff=1)


def test_backoff_doubles_with_jitter_up_to_an_hour(monkeypatch, tmp_path):
    clock, client, box = unreachable_outbox(monkeypatch, tmp_path)
    name = box.put("ops@example.org", "Door", "Opened\n")
    assert box.due() == [name] and box.last_error is None
    for tries in range(1, 16):
        assert box.flush() == 0
        assert box.last_error.status == microsmtp.CONNECT_ERROR and box.last_error.temporary
        wait = min(1000 << (tries - 1), 3600000)
        start = clock.now
        clock.now = start + wait - wait // 8 - 1  # before the earliest jittered time
        assert box.due() == [], tries
        clock.now = start + wait + wait // 8  # by the latest
        assert box.due() == [name], tries
    assert box.pending() == [name] and client.pool.available() == client.pool.count


def test_jitter_spreads_messages_that_failed_together(monkeypatch, tmp_path):
    clock, _, box = unreachable_outbox(monkeypatch, tmp_path)
    for i in range(10):
        box.put("ops@example.org", "Alert %d" % i, "Body\n")
    box.flush()  # all ten fail in one go
    start, came_due = clock.now, []
    for t in range(875 - 1, 1125 + 1):
        clock.now = start + t
        came_due.append(len(box.due()))
    assert came_due[0] == 0 and came_due[-1] == 10
    assert len(set(came_due)) > 2  # not all at the same millisecond


@pytest.mark.parametrize("backoff", [0, -1, 3601])
def test_backoff_must_be_sensible(backoff, tmp_path):
    with pytest.raises(ValueError, match="backoff"):
        outbox.Outbox(None, str(tmp_path / "outbox"), backoff=backoff)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_try_has_the_same_message_id(runtime, server, mp_dir, tmp_path):
    ctl, handler = server
    box = tmp_path / "outbox"
    res = run_ops(runtime, ctl.port, box, [put("later"), ["flush"], ["reboot"], ["flush"]],
                  mp_dir, tmp_path)
    assert res[1][1] == 0 and res[3][1] == 0  # 451 twice: still queued
    assert [t[0] for t in handler.tries] == ["later", "later"]
    assert handler.tries[0][2] == handler.tries[1][2]  # a duplicate can be recognised
    assert handler.tries[0][2].endswith("@example.org>")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_date_is_when_the_alert_was_queued(runtime, server, mp_dir, tmp_path):
    # Files as put() writes them, queued an outage ago; the first mail of a flush and the
    # ones after it (handed over mid-session) each keep their own Date and Message-ID.
    ctl, handler = server
    box = tmp_path / "outbox"
    box.mkdir()
    for n, (when, token) in enumerate([(1767323045, "0123456789abcdef01234567"),
                                       (1767409506, "89abcdef0123456789abcdef")], 1):
        head = {"to": ["ops@example.org"], "subject": "Door opened %d" % n, "priority": 4,
                "time": when,  # both runtimes count from 1970; a board reads its own
                "id": token}
        (box / ("%08d.msg" % n)).write_bytes(json.dumps(head).encode() + b"\nBack door.\n")
    res = run_ops(runtime, ctl.port, box, [put("now"), ["flush"]], mp_dir, tmp_path)
    assert res[1] == ["flush", 3, [], []] and handler.sessions == 1
    assert handler.tries[:2] == [
        ("Door opened 1", "Fri, 02 Jan 2026 03:04:05 +0000",
         "<0123456789abcdef01234567@example.org>"),
        ("Door opened 2", "Sat, 03 Jan 2026 03:05:06 +0000",
         "<89abcdef0123456789abcdef@example.org>")]
    # The one put() just now: today's date, its own id.
    subject, date, msgid = handler.tries[2]
    sent = email.utils.parsedate_to_datetime(date).timestamp()
    assert subject == "now" and abs(sent - time.time()) < 600
    assert msgid not in (handler.tries[0][2], handler.tries[1][2])


def test_put_stores_its_own_time(monkeypatch, tmp_path):
    clock = Clock()
    clock.time = lambda: 1767323045
    monkeypatch.setattr(outbox, "time", clock)
    box = outbox.Outbox(None, str(tmp_path / "outbox"))
    name = box.put("ops@example.org", "Door", "Opened\n")
    head = json.loads((tmp_path / "outbox" / name).read_bytes().split(b"\n")[0])
    assert head["time"] == 1767323045 and len(head["id"]) == 24


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("content", [
    b'{"to": ["ops@exa',  # cut (flash damage: put() itself cannot leave this)
    b'{"to": ["ops@example.org\\r\\nRCPT TO:<x@evil.org>"], "subject": "x"}\nbody\n',
    b'{"to": ["ops@example.org"], "subject": "x", "id": "a>\\r\\nBcc: x"}\nbody\n',
    b'{"subject": "x"}\nbody\n',
    b'{"to": [], "subject": "x"}\nbody\n',
    b'\xff\xfe\nbody\n',
], ids=["cut", "injected-rcpt", "injected-id", "no-to", "empty-to", "binary"])
def test_an_unreadable_file_goes_to_dead_and_the_rest_goes_out(runtime, content, server,
                                                               mp_dir, tmp_path):
    ctl, handler = server
    box = tmp_path / "outbox"
    box.mkdir()
    (box / "00000001.msg").write_bytes(content)
    res = run_ops(runtime, ctl.port, box, [put("good"), ["flush"]], mp_dir, tmp_path)
    assert res[0] == ["put", "00000002.msg"]
    assert res[1] == ["flush", 1, [], ["00000001.msg"]]
    assert handler.subjects == ["good"] and handler.sessions == 1
    assert "Unreadable outbox file" in (box / "dead" / "00000001.reply").read_text()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_second_refusal_does_not_overwrite_the_first_in_dead(runtime, server, mp_dir,
                                                               tmp_path):
    ctl, handler = server
    box = tmp_path / "outbox"
    res = run_ops(runtime, ctl.port, box, [put("bad 1"), ["flush"], put("bad 2"), ["flush"]],
                  mp_dir, tmp_path)
    assert res[1] == ["flush", 0, [], ["00000001.msg"]]
    assert res[2] == ["put", "00000002.msg"]  # numbered after the dead one
    assert res[3] == ["flush", 0, [], ["00000001.msg", "00000002.msg"]]


LAZY = """import sys
import microsmtp
client = microsmtp.Client("127.0.0.1", 25, from_address="boiler@example.org")
print(sorted(m for m in ("microsmtp.outbox", "microsmtp.secure", "json") if m in sys.modules))
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_outbox_is_loaded_only_by_apps_that_use_it(runtime, tmp_path):
    # A plain send must not pay for the outbox (or TLS) in heap: neither is imported.
    (tmp_path / "lazy.py").write_text(LAZY)
    if runtime == "cpython":
        res = subprocess.run([sys.executable, "-c", "from microsmtp_host import shim; "
                              "shim.install(); exec(open('lazy.py').read())"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PYTHONPATH": str(runtimes.ROOT / "host")})
        assert res.returncode == 0, res.stderr
        assert "'microsmtp.outbox'" not in res.stdout and "secure" not in res.stdout
        return
    tree = runtimes.compile_mpy([tmp_path / "lazy.py"], tmp_path / "mpy")
    res = runtimes.run_micropython("lazy", [], [tree, runtimes.firmware_mpy()], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dead_keeps_only_the_newest(runtime, server, mp_dir, tmp_path):
    ctl, handler = server
    box = tmp_path / "outbox"
    res = run_ops(runtime, ctl.port, box, [put("bad 1"), put("bad 2"), ["flush"],
                                           put("bad 3"), ["flush"]],
                  mp_dir, tmp_path, max_messages=2)
    assert res[2] == ["flush", 0, [], ["00000001.msg", "00000002.msg"]]
    assert res[4] == ["flush", 0, [], ["00000002.msg", "00000003.msg"]]
    assert sorted(p.name for p in (box / "dead").iterdir()) == [
        "00000002.msg", "00000002.reply", "00000003.msg", "00000003.reply"]
