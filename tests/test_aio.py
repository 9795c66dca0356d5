"""microsmtp.aio against real servers on both runtimes (tests/mp_aio.py is the app): a
ticker task keeps its cadence while a send waits on a slow server; a cancelled send
closes the connection before its "." and gives every buffer back; TLS both ways; a
session and mail_send. The scenario table runs through aio too (test_scenarios.py)."""

import asyncio
import json
import socket
import threading

import microsmtp
import pytest
import runtimes
from servers import RCPT, SENDER, ListeningThread, Server, SlowRecorder

BOTH = pytest.mark.parametrize("runtime", ["cpython", pytest.param(
    "micropython", marks=pytest.mark.unixport)])
AIO_HEAP = "80K"  # the app, asyncio's scheduler and aio.py besides the client; TLS needs more
AIO_TLS_HEAP = "96K"


class StallsInTheBody(ListeningThread):
    """Speaks SMTP up to the 354, then reads nothing until `release` is set (the test sets
    it once the client has been cancelled): the client's writes block mid-body. Then it
    reads to EOF: `received` is what came after the 354, `eof` set when the client's close
    came behind it."""

    def __init__(self):
        self.received = None
        self.release = threading.Event()
        self.eof = threading.Event()
        super().__init__()
        # A small receive buffer, inherited by the accepted socket: the client blocks soon.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)

    def handle(self, conn):
        with conn:
            conn.settimeout(5)
            f = conn.makefile("rb")
            conn.sendall(b"220 stall.test ESMTP\r\n")
            for reply in (b"250 stall.test\r\n", b"250 ok\r\n", b"250 ok\r\n",
                          b"354 go ahead\r\n"):
                f.readline()
                conn.sendall(reply)
            self.release.wait(30)
            data = b""
            try:
                while True:
                    chunk = f.read1(65536)
                    if not chunk:
                        self.eof.set()
                        break
                    data += chunk
            except OSError:  # a timeout: the client never closed
                pass
            self.received = data


def run(runtime, cfg, tmp_path, heap=AIO_HEAP):
    """tests/mp_aio.py's result for cfg on runtime: "micropython" runs the code from
    emulated flash (as frozen), "micropython-ram" with the .mpy files in the heap (as
    `mip install` or `deploy --mpy` leave them on stock firmware)."""
    cfg = dict({"server": "127.0.0.1", "from": SENDER, "to": [RCPT],
                "subject": "Boiler alert"}, **cfg)
    if runtime == "cpython":
        import mp_aio
        from microsmtp_host.shim import net

        out = []
        mp_aio.run(cfg, out.append, net=net)
        return out[0]
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_aio.py"], tmp_path / "mp_aio")
    path = tmp_path / "mp_aio.json"
    path.write_text(json.dumps(cfg))
    proc = runtimes.run_micropython("mp_aio", [str(path)], [mpy, runtimes.firmware_mpy()],
                                    timeout=60, heap=heap, rom=runtime == "micropython")
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert out, "MicroPython exit %d: %s" % (proc.returncode,
                                             (proc.stderr or proc.stdout)[-2000:])
    return out[0]


@pytest.fixture
def slow_server():
    srv = Server(handler=SlowRecorder(0.2), auth=False).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("runtime", ["cpython", pytest.param(
    "micropython", marks=pytest.mark.unixport), pytest.param(
    "micropython-ram", marks=pytest.mark.unixport)])
def test_the_ticker_keeps_its_cadence_while_a_send_waits(runtime, slow_server, tmp_path):
    """Every reply 200 ms late (4 of them: about 0.8 s of waiting): a task ticking every
    10 ms is never held up more than 50 ms."""
    res = run(runtime, {"port": slow_server.port}, tmp_path)
    assert res["status"] == 0, res
    assert res["ms"] >= 800, res  # the waits really happened
    assert res["max_gap_ms"] <= 50, res
    assert res["ticks"] >= 40, res
    assert res["pool_full"], res
    assert slow_server.handler.subjects == ["Boiler alert"]


@BOTH
@pytest.mark.parametrize("how", ["session", "mail_send"])
def test_a_session_and_mail_send(runtime, how, tmp_path):
    srv = Server(auth=False).start()
    try:
        res = run(runtime, {"port": srv.port, "how": how}, tmp_path)
    finally:
        srv.stop()
    assert res["status"] == 0 and res["pool_full"], res
    expected = ["Boiler alert 1", "Boiler alert 2"] if how == "session" else ["Boiler alert"]
    assert srv.handler.subjects == expected
    assert srv.handler.sessions == 1


@BOTH
def test_a_cancelled_send_closes_before_the_dot(runtime, tmp_path):
    """Cancelled 300 ms into a 4 MB body that the server stopped reading: the connection
    closes at once, the server never gets the final "." (no message), every buffer is back,
    and the same client sends the next mail."""
    stall = StallsInTheBody()
    good = Server(auth=False).start()
    body = tmp_path / "big.txt"
    body.write_bytes((b"0123456789abcdef" * 4 + b"\n") * 65536)  # 4 MB, 65-byte lines
    try:
        res = run(runtime, {"port": stall.port, "body_file": str(body),
                            "cancel_after_ms": 300, "next_port": good.port}, tmp_path)
        stall.release.set()
        assert stall.eof.wait(10), "the cancelled send did not close its connection"
    finally:
        stall.release.set()
        stall.stop()
        good.stop()
    assert res["cancelled"], res
    assert res["pool_full"], res
    assert 0 < len(stall.received) < len(body.read_bytes()), len(stall.received)
    assert not stall.received.endswith(b"\r\n.\r\n"), "the message was completed"
    assert b"\r\n.\r\n" not in stall.received
    assert res["next_status"] == 0 and res["next_pool_full"], res
    assert good.handler.subjects == ["next"]


