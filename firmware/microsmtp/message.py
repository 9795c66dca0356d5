# microsmtp: what goes between DATA and "." — headers and the streamed body. MIT licence.
# Also the input checks, so that bad input is refused before a byte goes on the wire.
import binascii
import os

from micropython import const

_CR = const(13)
_LF = const(10)
_DOT = const(46)
_EQ = const(61)
_MAX_LINE = const(998)  # RFC 5322 §2.1.1: at most 998 octets before CRLF
_MAX_RECIPIENTS = const(100)  # RFC 5321 §4.5.3.1.8: a server must take 100 in one mail
_QP_LINE = const(76)  # RFC 2045 §6.7 rule 5
_HEX = const(b"0123456789ABCDEF")

# Content-Transfer-Encoding chosen per message (RFC 6152: 8bit only when 8BITMIME is offered).
CTE_7BIT = const(0)
CTE_8BIT = const(1)
CTE_QP = const(2)
CTE_NAMES = ("7bit", "8bit", "quoted-printable")

PRIORITY_LOW = const(1)
PRIORITY_NORMAL = const(2)
PRIORITY_HIGH = const(4)


def as_bytes(s):
    # MicroPython keeps str as UTF-8 and lends it as a buffer without a copy; CPython can't.
    try:
        return memoryview(s)
    except TypeError:
        return s.encode()


TEXT = const(0)
DOMAIN = const(1)
ADDRESS = const(2)

# RFC 5321 §4.1.2 atext besides letters and digits: what a dot-atom local part may hold.
_ATEXT = const(b"!#$%&'*+-/=?^_`{|}~")


def check(value, what, kind=TEXT, limit=255):
    """ValueError before anything is sent: any control character (command and header
    injection), over-long values, and addresses or domains that are not of their form.

    ADDRESS: RFC 5321 §4.1.2 Mailbox: a dot-atom or quoted-string local part (<= 64
    bytes), "@", a domain or an IPv4/IPv6 address literal. DOMAIN: a host name or an
    address literal (EHLO's argument, §4.1.4). The grammar is the injection guard: no
    space, '<', '>' or ',' passes it, so no ESMTP parameter or second address can."""
    if not isinstance(value, str):
        raise TypeError(what + " must be a str")
    b = as_bytes(value)
    n = len(b)
    at = value.rfind("@") if kind == ADDRESS else -1  # a domain never holds "@"
    err = None
    if n > limit:
        err = "is longer than %d bytes" % limit
    elif kind and not n:
        err = "is empty"
    else:
        for i in range(n):
            c = b[i]
            if c < 32 or c == 127:  # C0 controls and DEL, TAB too
                err = "contains a control character (code %d)" % c
            elif kind and c > 127:
                # RFC 6531 (SMTPUTF8) and IDNA are not supported: refused, never mangled.
                err = "has non-ASCII characters (use the punycode form of a domain)"
            if err:
                break
    if err is None and kind == ADDRESS:
        if not 0 < at < n - 1:
            err = "is not of the form name@domain"
        elif at > 64:
            err = "has more than 64 bytes before @"
    if err is None and kind and not _mailbox(b, at, n):
        err = "is not a host name or an address literal ([192.0.2.1])" if kind == DOMAIN \
            else "is not an address RFC 5321 allows"
    if err:
        raise ValueError("%s %r %s" % (what, value, err) if kind else "%s %s" % (what, err))


def check_mail(recipients, subject, priority):
    """What every mail is held to before a byte is sent (Client.send, Outbox.put and the
    files the outbox reads back): 1 to 100 recipients (RFC 5321 §4.5.3.1.8: a server must
    take 100), each an address, the subject, a known priority. The recipients as a list."""
    if isinstance(recipients, str):
        recipients = [recipients]
    elif isinstance(recipients, (list, tuple)):
        recipients = list(recipients)
    else:
        raise TypeError("recipients must be an address or a list of addresses")
    if not recipients:
        raise ValueError("no recipient given")
    if len(recipients) > _MAX_RECIPIENTS:
        raise ValueError("more than %d recipients in one mail" % _MAX_RECIPIENTS)
    for rcpt in recipients:
        check(rcpt, "recipient", ADDRESS)
    check(subject, "subject", TEXT, 4096)
    if priority not in (PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH):
        raise ValueError("priority must be PRIORITY_LOW, PRIORITY_NORMAL or PRIORITY_HIGH")
    return recipients


