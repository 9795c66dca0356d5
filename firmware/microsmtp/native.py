# microsmtp: the native code — the viper loops that move a body's bytes. MIT licence.
# Every @micropython.viper function of microsmtp, and nothing else, so that the other modules
# hold bytecode only.
#
# Native code with machine-int locals: no object per byte or per line, no heap at all (proven
# under micropython.heap_lock() in tests/unit_cases.py); ~145 MB/s 8bit, ~90 quoted-printable
# from a file on the unix port, where the Python loop before managed 36 and 3. message.py
# (transform, copy, scan_body) and transport.py (clear) import them.
#
# Why a module of its own: an .mpy holding native code loads on one architecture only
# (mpy-cross -march), an .mpy of bytecode on any board of its .mpy version. With the native
# code here, every other module compiles once for all boards, and only this one per
# architecture: `microsmtp deploy --mpy` compiles it for the board's own, `make index` for each
# architecture mpy-cross knows (native_<N>.mpy, with a small native.mpy that imports the
# board's: firmware/index/native.py). Installed as source (.py), a board's own native emitter
# compiles it at import (the ESP32 and RP2 ports have one; a MicroPython without one cannot
# import microsmtp: `microsmtp deploy` refuses it). On CPython (host/microsmtp_host/shim) viper
# is a plain decorator: these run as the Python they are, or as the shim's faster twins.
import micropython
from micropython import const

_CR = const(13)
_LF = const(10)
_DOT = const(46)
_EQ = const(61)
_MAX_LINE = const(998)  # RFC 5322 §2.1.1: at most 998 octets before CRLF
_QP_LINE = const(76)  # RFC 2045 §6.7 rule 5
# scan_body's flags, as message.py reads them (tests/test_units.py checks they agree).
_SCAN_8BIT = const(1024)  # 1 << 10: above any line length scan_body() keeps
_SCAN_UNFIT = const(2048)
# transform's state, an array("i") of message.BodyEncoder's (its _S_* names the same).
_S_I = const(0)
_S_O = const(1)
_S_CAP = const(2)
_S_QP = const(3)
_S_CR = const(4)
_S_BOL = const(5)
_S_COL = const(6)
_S_LONG = const(7)


@micropython.viper
def transform(src: ptr8, n: int, buf: ptr8, state: ptr32):  # noqa: F821 - viper types
    """src[i:n] -> buf[o:], with i, o and the rest in state (_S_*), until src is used up,
    buf is full (o >= cap) or a line is too long; byte for byte the Python loop it replaced:
    CR, LF, CRLF -> CRLF; a "." starting a line doubled (RFC 5321 §4.5.2); quoted-printable
    (RFC 2045 §6.7) with a soft break before column 76, "=XX" for "=", controls, 8-bit bytes
    and a space or tab before a line end (or a chunk end: unknown, so encoded)."""
    i = int(state[_S_I])
    o = int(state[_S_O])
    cap = int(state[_S_CAP])
    qp = int(state[_S_QP])
    cr = int(state[_S_CR])
    bol = int(state[_S_BOL])
    col = int(state[_S_COL])
    while i < n and o < cap:
        c = int(src[i])
        if cr:
            cr = 0
            if c == _LF:  # the LF of a CRLF, maybe split across chunks: already sent
                i += 1
                continue
        if c == _CR or c == _LF:
            buf[o] = _CR
            buf[o + 1] = _LF
            o += 2
            if c == _CR:
                cr = 1
            bol = 1
            col = 0
            i += 1
            continue
        if bol:
            bol = 0
            if c == _DOT:
                buf[o] = _DOT
                o += 1
        if qp:
            if col >= _QP_LINE - 3:  # soft line break, RFC 2045 §6.7 rule 5
                buf[o] = _EQ
                buf[o + 1] = _CR
                buf[o + 2] = _LF
                o += 3
                col = 0
                bol = 1  # a "." after it starts a wire line: stuffed too
                continue
            nxt = _CR
            if i + 1 < n:
                nxt = int(src[i + 1])
            if (c > 32 and c < 127 and c != _EQ) or (
                    (c == 32 or c == 9) and nxt != _CR and nxt != _LF):
                buf[o] = c
                o += 1
                col += 1
            else:
                buf[o] = _EQ
                h = c >> 4
                if h > 9:
                    h += 7  # "A" follows "9" + 8 in ASCII
                buf[o + 1] = h + 48
                h = c & 15
                if h > 9:
                    h += 7
                buf[o + 2] = h + 48
                o += 3
                col += 3
            i += 1
            continue
        while i < n and o < cap:  # 7bit, 8bit: the run up to the line end, as it fits
            c = int(src[i])
            if c == _CR or c == _LF:
                break
            buf[o] = c
            o += 1
            i += 1
            col += 1
        if col > _MAX_LINE:
            state[_S_LONG] = 1
            break
    state[_S_I] = i
    state[_S_O] = o
    state[_S_CR] = cr
    state[_S_BOL] = bol
    state[_S_COL] = col


@micropython.viper
def copy(buf: ptr8, start: int, src: ptr8, pos: int, n: int):  # noqa: F821 - viper types
    """buf[start:start + n] = src[pos:pos + n] without the slice objects that costs in
    Python. src: any buffer, or a str of ASCII (checked addresses and names: then its
    len() is its bytes), read in place without a view of it (32 B)."""
    k = 0
    while k < n:
        buf[start + k] = src[pos + k]
        k += 1


@micropython.viper
def scan_body(src: ptr8, n: int, state: int) -> int:  # noqa: F821 - viper types
    """state after looking at src[:n]: _SCAN_8BIT for a byte over 127, _SCAN_UNFIT for a NUL
    or a line over 998 octets (CR, LF and CRLF end lines, as the encoder reads them), with
    the length of the line still open below them (its count goes on with the next chunk)."""
    col = state & (_SCAN_8BIT - 1)
    flags = state - col
    i = 0
    while i < n:
        c = int(src[i])
        i += 1
        if c == _CR or c == _LF:
            col = 0
            continue
        if c == 0:
            flags |= _SCAN_UNFIT
        elif c > 127:
            flags |= _SCAN_8BIT
        if col < _MAX_LINE:
            col += 1
        else:
            flags |= _SCAN_UNFIT
    return flags | col


@micropython.viper
def clear(buf: ptr8, pos: int, n: int):  # noqa: F821 - viper types
    """buf[pos:pos + n] = zeros, without the object a slice of zeros would be."""
    while n > 0:
        n -= 1
        buf[pos + n] = 0
