"""Property tests of the body path against a reference (CPython; the same code runs on
MicroPython in unit_cases.py): any body, cut into any chunks, gives CRLF-only lines,
dot-stuffed, ending in exactly one CRLF before ".", and quoted-printable decodes back."""

import quopri
import re

import unit_cases
from hypothesis import given, settings
from hypothesis import strategies as st
from microsmtp import message

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
    assert unit_cases._encode(chunked(body, cuts), message.CTE_8BIT) == reference(body)


@settings(max_examples=400, deadline=None)
@given(body_bytes, st.lists(st.integers(0, 10_000), max_size=8))
def test_quoted_printable_round_trips(body, cuts):
    wire = unit_cases._encode(chunked(body, cuts), message.CTE_QP)
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
    wire = unit_cases._encode([b"x" * 73 + b".\r\n"], message.CTE_QP)
    assert b"=\r\n..\r\n" in wire, wire