def _mailbox(b, i, n):
    """RFC 5321 §4.1.2-4.1.3: b[0:i] a local part (i > 0: "@" at i), b[i+1:n] a domain.

    Local part: atoms of atext joined by single dots, or a quoted string of printable
    ASCII with \\" and \\\\ pairs, but no space, '<', '>' or ',' (legal there, yet servers
    and mail readers that cut at them exist). Domain: labels of letters, digits and inner
    hyphens, 1-63 bytes (RFC 1035), or [IPv4] / [IPv6:...] with "::" and an IPv4 tail."""
    if i > 0 and b[0] == 34:  # a quoted string
        k = 1
        while k < i - 1:
            c = b[k]
            if c == 92 and (b[k + 1] == 34 or b[k + 1] == 92) and k + 1 < i - 1:
                k += 1  # a quoted pair
            elif c == 34 or c == 92 or c == 32 or c == 60 or c == 62 or c == 44:
                return False
            k += 1
        if i < 3 or b[i - 1] != 34:
            return False
    elif i > 0:
        dot = True  # at the start or after a dot: an atom must follow
        for k in range(i):
            c = b[k]
            if c == 46:
                if dot:
                    return False
                dot = True
            elif 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in _ATEXT:
                dot = False
            else:
                return False
        if dot:
            return False
    if b[i + 1] == 91:  # "[": an address literal
        if b[n - 1] != 93:
            return False
        # Bytes, not str: a short str literal would cost a name on a board's heap.
        v4 = bytes(b[i + 2:n - 1])
        if v4[:5].upper() == b"IPV6:":
            halves = v4[5:].split(b"::")
            if len(halves) > 2:
                return False
            v4 = None
            groups = 0
            for h in range(len(halves)):
                parts = halves[h].split(b":") if halves[h] else ()
                for k in range(len(parts)):
                    p = parts[k]
                    if p.find(b".") >= 0 and h == len(halves) - 1 and k == len(parts) - 1:
                        v4 = p  # the last 32 bits as an IPv4 address
                        groups += 2
                    elif 0 < len(p) < 5:
                        for c in p:
                            if not (48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102):
                                return False
                        groups += 1
                    else:
                        return False
            if groups != 8 if len(halves) == 1 else groups > 6:
                return False
            if v4 is None:
                return True
        parts = v4.split(b".")
        if len(parts) != 4:
            return False
        for p in parts:
            if not 0 < len(p) < 4 or not p.isdigit() or int(p) > 255:
                return False
        return True
    label = 0
    c = 46
    for k in range(i + 1, n):
        c = b[k]
        if c == 46:
            if not label or b[k - 1] == 45:
                return False
            label = 0
        elif 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 45 and label:
            label += 1
            if label > 63:
                return False
        else:
            return False
    return label > 0 and c != 45


def scan_body(body):
    """Classify an in-memory body: (all ASCII, fits 7bit/8bit: lines <= 998 octets and no
    NUL, RFC 2045 §2.7-2.8), or None when it cannot be scanned cheaply (memoryview: no
    find()). Uses C-speed max() and find()."""
    if isinstance(body, memoryview):
        return None
    if isinstance(body, str):
        ascii_only = len(as_bytes(body)) == len(body)
        lf_s, cr_s, nul = "\n", "\r", "\0"  # str.find counts characters: bytes when ASCII
    else:
        ascii_only = not len(body) or max(body) < 128
        lf_s, cr_s, nul = b"\n", b"\r", b"\0"
    if body.find(nul) >= 0:
        return ascii_only, False
    per_char = 1 if ascii_only else 4  # a UTF-8 character is at most 4 bytes
    n = len(body)
    start = 0
    lf = cr = -1
    while start < n:
        # Each find is redone only once passed, so the scan stays linear in the body size.
        if lf < start:
            lf = body.find(lf_s, start)
            if lf < 0:
                lf = n
        if cr < start:
            cr = body.find(cr_s, start)
            if cr < 0:
                cr = n
        end = lf if lf < cr else cr
        if (end - start) * per_char > _MAX_LINE:
            if per_char == 1 or len(as_bytes(body[start:end])) > _MAX_LINE:
                return ascii_only, False
        start = end + 1
    return ascii_only, True


def encoded_subject_needed(subject):
    b = as_bytes(subject)
    if len(b) and max(b) >= 128:
        return True
    # An ASCII subject that contains "=?" would be decoded by the reader as an encoded word
    # (CVE-2024-6923's shape): encode it so it shows literally. Long ones are folded too.
    return subject.find("=?") >= 0 or len(b) > 900