@BOTH
def test_a_server_that_never_answers_times_out(runtime, silent_server, tmp_path):
    res = run(runtime, {"port": silent_server.port, "timeouts": {"greeting": 0.5}}, tmp_path)
    assert res["status"] == microsmtp.TIMEOUT_ERROR and res["step"] == "GREETING", res
    assert 500 <= res["ms"] < 3000, res
    assert res["max_gap_ms"] <= 50, res
    assert res["pool_full"], res


@BOTH
def test_a_refused_connection(runtime, refused_port, tmp_path):
    res = run(runtime, {"port": refused_port}, tmp_path)
    assert res["status"] == microsmtp.CONNECT_ERROR and res["step"] == "CONNECT", res
    assert "refused" in res["error"].lower(), res  # ECONNREFUSED, or CPython's words
    assert res["pool_full"], res


@BOTH
@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_tls(runtime, kind, aio_server, pki, tmp_path):
    import tls_servers

    srv = aio_server(kind)
    res = run(runtime, {"server": tls_servers.HOST, "port": srv.port,
                        "tls": tls_servers.TLS_KINDS[kind], "cadata": pki.cadata("pem"),
                        "username": tls_servers.USER, "password": tls_servers.PASSWORD},
              tmp_path, heap=AIO_TLS_HEAP)
    assert res["status"] == 0 and res["pool_full"], res
    assert srv.handler.auth_log and srv.handler.auth_log[-1][1] is True
    assert len(srv.handler.messages) == 1 and srv.handler.messages[0]["tls"]


@BOTH
@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_tls_with_the_wrong_ca_is_refused(runtime, kind, aio_server, pki, tmp_path):
    import tls_servers

    srv = aio_server(kind, cert="unknown-ca")
    res = run(runtime, {"server": tls_servers.HOST, "port": srv.port,
                        "tls": tls_servers.TLS_KINDS[kind], "cadata": pki.cadata("pem"),
                        "username": tls_servers.USER, "password": tls_servers.PASSWORD},
              tmp_path, heap=AIO_TLS_HEAP)
    assert res["status"] == microsmtp.TLS_CERT_ERROR, res
    assert res["pool_full"], res
    assert srv.handler.auth_log == [] and srv.handler.messages == []


@BOTH
def test_the_outbox_task_sends_while_the_ticker_ticks(runtime, slow_server, tmp_path):
    """Outbox.run_forever() as a task: three alerts put() go out over one session, each
    reply 200 ms late, and the ticker is never held up more than 50 ms."""
    res = run(runtime, {"port": slow_server.port, "outbox": str(tmp_path / "outbox"),
                        "alerts": 3}, tmp_path)
    assert res["pending"] == 0 and res["dead"] == 0, res
    assert res["max_gap_ms"] <= 50, res
    assert res["pool_full"], res
    assert slow_server.handler.subjects == ["Boiler alert %d" % k for k in range(3)]
    assert slow_server.handler.sessions == 1


@BOTH
def test_the_outbox_task_waits_out_an_outage(runtime, refused_port, tmp_path):
    """The server is down at the first try (refused): the alerts stay queued, the task
    tries again after its backoff, and once the server is up each arrives exactly once."""
    srv = Server(auth=False).start()
    try:
        res = run(runtime, {"port": refused_port, "up_port": srv.port,
                            "outbox": str(tmp_path / "outbox"), "alerts": 2}, tmp_path)
    finally:
        srv.stop()
    assert res["first_failure"] == microsmtp.CONNECT_ERROR, res
    assert res["pending"] == 0 and res["dead"] == 0, res
    assert sorted(srv.handler.subjects) == ["Boiler alert 0", "Boiler alert 1"]
    assert res["pool_full"], res


@BOTH
def test_a_put_wakes_the_outbox_task(runtime, tmp_path):
    """The task sleeps for up to 30 s when nothing is due; a put() wakes it at once."""
    srv = Server(auth=False).start()
    try:
        res = run(runtime, {"port": srv.port, "outbox": str(tmp_path / "outbox"),
                            "alerts": 1, "put_later": True}, tmp_path)
    finally:
        srv.stop()
    assert res["pending"] == 0 and res["dead"] == 0, res
    assert res["delivered_ms"] < 5000, res  # not the 30 s interval
    assert srv.handler.subjects == ["Boiler alert 0"]


@BOTH
def test_a_cancelled_aflush_keeps_the_alert(runtime, slow_server, tmp_path):
    """aflush() cancelled mid-session (every reply 200 ms late, cancelled at 500 ms): the
    alert stays queued, every buffer is back, and the next aflush() sends it, once."""
    res = run(runtime, {"port": slow_server.port, "outbox": str(tmp_path / "outbox"),
                        "cancel_after_ms": 500}, tmp_path)
    assert res["cancelled"], res
    assert res["pending_after_cancel"] == 1 and res["pool_full_after_cancel"], res
    assert res["sent_later"] == 1 and res["pending"] == 0 and res["dead"] == 0, res
    assert slow_server.handler.subjects == ["Boiler alert"]


def test_flush_and_aflush_refuse_the_other_kind_of_client(tmp_path):
    from microsmtp import aio
    from microsmtp.outbox import Outbox
    from microsmtp_host.shim import net

    blocking = microsmtp.Client("127.0.0.1", 25, from_address=SENDER, net=net)
    awaited = aio.Client("127.0.0.1", 25, from_address=SENDER, net=net)
    with pytest.raises(TypeError, match="await aflush"):
        Outbox(awaited, path=str(tmp_path / "a")).flush()
    with pytest.raises(TypeError, match="use flush"):
        asyncio.run(Outbox(blocking, path=str(tmp_path / "b")).aflush())
