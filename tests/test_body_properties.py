"""Property tests of the body path against a reference (CPython; the same code runs on
MicroPython in unit_cases.py): any body, cut into any chunks, gives CRLF-only lines,
dot-stuffed, ending in exactly one CRLF before ".", and quoted-printable decodes back.
The viper loop (native.transform: its own Python and the shim's faster twin of it) gives
the bytes the encoder before it gave (unit_cases.OldEncoder) for chunks of every size."""

import contextlib
import quopri
import re

import unit_cases
from hypothesis import given, settings
from hypothesis import strategies as st
from microsmtp import message
from microsmtp_host import shim
from microsmtp_host.shim import twins
from unit_cases import CTE_7BIT, CTE_8BIT, CTE_QP

# Bodies rich in the bytes that matter: CR, LF, ".", "=", space, 8-bit.
body_bytes = st.lists(st.sampled_from([b"\r", b"\n", b".", b"=", b" ", b"a", b"\xc3\xa9",
                                       b"\r\n", b"..", b"\t", b"z" * 90]),
                      max_size=60).map(b"".join)


def lines_of(body):
    lines = re.split(rb"\r\n|\r|\n", body)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def reference(body):
    """RFC 5321 §2.3.8 + §4.5.2: every line end to CRLF, then dot-stuff, then ".\r\n"."""
    stuffed = ((b"." + line if line.startswith(b".") else line) for line in lines_of(body))
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


def chunked(body, cuts):
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


@settings(max_examples=400, deadline=None)
@given(body_bytes, st.lists(st.integers(0, 10_000), max_size=8))
def test_8bit_body_matches_reference(body, cuts):
    assert unit_cases._encode(chunked(body, cuts), CTE_8BIT) == reference(body)


@settings(max_examples=400, deadline=None)
@given(body_bytes, st.lists(st.integers(0, 10_000), max_size=8))
def test_quoted_printable_round_trips(body, cuts):
    wire = unit_cases._encode(chunked(body, cuts), CTE_QP)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    wire_lines = wire[:-3].split(b"\r\n")[:-1] if wire != b".\r\n" else []
    assert all(len(line) <= 77 for line in wire_lines)  # 76 + a stuffed dot
    assert max(wire, default=0) < 128
    # The server removes one leading dot from every line (§4.5.2); none may be a lone ".".
    assert all(line != b"." for line in wire_lines)
    unstuffed = b"".join((line[1:] if line.startswith(b".") else line) + b"\n"
                         for line in wire_lines)
    assert quopri.decodestring(unstuffed) == b"".join(line + b"\n" for line in lines_of(body))


def test_soft_break_before_a_dot_is_stuffed():
    wire = unit_cases._encode([b"x" * 73 + b".\r\n"], CTE_QP)
    assert b"=\r\n..\r\n" in wire, wire


# As body_bytes, with lines long enough for soft breaks and for 7bit/8bit's too_long.
long_body_bytes = st.lists(st.sampled_from([b"\r", b"\n", b".", b"=", b" ", b"a", b"\xc3\xa9",
                                            b"\r\n", b"..", b"\t", b"\x00", b"z" * 90,
                                            b"y" * 500]),
                           max_size=40).map(b"".join)


@contextlib.contextmanager
def firmware_python():
    """message's viper functions as firmware/ writes them (on a board: native code) in place
    of the shim's twins."""
    saved = message.transform, message.copy
    message.transform = shim.PURE["microsmtp.native.transform"]
    message.copy = shim.PURE["microsmtp.native.copy"]
    try:
        yield
    finally:
        message.transform, message.copy = saved


def test_cpython_runs_the_twins():
    assert message.transform is twins.transform and message.copy is twins.copy
    assert shim.PURE["microsmtp.native.transform"].__module__ == "microsmtp.native"


def test_twins_know_the_state_layout():
    names = ("I", "O", "CAP", "QP", "CR", "BOL", "COL", "LONG")
    assert [getattr(message, "_S_" + n) for n in names] == [getattr(twins, "S_" + n)
                                                              for n in names]
    assert message._S_SIZE == len(names)


def _encode_all(chunks, cte, scratch, out):
    """The wire bytes and too_long from the old encoder, the twin and the firmware's own."""
    got = []
    for run in ("old", "twin", "firmware"):
        enc = unit_cases.OldEncoder() if run == "old" else message.BodyEncoder()
        with firmware_python() if run == "firmware" else contextlib.nullcontext():
            got.append((unit_cases._encode(chunks, cte, enc, scratch, out), enc.too_long))
    return got


