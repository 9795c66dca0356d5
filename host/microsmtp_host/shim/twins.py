"""Faster CPython twins of firmware viper functions (see the shim's viper()).

On a board these functions are native code; on CPython their own Python runs a bytecode loop
per byte (native.transform: 7 MB/s for 8bit, 3 MB/s quoted-printable). The twins give the
same bytes and the same state with C-speed pieces: find() the next line end, a regular
expression the end of a quoted-printable run, and slices copy. tests/test_body_properties.py
compares each twin with the firmware's own function (shim.PURE) and with the encoder of
before the viper rewrite, on any body cut into chunks of any size.
"""

import re

# native.py's state layout (_S_* there and in message.py; tests/test_body_properties.py
# checks they agree).
S_I, S_O, S_CAP, S_QP, S_CR, S_BOL, S_COL, S_LONG = range(8)
_CR, _LF, _DOT, _EQ = 13, 10, 46, 61
_MAX_LINE = 998  # RFC 5322 §2.1.1
_QP_SOFT = 73  # a soft break before column 76 leaves room for "=XX" (RFC 2045 §6.7 rule 5)
_HEX = b"0123456789ABCDEF"

# Bytes quoted-printable passes through: printable ASCII but "=", and a space or tab with a
# next byte in this chunk that is not a line end (a lookahead stops at the chunk's end).
_QP_RUN = re.compile(rb"(?:[\x21-\x3c\x3e-\x7e]|[ \t](?=[^\r\n]))+")


def transform(src, n, out, st):
    """native.transform: src[i:n] -> out[o:] with i, o and the state in st."""
    if not isinstance(src, (bytes, bytearray)):
        src = bytes(src)  # a memoryview has no find()
    smv = memoryview(src)  # slices of it copy once, not twice
    i, o, cap, qp, cr, bol, col = st[S_I], st[S_O], st[S_CAP], st[S_QP], st[S_CR], \
        st[S_BOL], st[S_COL]
    lf_at = cr_at = -1  # the next LF and CR: each find is redone only once passed
    while i < n and o < cap:
        c = src[i]
        if cr:
            cr = 0
            if c == _LF:
                i += 1
                continue
        if c == _CR or c == _LF:
            out[o] = _CR
            out[o + 1] = _LF
            o += 2
            cr = 1 if c == _CR else 0
            bol = 1
            col = 0
            i += 1
            continue
        if bol:
            bol = 0
            if c == _DOT:
                out[o] = _DOT
                o += 1
        if qp:
            if col >= _QP_SOFT:
                out[o:o + 3] = b"=\r\n"
                o += 3
                col = 0
                bol = 1
                continue
            m = _QP_RUN.match(src, i, n)
            if m is None:
                out[o:o + 3] = b"=%c%c" % (_HEX[c >> 4], _HEX[c & 15])
                o += 3
                col += 3
                i += 1
                continue
            # The firmware's loop takes this byte whatever o is (o < cap was checked before
            # a stuffed "."), each further one while o < cap and col < 73.
            k = min(m.end() - i, _QP_SOFT - col, max(cap - o, 1))
        else:
            if lf_at < i:
                lf_at = src.find(b"\n", i, n)
                if lf_at < 0:
                    lf_at = n
            if cr_at < i:
                cr_at = src.find(b"\r", i, n)
                if cr_at < 0:
                    cr_at = n
            j = lf_at if lf_at < cr_at else cr_at
            if j > i + cap - o:
                j = i + cap - o
            if j > i:
                out[o:o + j - i] = smv[i:j]
                o += j - i
                col += j - i
                i = j
            if col > _MAX_LINE:
                st[S_LONG] = 1
                break
            if i < n and o < cap:
                # src[i] is the CR or LF that ended the run: taken now as the loop's next
                # turns would take it (with the LF of a CRLF), one turn a line, not three.
                out[o] = _CR
                out[o + 1] = _LF
                o += 2
                bol = 1
                col = 0
                i += 1
                if src[i - 1] == _CR:
                    if i < n and o < cap:
                        if src[i] == _LF:
                            i += 1
                    else:
                        cr = 1
            continue
        out[o:o + k] = smv[i:i + k]
        o += k
        i += k
        col += k
    st[S_I], st[S_O], st[S_CR], st[S_BOL], st[S_COL] = i, o, cr, bol, col


def _bytes(src):
    # A viper ptr8 of a str reads its UTF-8 bytes in place; here they are encoded.
    return src.encode() if isinstance(src, str) else src


def copy(dst, start, src, pos, n):
    """native.copy: dst[start:start + n] = src[pos:pos + n] (a str: its UTF-8 bytes)."""
    dst[start:start + n] = memoryview(_bytes(src))[pos:pos + n]


# message.py's _SCAN_* (tests/test_body_properties.py checks they agree).
SCAN_8BIT, SCAN_UNFIT = 1 << 10, 1 << 11
_LINE_ENDS = re.compile(rb"[\r\n]")


def scan_body(src, n, state):
    """native.scan_body: the flags and the open line's length after src[:n]."""
    data = bytes(memoryview(_bytes(src))[:n])
    col = state & (SCAN_8BIT - 1)
    flags = state - col
    if data and max(data) > 127:
        flags |= SCAN_8BIT
    if data.find(b"\0") >= 0:
        flags |= SCAN_UNFIT
    lines = _LINE_ENDS.split(data)
    lines[0] = b"x" * col + lines[0]  # the line the last chunk left open goes on
    if max(len(line) for line in lines) > _MAX_LINE:
        flags |= SCAN_UNFIT
    return flags | min(len(lines[-1]), _MAX_LINE)


def clear(buf, pos, n):
    """native.clear: buf[pos:pos + n] = zeros."""
    buf[pos:pos + n] = bytes(n)


TWINS = {"microsmtp.native.transform": transform, "microsmtp.native.copy": copy,
         "microsmtp.native.scan_body": scan_body, "microsmtp.native.clear": clear}
