# Reply-parser fuzz, shared by both runtimes: FuzzNet hands the client raw server bytes
# in scripted chunks (no expectations on what the client writes), and on the MicroPython
# unix port this file is also the runner: argv[1] is a JSONL file of streams ("reads": how
# many, "size": how many bytes), argv[2] for each stream its reads' lengths (native int16,
# STALL/RESET for faults) then its bytes; it prints one JSON result line a stream, then a
# summary.
# Lean on purpose: it shares runtimes.HARNESS_HEAP with microsmtp.
import errno
import sys

STALL = -1  # in lens: a read that finds nothing, then a poll that times out
RESET = -2  # in lens: the connection reset
MAX_STREAM = 4096  # the runner's buffers, made once: no kilobyte allocations per stream
MAX_READS = 1024

# What a well-behaved server answers at each step of a PLAIN/LOGIN session (no TLS).
OK_REPLIES = {
    "PLAIN": (b"220 mail.test ESMTP\r\n", b"250-mail.test\r\n250 AUTH PLAIN LOGIN\r\n",
              b"235 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 queued\r\n",
              b"221 bye\r\n"),
}
OK_REPLIES["LOGIN"] = OK_REPLIES["PLAIN"][:2] + (b"334 VXNlcm5hbWU6\r\n",
                                                 b"334 UGFzc3dvcmQ6\r\n") + OK_REPLIES["PLAIN"][2:]


class FuzzSocket:
    def __init__(self, net):
        self.net = net
        self.closed = False
        self.written = 0

    def settimeout(self, seconds):
        pass

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        pass

    def write(self, buf, off=0, n=None):  # MicroPython's stream write(buf, off, max_len)
        n = len(buf) - off if n is None else n
        self.written += n
        return n

    def readinto(self, buf, nbytes=None):
        """MicroPython's stream readinto: what is left of the current read (lens[pos], one
        segment) at most nbytes, and a RESET right behind it raises in the same call (the
        bytes stay in buf, uncounted), as on MicroPython; None for a stall, 0 at the end."""
        net = self.net
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        k = 0
        if net.pos < len(net.lens) and net.lens[net.pos] >= 0:
            k = min(n, net.lens[net.pos] - net.off)
            at = net.at + net.off
            for i in range(k):  # byte by byte: a slice would be an object
                buf[i] = net.data[at + i]
            net.off += k
            if net.off >= net.lens[net.pos]:
                net.pos += 1
                net.at += net.off
                net.off = 0
        if net.pos < len(net.lens) and net.lens[net.pos] == RESET:
            net.pos += 1
            raise OSError(errno.ECONNRESET)
        if k:
            return k
        if net.pos >= len(net.lens):
            return 0  # the server closed
        return None  # STALL: FuzzPoll.poll() then times out

    def close(self):
        self.closed = True


class FuzzPoll:
    def register(self, sock, mask):
        self.sock = sock

    def modify(self, sock, mask):
        pass

    def unregister(self, sock):
        pass

    def poll(self, timeout_ms):
        net = self.sock.net
        if net.pos < len(net.lens) and net.lens[net.pos] == STALL:
            net.pos += 1
            return []
        return [(self.sock, 1)]

    ipoll = poll


class FuzzNet:
    """The slice of `socket` (plus poll) that microsmtp.transport uses. The server's bytes
    are `data`, handed out in reads of lens[i] bytes (less when the client's buffer is
    smaller; STALL and RESET are faults, and the end of lens a close). Any write is
    accepted. One bytes object and a list of ints: a stream of a thousand one-byte reads
    stays small on a 56 KB heap."""

    AF_INET = 2
    AF_INET6 = 10
    SOCK_STREAM = 1

    def __init__(self, data, lens):
        self.data = data
        self.lens = lens
        self.pos = self.off = self.at = 0
        self.sockets = []

    def getaddrinfo(self, host, port, af=0, type=0, proto=0, flags=0):
        return [(self.AF_INET, self.SOCK_STREAM, 6, "", ("192.0.2.25", port))]

    def poll(self):
        return FuzzPoll()

    def socket(self, af=2, type=1, proto=0):
        s = FuzzSocket(self)
        self.sockets.append(s)
        return s


def make_client(microsmtp, net, auth="PLAIN"):
    return microsmtp.Client(
        "mail.test", 25, from_address="dev@example.org", username="alice", password="s3cret",
        client_domain="dev.example.org", auth=getattr(microsmtp, "AUTH_" + auth), net=net,
        allow_plaintext_auth=True, timeouts={"quit": 1})


def run_stream(microsmtp, client, data, lens):
    """One send over `chunks`; -> ((outcome, status, error text, SMTPError's step or the
    other exception's type name), socket closed, connections)."""
    net = FuzzNet(data, lens)
    client._net = net
    try:
        client.send("ops@example.org", "Boiler at 92 C", "Temperature 92 C\n")
        out = ("ok", 0, None, None)
    except microsmtp.SMTPError as e:
        out = ("smtp", e.status, str(e), e.step)
    except Exception as e:  # noqa: BLE001 - the fuzz reports any other type as a finding
        out = ("other", None, repr(e), type(e).__name__)
    closed = all(s.closed for s in net.sockets)
    return out, closed, len(net.sockets)


def _main():
    import gc
    import json

    import micropython
    import microsmtp

    client = make_client(microsmtp, None)
    ok = b"".join(OK_REPLIES["PLAIN"])
    ok_lens = [len(r) for r in OK_REPLIES["PLAIN"]]
    from array import array

    buf = bytearray(MAX_STREAM)
    mv = memoryview(buf)
    reads = memoryview(array("h", range(MAX_READS)))  # each read's length, native int16
    raw = open(sys.argv[2], "rb")
    with open(sys.argv[1]) as f:
        for line in f:
            rec = json.loads(line)
            line = None
            gc.collect()
            lens = reads[:rec["reads"]]
            raw.readinto(lens)
            data = mv[:rec["size"]]
            raw.readinto(data)
            (outcome, status, err, etype), closed, conns = run_stream(microsmtp, client, data,
                                                                      lens)
            data = lens = None
            pool_full = client.pool.available() == client.pool.count
            sizes = all(len(b) == client.pool.size for b in client.pool._own)
            (nxt, _, nerr, _), nclosed, _ = run_stream(microsmtp, client, ok, ok_lens)
            print(json.dumps({"i": rec["i"], "outcome": outcome, "status": status,
                              "error": err, "what": etype, "closed": closed,
                              "connections": conns, "pool_full": pool_full, "sizes": sizes,
                              "next": nxt, "next_error": nerr, "next_closed": nclosed}))
            rec = err = nerr = None
    raw.close()
    gc.collect()
    print(json.dumps({"done": True, "mem_peak": micropython.mem_peak()}))


if sys.implementation.name == "micropython":
    _main()