@settings(max_examples=600, deadline=None)
@given(long_body_bytes, st.lists(st.integers(0, 10_000), max_size=8),
       st.sampled_from([CTE_7BIT, CTE_8BIT, CTE_QP]),
       st.integers(1, 40), st.integers(5, 100))
def test_transform_gives_the_old_bytes(body, cuts, cte, scratch, out):
    """Chunks cut anywhere (by the iterator and again by a scratch buffer of 1-40 bytes), a
    send buffer of 5-100 bytes: the same wire bytes and too_long as before the rewrite."""
    old, twin, firmware = _encode_all(chunked(body, cuts), cte, scratch, out)
    assert twin == old
    assert firmware == old


def test_every_chunk_size_gives_the_old_bytes():
    """Bodies of every awkward kind, cut into chunks of each size from 1 to 64 bytes; lines
    of 998 octets (the most 7bit and 8bit take, RFC 5322 §2.1.1) and of 999."""
    start = (b".start\r\n..two\rbare cr\nbare lf\r\n\r\n.\r\n" + b"=" * 80 + b"\n"
             + b"x" * 73 + b".\r\n" + b"sp \ttab\t \r\n" + "caf\u00e9\u2603".encode()
             + b"\x00\x7f\n")
    for body, too_long in ((start + b"y" * 998 + b"\n.end \t", False),
                           (start + b"y" * 998 + b"\r" + b"z" * 999 + b"\r\n.", True)):
        for cte in (CTE_7BIT, CTE_8BIT, CTE_QP):
            for size in range(1, 65):
                old, twin, firmware = _encode_all([body], cte, size, 5 + size % 7 * 13)
                assert twin == old and firmware == old, (cte, size)
                assert old[1] == (too_long and cte != CTE_QP)


def test_twins_know_the_scan_flags():
    assert (message._SCAN_8BIT, message._SCAN_UNFIT) == (twins.SCAN_8BIT, twins.SCAN_UNFIT)


def _reference_scan(body):
    """(8-bit bytes, a NUL or a line over 998 octets) of a whole body."""
    return max(body, default=0) > 127, b"\0" in body or any(
        len(line) > 998 for line in re.split(rb"\r|\n", body))


@settings(max_examples=400, deadline=None)
@given(long_body_bytes, st.lists(st.integers(0, 10_000), max_size=8))
def test_scan_twin_and_firmware_agree_over_chunks(body, cuts):
    """BodySource.scan()'s scan_body, chunk after chunk (a line goes on across them): the
    twin, the firmware's own Python and the whole body looked at at once agree."""
    pure = shim.PURE["microsmtp.native.scan_body"]
    state = {"twin": 0, "firmware": 0}
    for chunk in chunked(body, cuts):
        state["twin"] = twins.scan_body(chunk, len(chunk), state["twin"])
        state["firmware"] = pure(chunk, len(chunk), state["firmware"])
        assert state["twin"] == state["firmware"], chunk
    flags = state["twin"]
    assert (bool(flags & message._SCAN_8BIT), bool(flags & message._SCAN_UNFIT)) == \
        _reference_scan(body)


def test_scan_reads_a_str_in_place():
    """encoded_subject_needed() hands scan_body a str and its len(): the first bytes of any
    non-ASCII character are among them, as a board's viper code reads them."""
    for text in ("Door opened", "caf\u00e9", "\u00e9" + "x" * 20, "x" * 20 + "\u2603",
                 "92 \u00b0C"):
        assert bool(twins.scan_body(text, len(text), 0) & message._SCAN_8BIT) == (
            not text.isascii())
        assert bool(message.encoded_subject_needed(text)) == (not text.isascii())


@given(st.binary(max_size=60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60))
def test_copy_and_clear_twins_match_the_firmware(data, start, pos, n):
    from microsmtp import transport

    pos = min(pos, len(data))
    n = min(n, len(data) - pos)
    out = []
    for copy, clear in ((twins.copy, twins.clear), (shim.PURE["microsmtp.native.copy"],
                                                    shim.PURE["microsmtp.native.clear"])):
        buf = bytearray(b"#" * 130)
        copy(buf, start, data, pos, n)
        clear(buf, start + n, 5)
        out.append(bytes(buf))
    assert out[0] == out[1] == b"#" * start + data[pos:pos + n] + bytes(5) + \
        b"#" * (125 - start - n)
    assert transport.clear is twins.clear and message.copy is twins.copy