def subject_words(subject):
    """Yield RFC 2047 B encoded words of <= 75 chars, split on UTF-8 character boundaries."""
    b = as_bytes(subject)
    n = len(b)
    i = 0
    while i < n:
        j = i + 45 if i + 45 < n else n  # 45 bytes -> 60 base64 chars; +12 wrapper = 72
        while j < n and (b[j] & 0xC0) == 0x80:  # never cut a character in two
            j -= 1
        yield binascii.b2a_base64(b[i:j])[:-1]  # MicroPython appends "\n" too: strip it
        i = j


_DAYS = const("MonTueWedThuFriSatSun")
_MONTHS = const("JanFebMarAprMayJunJulAugSepOctNovDec")


def date_value(tm):
    """RFC 5322 §3.3 date from a time.gmtime() tuple; None while the clock is unset.

    A board without NTP starts at its epoch (2000 or 1970); such a Date would be wrong and
    raise spam scores, so it is left out. gmtime()'s year does not depend on the epoch."""
    if tm[0] <= 2020:
        return None
    d = tm[6] * 3
    m = tm[1] * 3 - 3
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[d:d + 3], tm[2], _MONTHS[m:m + 3], tm[0], tm[3], tm[4], tm[5])


def message_id(from_address, token=None):
    return "<%s@%s>" % (token or binascii.hexlify(os.urandom(12)).decode(),
                        from_address[from_address.rfind("@") + 1:])


class BodySource:
    """One reader over every body kind: readinto(buf) -> bytes copied (0 at the end)."""

    def __init__(self):
        self.reset(None, None)

    def reset(self, body, limit):
        self.left = -1 if limit is None else limit  # NetX mail_body_length: send only this many
        self.obj = body
        self.mv = None  # in-memory body or current iterator chunk
        self.pos = 0
        self.kind = 0  # 0 memory, 1 readinto, 2 iterator
        if body is None:
            return
        if isinstance(body, (str, bytes, bytearray, memoryview)):
            self.mv = as_bytes(body) if isinstance(body, str) else memoryview(body)
        elif hasattr(body, "readinto"):
            self.kind = 1
        elif hasattr(body, "__next__") or hasattr(body, "__iter__"):
            self.kind = 2
            self.obj = iter(body)
        else:
            raise TypeError("body must be str, bytes, bytearray, memoryview, a file or "
                            "an iterator of chunks")

    def scan(self, buf):
        """A body that can be read twice (a file on flash, anything with seek and tell):
        scan_body's answer, read through buf, then rewound; None for any other body.
        Lets a file get the transfer encoding it needs before MAIL, not fail mid-DATA."""
        obj = self.obj
        if self.kind != 1:
            return None
        try:
            pos = obj.tell()
        except (AttributeError, OSError):
            return None  # a pipe or a socket: streamed as it comes
        left = self.left  # NetX's body_length: only that much is looked at, as sent
        ascii_only = fits = True
        col = 0  # bytes of the line that goes on past the end of the last chunk
        while (ascii_only or fits) and left:
            # The file's own readinto, not self.readinto: a Python call with this many
            # locals takes its frame from the heap on MicroPython, once per chunk.
            n = len(buf) if left < 0 or left > len(buf) else left
            data = buf if n == len(buf) else memoryview(buf)[:n]
            n = obj.readinto(data) or 0
            if not n:
                break
            if left > 0:
                left -= n
            if n < len(data):
                data = memoryview(buf)[:n]
            if ascii_only and max(data) > 127:
                ascii_only = False
            if fits and buf.find(b"\0", 0, n) >= 0:
                fits = False
            i = 0
            lf = cr = -1
            while fits and i < n:  # the longest line, without an object per line
                if lf < i:
                    lf = buf.find(b"\n", i, n)
                    lf = n if lf < 0 else lf
                if cr < i:
                    cr = buf.find(b"\r", i, n)
                    cr = n if cr < 0 else cr
                end = lf if lf < cr else cr
                col += end - i
                if col > _MAX_LINE:
                    fits = False
                if end < n:
                    col = 0
                i = end + 1
        obj.seek(pos)
        return ascii_only, fits

    def readinto(self, buf):
        room = len(buf)
        if self.left == 0:
            return 0
        if 0 < self.left < room:
            room = self.left
        if self.kind == 1:  # a file: straight into the buffer, sliced only for a limit
            n = self.obj.readinto(buf if room == len(buf) else memoryview(buf)[:room]) or 0
        else:
            while self.mv is None or self.pos >= len(self.mv):
                if self.kind == 0:
                    return 0
                try:
                    chunk = next(self.obj)
                except StopIteration:
                    self.kind = 0
                    self.mv = None
                    return 0
                if isinstance(chunk, str):
                    self.mv = as_bytes(chunk)
                elif isinstance(chunk, (bytes, bytearray, memoryview)):
                    self.mv = memoryview(chunk)
                else:
                    raise TypeError("body chunks must be str or bytes-like")
                self.pos = 0
            n = len(self.mv) - self.pos
            if n > room:
                n = room
            buf[:n] = self.mv[self.pos:self.pos + n]
            self.pos += n
        if self.left > 0:
            self.left -= n
        return n


