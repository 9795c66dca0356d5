"""Reply-parser fuzz (issue 5, point 7): generated server reply streams (valid replies per
step, random codes incl. 1xx/6xx/non-digits, long "250-" runs, lines over 512 bytes, missing
CRLF, bare LF, NUL, non-UTF-8 bytes, faults, any read boundaries down to one byte a read)
drive a whole send. Only SMTPError may escape; afterwards the pool is full with buffers of
their original size, the socket closed, and the same client sends again.

Profiles (env HYPOTHESIS_PROFILE): "ci" (default: seeded, 300 examples) and "fuzz"
(10,000 examples: `make fuzz`). A fixed seeded batch also runs on the MicroPython unix port
under runtimes.HARNESS_HEAP (tests/mp_fuzz.py): no MemoryError, only SMTPError."""

import array
import json
import os
import random

import microsmtp
import mp_fuzz
import pytest
import runtimes
import scenarios
import scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile("ci", derandomize=True, max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# Applied to this file's test only: loading it globally would change other files' tests.
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

STEPS = 8  # greeting, EHLO, AUTH, MAIL, RCPT, DATA, ".", QUIT (LOGIN: two more 334s)
CODES = ("220", "221", "235", "250", "251", "334", "354", "421", "450", "451", "454", "500",
         "502", "530", "535", "550", "552", "554")
ODD_CODES = ("100", "199", "600", "699", "000", "2x0", "25", "2500", "222222220", "", " 25",
             "\xff50", "-250", "25\x00")
SEPS = (" ", " ", " ", "-", "", "\t", "--", "\x00")
TEXTS = ("ok", "", "mail.test", "AUTH PLAIN LOGIN", "AUTH=LOGIN", "AUTH CRAM-MD5", "8BITMIME",
         "SIZE 10", "SIZE", "STARTTLS", "PIPELINING", "VXNlcm5hbWU6", "UGFzc3dvcmQ6",
         "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+", "\x00", "\xff\xfe",
         "caf\u00e9", "=?UTF-8?Q?=0A?=", "x" * 600, "y" * 509, "z" * 250, "\r", " " * 5)
ENDS = ("\r\n", "\r\n", "\r\n", "\n", "\r", "", " \r\n", "\r\r\n", "\n\r")


class _Hyp:
    """Draws from hypothesis (shrinkable)."""

    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(seq))

    def integer(self, a, b):
        return self.data.draw(st.integers(a, b))


class _Rng:
    """Draws from random.Random (the seeded batch written for MicroPython)."""

    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(seq)

    def integer(self, a, b):
        return self.rng.randint(a, b)


def _b(text):
    return text.encode("latin-1") if all(ord(c) < 256 for c in text) else text.encode()


def _line(d, code):
    text = "".join(d.choice(TEXTS) for _ in range(d.integer(0, 3)))
    return _b(code + d.choice(SEPS) + text + d.choice(ENDS))


def _reply(d, step, auth, calm):
    """One reply for `step`: the right one, or (less often with more calm) an odd kind."""
    ok = mp_fuzz.OK_REPLIES[auth]
    kind = d.integer(0, 11 + calm)
    if kind <= 4 or kind > 11:
        return ok[min(step, len(ok) - 1)]
    if kind == 5:  # a well-formed reply with another code
        code = d.choice(CODES + ("199", "600"))
        return ("%s-first\r\n" % code * d.integer(0, 2) + "%s last\r\n" % code).encode()
    if kind == 6:  # a long "250-" run, ended or not
        run = b"250-x\r\n" * d.integer(1, 300)
        return run + d.choice((b"250 end\r\n", b"", b"251 mixed\r\n", b"250-"))
    if kind == 7:  # a line over the 512-byte cap
        return b"250 " + b"L" * d.integer(505, 1200) + d.choice((b"\r\n", b""))
    if kind == 8:  # odd codes
        return _line(d, d.choice(ODD_CODES))
    # kinds 9-11: a mix of lines with plausible codes and any separator, text and end
    return b"".join(_line(d, d.choice(CODES + ODD_CODES[:4])) for _ in range(d.integer(1, 4)))


def _split(d, data):
    """Read boundaries: whole, one byte a read, or random cuts."""
    how = d.integer(0, 5)
    if how <= 2 or len(data) < 2:
        return [data]
    if how == 3 and len(data) <= 600:
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted({d.integer(1, len(data) - 1) for _ in range(d.integer(1, 4))})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]


def gen_stream(d):
    """-> (auth, chunks): the server's side of one session."""
    auth = d.choice(("PLAIN", "PLAIN", "LOGIN"))
    calm = d.choice((0, 20, 80, 400))  # how deep into the session a stream tends to get
    chunks = []
    carry = b""
    for step in range(STEPS + (2 if auth == "LOGIN" else 0) + d.integer(0, 2)):
        ev = d.integer(0, 40 + calm)
        if ev == 0:
            chunks.append("!stall")
            break
        if ev == 1:
            chunks.append("!reset")
            break
        if ev == 2:  # the server closes here
            break
        data = carry + _reply(d, step, auth, calm)
        carry = b""
        if d.integer(0, 15 + calm) == 0:  # merged with the next reply: unsolicited bytes
            carry = data
            continue
        chunks += _split(d, data)
    if carry:
        chunks.append(carry)
    return auth, chunks


