"""The durable outbox against a real aiosmtpd server, on CPython and the MicroPython unix
port: one session for the whole queue, 5xx to dead/, 4xx and outages kept, a reboot, the
full policies, and a put() cut short by a power cut."""

import json
import os
import socket

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

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        subject = [line for line in envelope.content.split(b"\r\n")
                   if line.startswith(b"Subject: ")][0][9:].decode()
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