class BodyEncoder:
    """CRLF-normalise, transfer-encode and dot-stuff body bytes from `src` into `out`.

    RFC 5321 §2.3.8 and the SMTP smuggling advisories: CR, LF and CRLF each become CRLF
    before anything else, so no bare CR or LF reaches the wire; then §4.5.2 dot-stuffing.
    Runs of ordinary bytes are copied with slice assignment (C speed); only quoted-printable
    looks at single bytes, and only when the server lacks 8BITMIME."""

    def __init__(self):
        self.start(CTE_7BIT, b"", b"")  # every attribute now: the instance dict never grows

    def start(self, cte, src, out):
        """A body from buffer `src` into buffer `out`; memoryviews made once per message."""
        self.cte = cte
        self.src = src
        self.smv = memoryview(src)
        self.out = out
        self.omv = memoryview(out)
        self.bol = True  # at the beginning of a line
        self.cr = False  # last input byte was CR: a following LF belongs to it
        self.col = 0  # bytes on the current output line
        self.too_long = False
        self.o = 0  # next output byte
        self.chunk()

    def chunk(self):
        """A new chunk of input starts at src[0]."""
        self.i = 0
        self.lf_at = self.cr_at = -1

    def encode(self, n):
        """Consume src[self.i:n] into out from self.o until out is full (no tuple per call)."""
        src = self.src
        out = self.out
        cap = len(out) - 4  # room for the worst step: "=XX", "." + byte, or CRLF
        qp = self.cte == CTE_QP
        i = self.i
        o = self.o
        while i < n and o < cap:
            c = src[i]
            if self.cr:
                self.cr = False
                if c == _LF:
                    i += 1
                    continue
            if c == _CR or c == _LF:
                out[o] = _CR
                out[o + 1] = _LF
                o += 2
                self.bol = True
                self.cr = c == _CR
                self.col = 0
                i += 1
                continue
            if self.bol:
                self.bol = False
                if c == _DOT:  # RFC 5321 §4.5.2: a line starting with "." gets one more
                    out[o] = _DOT
                    o += 1
            if qp:
                if self.col >= _QP_LINE - 3:  # soft line break, RFC 2045 §6.7 rule 5
                    out[o] = _EQ
                    out[o + 1] = _CR
                    out[o + 2] = _LF
                    o += 3
                    self.col = 0
                    self.bol = True  # a "." after it starts a wire line: stuff it too
                    continue
                # Space or tab before a line end (or a chunk end: unknown) is encoded.
                nxt = src[i + 1] if i + 1 < n else _CR
                if (33 <= c <= 126 and c != _EQ) or (
                        (c == 32 or c == 9) and nxt != _CR and nxt != _LF):
                    out[o] = c
                    o += 1
                    self.col += 1
                else:
                    out[o] = _EQ
                    out[o + 1] = _HEX[c >> 4]
                    out[o + 2] = _HEX[c & 15]
                    o += 3
                    self.col += 3
                i += 1
                continue
            # A run up to the next CR or LF, as much as fits: one slice copy. Each find is
            # redone only once passed, so a chunk is scanned about once, not once a line.
            if self.lf_at < i:
                self.lf_at = src.find(b"\n", i, n)
                if self.lf_at < 0:
                    self.lf_at = n
            if self.cr_at < i:
                self.cr_at = src.find(b"\r", i, n)
                if self.cr_at < 0:
                    self.cr_at = n
            j = self.lf_at if self.lf_at < self.cr_at else self.cr_at
            if j - i > cap - o:
                j = i + cap - o
            run = j - i
            # The only allocations per line: two slices (MicroPython has no memmove).
            self.omv[o:o + run] = self.smv[i:j]
            o += run
            i = j
            self.col += run
            if self.col > _MAX_LINE:
                self.too_long = True
                break
        self.i = i
        self.o = o

    def finish(self, o):
        """End the body: a CRLF if the last line lacks one (never an extra empty line)."""
        out = self.out
        if not self.bol:
            out[o] = _CR
            out[o + 1] = _LF
            o += 2
        out[o] = _DOT
        out[o + 1] = _CR
        out[o + 2] = _LF
        return o + 3
