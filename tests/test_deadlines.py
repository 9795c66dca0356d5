"""Phase deadlines against real servers behind slow paths (issue 9, defect 1), on CPython
through the shim and on the MicroPython unix port (tests/mp_send.py, as tests/test_tls.py).

A deadline runs from the start of its phase and progress never restarts it:
- the TLS handshake (implicit TLS and STARTTLS) behind a proxy that drips the server's
  handshake one byte every 20 ms: with every timeout 1 s the send ends in TIMEOUT_ERROR
  and the client closes while the proxy still holds most of the server's first flight (about
  900 bytes: 18 s or more to drip), so no per-read timeout was restarted;
- the message (DATA) phase behind a proxy that takes the client's bytes at about 60 KB/s:
  each write moves within the 5 s `message` timeout, but the whole message shares it, so
  the client gives up while most of an 8 MB body is still unsent (it would take 2 minutes).
No timing is asserted: the proxies count bytes, and pytest's timeout bounds each test."""

import socket
import threading
import time

import microsmtp
import pytest
from sending import RUNTIMES
from servers import ListeningThread
from tls_servers import TLS_KINDS

# The servers of tests/test_tls.py (conftest.py: pki, aio_server, tls_send).
both = pytest.mark.parametrize("runtime", RUNTIMES)
ONE_SECOND = {"connect": 1, "greeting": 1, "envelope": 1, "message": 1, "quit": 1}


class DripProxy(ListeningThread):
    """A path between the client and a server that drips the server's TLS handshake: the
    client's bytes pass at once; the server's pass at once until the handshake starts
    (at once with implicit TLS; after the server's 220 to STARTTLS otherwise), then one
    byte every GAP seconds. When the client closes, `held` is how many of the server's
    bytes had not been passed on yet."""

    GAP = 0.02

    def __init__(self, upstream_port, starttls):
        self.upstream_port = upstream_port
        self.dripping = threading.Event()
        if not starttls:
            self.dripping.set()
        self.armed = threading.Event()  # the client sent STARTTLS: drip after the next line
        self.closed = threading.Event()  # the client closed its side
        self.lock = threading.Lock()
        self.pending = b""  # the server's bytes not passed on yet
        self.dripped = 0
        self.held = None
        super().__init__()

    def _client_gone(self):
        with self.lock:
            if self.held is None:
                self.held = len(self.pending)
        self.closed.set()

    def _from_client(self, client, up):
        client.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                data = client.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                return self._client_gone()
            if b"STARTTLS" in data.upper():
                self.armed.set()
            try:
                up.sendall(data)
            except OSError:
                return

    def handle(self, client):
        up = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
        reader = threading.Thread(target=self._from_client, args=(client, up), daemon=True)
        reader.start()
        up.settimeout(self.GAP)
        try:
            while not self.closed.is_set() and not self.stopping.is_set():
                try:
                    data = up.recv(65536)
                    if not data and not self.pending:
                        break  # the server closed and everything went on
                except TimeoutError:
                    data = b""
                with self.lock:
                    self.pending += data
                    if not self.dripping.is_set():
                        cut = len(self.pending)  # before the handshake: all at once
                        if self.armed.is_set():
                            cut = self.pending.find(b"\n") + 1  # the 220, then drip
                            if cut:
                                self.dripping.set()
                    else:
                        cut = min(1, len(self.pending))
                    out, self.pending = self.pending[:cut], self.pending[cut:]
                    self.dripped += len(out) if self.dripping.is_set() and cut == 1 else 0
                if out:
                    client.sendall(out)
                if self.dripping.is_set():
                    time.sleep(self.GAP)
        except OSError:
            self._client_gone()
        finally:
            self.closed.wait(5)
            up.close()
            client.close()
            reader.join(5)