def _next_script(auth):
    if auth == "PLAIN":
        return scenarios.session(caps=scenarios.CAPS, auth=scenarios.PLAIN_OK)
    login = [["C", "AUTH LOGIN\r\n"], ["S", "334 VXNlcm5hbWU6\r\n"],
             ["C", scenarios.B64_USER + "\r\n"], ["S", "334 UGFzc3dvcmQ6\r\n"],
             ["C", scenarios.B64_PASS + "\r\n"], ["S", "235 ok\r\n"]]
    return scenarios.session(caps=scenarios.CAPS, auth=login)


def packed(chunks):
    """chunks (bytes, "!stall", "!reset") -> (data, lens) as mp_fuzz.FuzzNet takes them."""
    lens = [mp_fuzz.STALL if c == "!stall" else mp_fuzz.RESET if c == "!reset" else len(c)
            for c in chunks]
    return b"".join(c for c in chunks if isinstance(c, bytes)), lens


def check_stream(auth, chunks):
    # A placeholder net: run_stream gives the client each stream's own.
    client = mp_fuzz.make_client(microsmtp, mp_fuzz.FuzzNet(b"", []), auth)
    pool = client.pool
    own = [id(b) for b in pool._own]
    (outcome, status, err, etype), closed, conns = mp_fuzz.run_stream(microsmtp, client,
                                                                       *packed(chunks))
    where = "stream %r" % (chunks,)
    assert outcome in ("ok", "smtp"), "%s escaped: %s; %s" % (etype, err, where)
    if outcome == "smtp":
        assert err.endswith(".") and "\r" not in err and "\n" not in err, (err, where)
        assert "s3cret" not in err and scenarios.PLAIN_IR not in err, (err, where)
        assert scenarios.B64_PASS not in err, (err, where)
    assert conns == 1 and closed, "socket left open: " + where
    assert pool.available() == pool.count, "a pool buffer leaked: " + where
    # Heap bounded: the same buffers, never grown (reads stop at the 512-byte line cap).
    assert [id(b) for b in pool._own] == own
    assert all(len(b) == pool.size for b in pool._own), "a pool buffer grew: " + where
    assert client._session.rx is None, "the session kept its rx buffer"
    # The same client: a new connection, EHLO again, success.
    net = scripted.ScriptedNet(_next_script(auth))
    client._net = net
    client.send("ops@example.org", "next", "next send\n")
    assert not net.errors and not net.leftover(), (net.errors, net.leftover(), where)
    assert pool.available() == pool.count
    return outcome if outcome == "ok" else etype  # etype: the failing step


def test_valid_streams_send():
    """The generator's "valid" replies really make a successful send (sanity)."""
    for auth in ("PLAIN", "LOGIN"):
        assert check_stream(auth, list(mp_fuzz.OK_REPLIES[auth])) == "ok"
        one_byte = [bytes([c]) for r in mp_fuzz.OK_REPLIES[auth] for c in r]
        assert check_stream(auth, one_byte) == "ok"


@PROFILE
@given(st.data())
def test_reply_streams(data):
    auth, chunks = gen_stream(_Hyp(data))
    check_stream(auth, chunks)


MP_SEED = 20261128
MP_COUNT = 200


def _mp_batch():
    rng = _Rng(random.Random(MP_SEED))
    out = []
    for _ in range(MP_COUNT):
        out.append(gen_stream(rng)[1])  # the MicroPython runner's client uses PLAIN
    return out


def test_seeded_batch_cpython():
    outcomes = {}
    for chunks in _mp_batch():
        o = check_stream("PLAIN", chunks)
        outcomes[o] = outcomes.get(o, 0) + 1
    # The batch reaches every step: successes, and failures from the greeting to "."
    for step in ("ok", "GREETING", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "MESSAGE"):
        assert outcomes.get(step), outcomes


@pytest.mark.unixport
@pytest.mark.timeout(300)
def test_seeded_batch_micropython(tmp_path):
    batch = _mp_batch()
    data, raw = tmp_path / "streams.jsonl", tmp_path / "streams.bin"
    with open(data, "w") as f, open(raw, "wb") as r:
        for i, chunks in enumerate(batch):
            stream, lens = packed(chunks)
            assert len(stream) <= mp_fuzz.MAX_STREAM and len(lens) <= mp_fuzz.MAX_READS
            f.write(json.dumps({"i": i, "reads": len(lens), "size": len(stream)}) + "\n")
            r.write(array.array("h", lens).tobytes() + stream)
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_fuzz.py"], tmp_path / "mpy")
    proc = runtimes.run_micropython("mp_fuzz", [str(data), str(raw)],
                                    [mpy, runtimes.firmware_mpy()],
                                    timeout=240, heap=runtimes.HARNESS_HEAP)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    results = [x for x in lines if "i" in x]
    tail = (proc.stderr or proc.stdout)[-2000:]
    assert lines and lines[-1].get("done"), "MicroPython did not finish: %s" % tail
    assert len(results) == len(batch), tail
    for res in results:
        rec = batch[res["i"]]
        assert res["outcome"] in ("ok", "smtp"), (res, rec)  # MemoryError would show here
        assert res["closed"] and res["connections"] == 1, (res, rec)
        assert res["pool_full"] and res["sizes"], (res, rec)
        assert res["next"] == "ok" and res["next_closed"], (res, rec)
    steps = {res["what"] or res["outcome"] for res in results}
    assert {"ok", "GREETING", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "MESSAGE"} <= steps, steps