class SlowReader(ListeningThread):
    """A path to a server that reads slowly once the message is under way: the first FAST
    bytes from the client pass at once (the commands, and the message's start: over TLS
    the proxy cannot see the 354); then the client's bytes are taken a CHUNK every PAUSE
    seconds (about 60 KB/s) through a small receive buffer, so the client's writes soon
    block, yet each waits under 2 s (Linux wakes a writer when a third of its send
    buffer, here about 450 KB, is free). Once `done` is set (the send has returned) it
    reads at full speed, to reach the client's close behind what its socket still held:
    `at_close` counts every byte the client wrote before it closed."""

    FAST = 32768
    CHUNK = 8192  # the whole receive buffer: the window opens at each read
    PAUSE = 0.08

    def __init__(self, upstream_port):
        super().__init__()
        # Set on the listener, before any client connects: the accepted socket inherits
        # them. A small receive window, and a small MSS: Linux sizes the client's send
        # buffer from its MSS (loopback's 64 KB would let it take in megabytes at once).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.upstream_port = upstream_port
        self.slow = threading.Event()  # the FAST bytes went through: reading slowly now
        self.done = threading.Event()
        self.closed = threading.Event()
        self.taken = 0
        self.at_close = None

    def _from_server(self, client, up):
        up.settimeout(0.2)
        while not self.stopping.is_set() and not self.closed.is_set():
            try:
                data = up.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                client.sendall(data)
            except OSError:
                return

    def handle(self, client):
        up = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
        replies = threading.Thread(target=self._from_server, args=(client, up), daemon=True)
        replies.start()
        client.settimeout(0.2)
        try:
            while not self.stopping.is_set():
                slow = self.taken >= self.FAST and not self.done.is_set()
                size = self.CHUNK if slow else max(self.FAST - self.taken, 0) or 65536
                try:
                    data = client.recv(size)
                except TimeoutError:
                    continue
                if not data:
                    break
                self.taken += len(data)
                up.sendall(data)
                if slow:
                    self.slow.set()
                    time.sleep(self.PAUSE)
        except OSError:
            pass
        finally:
            self.at_close = self.taken
            self.closed.set()
            up.close()
            client.close()
            replies.join(5)


@pytest.fixture
def proxies():
    made = []

    def make(kind, *args):
        proxy = kind(*args)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


# --- the TLS handshake -----------------------------------------------------------------------

@both
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["implicit", "starttls"])
def test_dripped_handshake_ends_at_the_deadline(runtime, kind, aio_server, proxies, tls_send):
    """A path that drips the server's handshake one byte every 20 ms (each byte well within
    a 1 s read timeout) must not hold a send: the handshake shares its phase's deadline.
    Before the fix, MicroPython restarted its 1 s timeout at every byte and waited for the
    whole handshake (38 s here, then the dripped greeting timed out; 84 s at 100 ms a byte
    in the issue). The handshake now runs in the first read (the greeting, implicit TLS) or
    write (EHLO, STARTTLS) after the wrap, under that phase's deadline."""
    srv = aio_server(kind)
    proxy = proxies(DripProxy, srv.port, kind == "starttls")
    res = tls_send(runtime, proxy.port, tls=TLS_KINDS[kind], auth="PLAIN",
                   timeouts=ONE_SECOND)
    assert res["status"] == microsmtp.TIMEOUT_ERROR, res
    assert res["step"] == ("GREETING" if kind == "implicit" else "EHLO"), res
    assert "1000 ms" in res["error"], res
    assert proxy.closed.wait(5), "the client did not close the connection"
    assert proxy.dripped > 0, "the proxy never started dripping"
    # The client gave up with the server's first flight (over 700 bytes) mostly undelivered.
    assert proxy.held > proxy.dripped, (proxy.held, proxy.dripped)
    srv.settle()
    assert srv.handler.auth_log == [] and srv.handler.messages == []


# --- the message -----------------------------------------------------------------------------

@both
@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind", ["plain", "implicit"])
def test_slow_reader_ends_at_the_message_deadline(runtime, kind, aio_server, proxies, tls_send,
                                                  tmp_path):
    """A server that takes the message slowly: each 536-byte write moves within the
    message timeout, but the whole message must not outlast it. Before the fix every
    buffer had a deadline of its own and the send went on for as long as the server read
    (here 2 minutes)."""
    srv = aio_server(kind)
    proxy = proxies(SlowReader, srv.port)
    body = tmp_path / "big.txt"
    line = b"Pressure log: 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    body.write_bytes(line * (8 * 1024 * 1024 // len(line)))
    size = body.stat().st_size
    res = tls_send(runtime, proxy.port, auth="PLAIN", body_file=str(body),
                   allow_plaintext_auth=True, tls=TLS_KINDS.get(kind, microsmtp.TLS_NONE),
                   cadata=None if kind == "plain" else "pem",
                   timeouts={"connect": 5, "greeting": 5, "envelope": 5, "message": 5, "quit": 1})
    assert res["status"] == microsmtp.TIMEOUT_ERROR, res
    assert res["step"] == "MESSAGE" and "5000 ms" in res["error"], res
    assert proxy.slow.is_set(), "the message never reached the slow part"
    proxy.done.set()
    assert proxy.closed.wait(10), "the client did not close the connection"
    assert 0 < proxy.at_close < size // 2, (proxy.at_close, size)
    srv.settle()
    assert srv.handler.messages == []
