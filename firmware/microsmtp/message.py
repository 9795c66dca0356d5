# microsmtp: what goes between DATA and "." — headers and the streamed body. MIT licence.
# Also the input checks, so that bad input is refused before a byte goes on the wire.
import binascii
import os

from micropython import const

# The body's bytes move through native code (viper loops), kept in a module of their own:
# see native.py.
from .native import copy, scan_body, transform
from .status import SMTPError

_CR = const(13)
_LF = const(10)
_DOT = const(46)
_MAX_RECIPIENTS = const(100)  # RFC 5321 §4.5.3.1.8: a server must take 100 in one mail
_PACKET_ALLOCATE_ERROR = const(0xA6)  # the package's status code

# Content-Transfer-Encoding chosen per message (RFC 6152: 8bit only when 8BITMIME is offered).
# (Private: a public const is a global and an interned name held on a board; protocol.py
# and mime.py keep their own copies, tests/test_units.py checks they agree.)
_CTE_7BIT = const(0)
_CTE_8BIT = const(1)
_CTE_QP = const(2)
CTE_WIRE = (b"7bit", b"8bit", b"quoted-printable")

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


def check(value, name, mode=TEXT, limit=255):
    """ValueError before anything is sent: any control character (command and header
    injection), over-long values, and addresses or domains that are not of their form.

    ADDRESS: RFC 5321 §4.1.2 Mailbox: a dot-atom or quoted-string local part (<= 64
    bytes), "@", a domain or an IPv4/IPv6 address literal; UTF-8 in the local part and the
    domain's labels too (RFC 6531 §3.3: sent only to a server that offers SMTPUTF8).
    DOMAIN: a host name of ASCII or an address literal (EHLO's argument, §4.1.4). The
    grammar is the injection guard: no space, '<', '>' or ',' passes it, so no ESMTP
    parameter or second address can."""
    # The checks are split over small functions, as the rest of a send is: a call with
    # more than 11 words of locals and stack takes its frame from the heap (py/objfun.c,
    # VM_MAX_STATE_ON_STACK), and this runs for every recipient of every mail.
    if not isinstance(value, str):
        raise TypeError(name + " must be a str")
    err = _fault(as_bytes(value), mode, limit)
    if err:
        raise ValueError("%s %r %s" % (name, value, err) if mode else "%s %s" % (name, err))


def _fault(data, mode, limit):
    """What is wrong with a value's bytes, or None."""
    n = len(data)
    if n > limit:
        return "is longer than %d bytes" % limit
    if mode and not n:
        return "is empty"
    pos = -1  # ADDRESS: its last "@", in bytes (str.rfind would count characters)
    for i in range(n):
        # C0 controls and DEL (TAB too); in an address or a domain also Unicode's C1
        # controls, U+0080-U+009F (NEL among them, a line break to str.splitlines()): UTF-8
        # C2 80-9F. (A str is valid UTF-8: a lead byte's bytes are there.)
        if data[i] < 32 or data[i] == 127 or mode and data[i] == 0xC2 and data[i + 1] < 0xA0:
            return "contains a control character (byte %d)" % data[i]
        if data[i] == 64 and mode == ADDRESS:
            pos = i
        if mode == DOMAIN and data[i] > 127:  # EHLO's name: ASCII (IDNA is not done here)
            return "has non-ASCII characters (use the punycode form of a domain)"
    if mode == ADDRESS:
        if not 0 < pos < n - 1:
            return "is not of the form name@domain"
        if pos > 64:
            return "has more than 64 bytes before @"
    if not mode:
        return None
    if pos > 0 and not _local(data, pos) or not (  # "[": an address literal
            _literal(data, pos, n) if data[pos + 1] == 91 else _domain(data, pos, n)):
        return "is not a host name or an address literal ([192.0.2.1])" if mode == DOMAIN \
            else "is not an address RFC 5321 allows"
    return None


def check_mail(recipients, subject, priority):
    """What every mail is held to before a byte is sent (Client.send, Outbox.put and the
    files the outbox reads back): 1 to 100 recipients (RFC 5321 §4.5.3.1.8: a server must
    take 100), each an address, the subject, a known priority. The recipients as a list or
    tuple: the caller's own (not copied: 64 B), or one address as a 1-tuple."""
    if isinstance(recipients, str):
        recipients = (recipients,)
    elif not (isinstance(recipients, list) or isinstance(recipients, tuple)):
        # (Two isinstance calls: a tuple of types is built on every call, 32 B.)
        raise TypeError("recipients must be an address or a list of addresses")
    if not recipients:
        raise ValueError("no recipient given")
    if len(recipients) > _MAX_RECIPIENTS:
        raise ValueError("more than %d recipients in one mail" % _MAX_RECIPIENTS)
    for i in range(len(recipients)):  # an index: iterating takes 4 more words of stack
        check(recipients[i], "recipient", ADDRESS)
    check(subject, "subject", TEXT, 4096)
    if priority not in (PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH):
        raise ValueError("priority must be PRIORITY_LOW, PRIORITY_NORMAL or PRIORITY_HIGH")
    return recipients


# What BodySource.scan() finds in a body (RFC 2045 §2.7-2.8, RFC 5322 §2.1.1): bytes over
# 127, and a NUL or a line over 998 octets (which only quoted-printable can carry); -1:
# not looked at (a stream read only once). scan_body() keeps the open line's length below
# them. protocol.py has the same values (tests/test_units.py checks).
_SCAN_8BIT = const(1024)  # 1 << 10: above any line length scan_body() keeps
_SCAN_UNFIT = const(2048)


def encode(value):
    """A str as copy() can take it: the str itself when it is ASCII (read in place: its
    len() counts its bytes), else its UTF-8 bytes (a view: a str's len() counts
    characters). The one allocation is a UTF-8 address's (RFC 6531), for RCPT and To.
    (A name MicroPython interns anyway: a new one costs heap on a board.)"""
    return as_bytes(value) if scan_body(value, len(value), 0) & _SCAN_8BIT else value


def rich(recipients):
    """True when a recipient (a str, or one in a list or tuple) has a display name,
    "Name" <addr>: a rich mail, mime.py's to check and send. (Named as send()'s **rich
    and Client.rich are: one interned name for the three, not three; each new name costs
    a board heap, and past 300 of them a whole new pool of them.)"""
    if isinstance(recipients, str):
        return "<" in recipients
    if isinstance(recipients, list) or isinstance(recipients, tuple):
        for i in range(len(recipients)):
            if isinstance(recipients[i], str) and "<" in recipients[i]:
                return True
    return False


# RFC 5321 §4.1.2-4.1.3, for check(): data[0:sep] a local part (the "@" at sep),
# data[sep+1:end] a domain.
def _local(data, sep):
    """A local part: atoms of atext joined by single dots, or a quoted string of printable
    characters with \\" and \\\\ pairs, but no space, '<', '>' or ',' (legal there, yet
    servers and mail readers that cut at them exist). UTF-8 in either (RFC 6531 §3.3)."""
    if data[0] == 34:  # a quoted string
        k = 1
        while k < sep - 1:
            c = data[k]
            if c == 92 and (data[k + 1] == 34 or data[k + 1] == 92) and k + 1 < sep - 1:
                k += 1  # a quoted pair
            elif c == 34 or c == 92 or c == 32 or c == 60 or c == 62 or c == 44:
                return False
            k += 1
        return sep >= 3 and data[sep - 1] == 34
    dot = True  # the start or after a dot: an atom must follow
    for k in range(sep):
        c = data[k]
        if c == 46:
            if dot:
                return False
            dot = True
        elif 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in _ATEXT or c > 127:
            dot = False  # (over 127: UTF-8, RFC 6531 §3.3's atext)
        else:
            return False
    return not dot


def _domain(data, sep, end):
    """Labels of letters, digits and inner hyphens, 1-63 bytes each (RFC 1035); UTF-8
    letters too (only a non-ASCII address gets here with them: check() keeps DOMAIN's
    ASCII)."""
    label = 0
    c = 46
    for k in range(sep + 1, end):
        c = data[k]
        if c == 46:
            if not label or data[k - 1] == 45:
                return False
            label = 0
        elif 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c > 127 or \
                c == 45 and label:  # (over 127: a U-label's UTF-8, RFC 6531 §3.3)
            label += 1
            if label > 63:
                return False
        else:
            return False
    return label > 0 and c != 45


def _literal(data, sep, end):
    """[IPv4] or [IPv6:...]: literal.py's grammar, loaded the first time a value holds an
    address literal (a host name is the usual form: most boards never load it)."""
    try:
        from .literal import valid
    except MemoryError:  # as for any send: an SMTPError, temporary
        raise SMTPError(_PACKET_ALLOCATE_ERROR, "Out of memory while checking an address "
                        "literal; nothing was sent.") from None
    return valid(data, sep, end)


def encoded_subject_needed(subject):
    # Its first len() bytes hold the first byte of any non-ASCII character: a str is read
    # in place by scan_body (a view of its bytes would be 32 B).
    if scan_body(subject, len(subject), 0) & _SCAN_8BIT:
        return True
    # An ASCII subject that contains "=?" would be decoded by the reader as an encoded word
    # (CVE-2024-6923's shape): encode it so it shows literally. Long ones are folded too.
    return subject.find("=?") >= 0 or len(subject) > 900


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


_DAYS = const(b"MonTueWedThuFriSatSun")
_MONTHS = const(b"JanFebMarAprMayJunJulAugSepOctNovDec")
_HEXL = const(b"0123456789abcdef")

# The header block's parts after the addresses and the subject, in order (RFC 5322 §3.6;
# RFC 2045 for the MIME ones). Head.fill() walks them by number.
_H_DATE = const(0)
_H_FROM = const(3)
_H_TO = const(6)
_H_SUBJECT = const(7)
_H_ID = const(10)
_H_TYPE = const(14)  # the MIME headers up to the transfer encoding's name (mime.py: multipart)
_H_CTE = const(15)
_H_END = const(17)
_F_UTF8 = const(128)  # protocol.py's Session.flags bit: Head.start()'s answer


class Head:
    """The header block of one mail, copied into a send buffer piece by piece (so it may
    span buffers) and built in place: the Date's digits and the Message-ID's hex go into
    buffers made once, no string per header. Sender and domain are set once a client."""

    def __init__(self, from_address):
        self.from_address = a = as_bytes(from_address)
        # The Message-ID's right side: the sender's domain, after the last "@" of its
        # bytes (str.rfind counts characters: a UTF-8 local part has more bytes).
        self.domain = a[bytes(a).rfind(b"@") + 1:]
        self.date = bytearray(b"Mon, 00 Jan 0000 00:00:00 +0000")
        self.mid = bytearray(24)
        self.cte = self.priority = 0
        self.clear()

    def clear(self):
        """No mail. A mail's fields are set by the session (Session.load: recipients, a list
        of checked addresses; subject, a checked str; priority; time, seconds since the
        epoch for its Date or None for now; id, its Message-ID's unique part or None for a
        random one), then start() makes the rest."""
        self.recipients = self.subject = self.id = self.time = self.words = self.word = None
        self.index = self.r = self.pos = 0  # the part, the list item, the bytes of it sent

    def start(self, gmtime):
        """The mail's subject words, Date (gmtime: time.gmtime, the Client's clock) and
        Message-ID, for fill(); the transfer encoding (cte) is set once EHLO is known.
        protocol.py's Session.flags bit _F_UTF8 when the mail needs SMTPUTF8 (an address
        with UTF-8), else 0."""
        self.cte = _CTE_7BIT
        self.words = None  # RFC 2047 words of a subject that needs them
        self.index = self.r = self.pos = 0
        if encoded_subject_needed(self.subject):
            self.words = subject_words(self.subject)
            self.word = next(self.words)
        date = gmtime() if self.time is None else gmtime(self.time)
        # A board without NTP starts at its epoch (2000 or 1970); a wrong Date raises
        # spam scores, so none is sent. gmtime()'s year does not depend on the epoch.
        if date[0] <= 2020:
            self.index = _H_FROM
        else:
            _date(self.date, date)
        if self.id is None:  # 24 hex digits, in place
            _hex(self.mid, os.urandom(12))
        # _F_UTF8 when an envelope address has UTF-8: the mail needs a server that offers
        # SMTPUTF8 (RFC 6531 §3.4). Read in place (encode() makes nothing for ASCII).
        if encode(self.from_address) is not self.from_address:
            return _F_UTF8
        for i in range(len(self.recipients)):
            if encode(self.recipients[i]) is not self.recipients[i]:
                return _F_UTF8
        return 0

    def _part(self):
        """The piece of part k (b"" for an empty one), None past the end."""
        k = self.index  # the part
        if k == _H_DATE:
            return b"Date: "
        if k == 1:
            return self.date
        if k == 2:
            return b"\r\n"
        if k == _H_FROM:
            return b"From: "
        if k == 4:
            return self.from_address
        if k == 5:
            return b"\r\nTo: "
        if k == _H_TO:  # one address per line keeps lines short (§2.2.3 folding)
            r = self.r
            return b",\r\n " if r & 1 else encode(self.recipients[r >> 1])
        if k == _H_SUBJECT:
            if self.words is None:
                return b"\r\nSubject: "
            return b"\r\nSubject: =?utf-8?B?" if self.r == 0 else (
                b"?=\r\n =?utf-8?B?" if self.r & 1 == 0 else self.word)
        if k == 8:
            return b"" if self.words is not None else self.subject  # ASCII, not encoded
        if k == 9:
            return b"?=\r\n" if self.words is not None else b"\r\n"
        if k == _H_ID:
            return b"Message-ID: <"
        if k == 11:
            return self.mid if self.id is None else self.id
        if k == 12:
            return b"@"
        if k == 13:
            return self.domain
        if k == _H_TYPE:
            return (b">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8"
                    b"\r\nContent-Transfer-Encoding: ")
        if k == _H_CTE:
            return CTE_WIRE[self.cte]
        if k == 16:
            p = self.priority
            return b"\r\nX-Priority: 1 (Highest)\r\nImportance: high\r\n\r\n" if \
                p == PRIORITY_HIGH else b"\r\nX-Priority: 5 (Lowest)\r\nImportance: " \
                b"low\r\n\r\n" if p == PRIORITY_LOW else b"\r\n\r\n"
        return None

    def _next(self):
        """On to the next piece: a list part (recipients, encoded words) repeats."""
        self.pos = 0
        if self.index == _H_TO:
            self.r += 1
            if self.r < 2 * len(self.recipients) - 1:
                return
            self.r = 0
        elif self.index == _H_SUBJECT and self.words is not None:
            self.r += 1
            if self.r & 1:
                return  # the word after its prefix
            try:
                self.word = next(self.words)
                return
            except StopIteration:
                self.r = 0
        self.index += 1

    def fill(self, buf, n):
        """Copy what follows of the header block into buf from n; the new n (all of it is
        in once k reaches _H_END). A piece that does not fit waits for the next buffer,
        unless even a whole buffer cannot hold it (a long subject): then it is cut."""
        while True:
            p = self._part()
            if p is None:
                return n
            m = len(p) - self.pos
            if m > len(buf) - n:
                if n:
                    return n  # send this buffer; the piece starts the next one
                m = len(buf)
                buf[:m] = as_bytes(p)[self.pos:self.pos + m]
                self.pos += m
                return m
            if self.pos:  # the rest of a cut piece
                buf[n:n + m] = as_bytes(p)[self.pos:]
            else:  # an ASCII str is copied as it is, not through a view (32 B): encode()
                copy(buf, n, p, 0, m)
            n += m
            self._next()


def _date(buf, date):
    """RFC 5322 §3.3 into buf: "Sat, 28 Nov 2026 09:05:07 +0000", digit by digit, from a
    time.gmtime() tuple."""
    d = date[6] * 3
    for i in range(3):
        buf[i] = _DAYS[d + i]
        buf[8 + i] = _MONTHS[date[1] * 3 - 3 + i]
    for i in range(6):  # day, century, year, hour, minute, second: 2 digits each
        v = date[2] if i == 0 else date[0] // 100 if i == 1 else \
            date[0] % 100 if i == 2 else date[i]
        d = 5 if i == 0 else 8 + i * 3 if i > 2 else 10 + i * 2
        buf[d] = 48 + v // 10
        buf[d + 1] = 48 + v % 10


def _hex(buf, data):
    """data's bytes as lowercase hex digits into buf."""
    for i in range(len(data)):
        buf[2 * i] = _HEXL[data[i] >> 4]
        buf[2 * i + 1] = _HEXL[data[i] & 15]


def tell(body):
    """body.tell(), or -1 when it has none (a pipe, a socket: it is read once, as it comes).
    Apart, and small: a try takes that call's frame from the heap unless it is."""
    try:
        return body.tell()
    except (AttributeError, OSError):
        return -1


class BodySource:
    """One reader over every body kind: readinto(buf) -> bytes copied (0 at the end)."""

    def __init__(self):
        self.reset(None, None)

    def reset(self, body, limit):
        """body: str, bytes, bytearray, memoryview, a file, an iterator of chunks (or None:
        none); limit: NetX's mail_body_length, send only this many bytes (None or -1: all)."""
        self.left = -1 if limit is None or limit < 0 else limit
        self.size = -1  # bytes before encoding, -1 when unknown (RFC 1870 SIZE=)
        self.scanned = -1  # what scan() found (_SCAN_*), -1: not looked at
        self.data = None  # in-memory body or current iterator chunk: any buffer, read by copy
        self.pos = self.end = 0  # its next byte and its length in bytes
        self.mode = 0  # 0 memory, 1 readinto, 2 iterator
        if body is None:
            self.body = None
            return
        if isinstance(body, str):
            self.data = as_bytes(body)
        elif isinstance(body, bytes) or isinstance(body, bytearray) or isinstance(
                body, memoryview):  # not a tuple of types: 48 B a mail
            self.data = body
        elif hasattr(body, "readinto"):
            self.mode = 1
            pos = tell(body)  # a file on flash: its end, from where it stands
            if pos >= 0:
                self.size = body.seek(0, 2) - pos
                body.seek(pos)
        elif hasattr(body, "__next__") or hasattr(body, "__iter__"):
            self.mode = 2
            body = iter(body)
        else:
            raise TypeError("body must be str, bytes, bytearray, memoryview, a file or "
                            "an iterator of chunks")
        self.body = body
        if self.data is not None:
            self.size = self.end = len(self.data)
        if 0 <= self.left < self.size:
            self.size = self.left

    def scan(self, buf):
        """Look at the body before MAIL, so it gets the transfer encoding it needs rather
        than fail mid-DATA: _SCAN_8BIT and _SCAN_UNFIT as found, or -1 for a body that
        cannot be read twice (an iterator, a pipe) or a memoryview (sent as a stream is).
        A file is read through buf, then rewound; as much as will be sent, NetX's limit
        kept."""
        if self.mode == 0:
            if self.data is None or isinstance(self.body, memoryview):
                return -1
            return scan_body(self.data, self.size, 0) & (_SCAN_8BIT | _SCAN_UNFIT)
        pos = tell(self.body) if self.mode == 1 else -1
        if pos < 0:
            return -1
        left = self.left
        st = 0  # scan_body's: the flags, and the length of the line a chunk ends in
        while left and st < _SCAN_8BIT | _SCAN_UNFIT:  # until the end, or nothing to learn
            # The file's own readinto, not self.readinto: its frame (more locals) would
            # come from the heap, once a chunk.
            n = self.body.readinto(buf if left < 0 or left >= len(buf) else
                                   memoryview(buf)[:left]) or 0
            if not n:
                break
            if left > 0:
                left -= n
            st = scan_body(buf, n, st)
        self.body.seek(pos)
        return st & (_SCAN_8BIT | _SCAN_UNFIT)

    def readinto(self, buf):
        # Called once a chunk, so kept small: no try and few locals. A bytecode call whose
        # locals + stack (+ 3 words per try) pass 11 words takes its frame from the heap
        # (py/objfun.c, VM_MAX_STATE_ON_STACK); this one stays on the C stack.
        if self.left == 0:
            return 0
        room = len(buf) if self.left < 0 or self.left > len(buf) else self.left
        if self.mode == 1:  # a file: straight into the buffer, sliced only for a limit
            n = self.body.readinto(buf if room == len(buf) else memoryview(buf)[:room]) or 0
        elif self.pos < self.end or self.mode == 2 and self._next():
            n = self.end - self.pos
            if n > room:
                n = room
            copy(buf, 0, self.data, self.pos, n)  # no slice objects (a memoryview each)
            self.pos += n
        else:
            return 0
        if self.left > 0:
            self.left -= n
        return n

    def _next(self):
        """The iterator's next chunk that holds a byte: True, or False at its end."""
        while self.pos >= self.end:
            try:
                chunk = next(self.body)
            except StopIteration:
                self.mode = 0
                return False
            if isinstance(chunk, str):
                # Its UTF-8 bytes: a memoryview, whose len counts bytes (32 B a str chunk).
                chunk = as_bytes(chunk)
            elif not (isinstance(chunk, bytes) or isinstance(chunk, bytearray)
                      or isinstance(chunk, memoryview)):  # a tuple of types: 40 B a chunk
                raise TypeError("body chunks must be str or bytes-like")
            self.data = chunk
            self.pos = 0
            self.end = len(chunk)
        return True


# BodyEncoder's state between calls, in an array("i") made once: the viper loop reads and
# writes it in place (attributes would cost a dict lookup a byte, a tuple would cost heap).
_S_I = const(0)  # next input byte (in: self.index, out: where it stopped)
_S_O = const(1)  # next output byte
_S_CAP = const(2)  # len(buf) - 4: room for the worst step ("." + "=XX", or CRLF)
_S_QP = const(3)  # 1: quoted-printable
_S_CR = const(4)  # 1: the last input byte was CR, so a following LF belongs to it
_S_BOL = const(5)  # 1: at the beginning of a line
_S_COL = const(6)  # bytes on the current output line
_S_LONG = const(7)  # 1: a line passed 998 octets (7bit and 8bit only)
_S_SIZE = const(8)


class BodyEncoder:
    """CRLF-normalise, transfer-encode and dot-stuff body bytes from `src` into `buf`.

    RFC 5321 §2.3.8 and the SMTP smuggling advisories: CR, LF and CRLF each become CRLF
    before anything else, so no bare CR or LF reaches the wire; then §4.5.2 dot-stuffing.
    The bytes are moved by native.transform, a viper loop with no allocation; these methods only
    carry index, pos and too_long between it and the session."""

    def __init__(self):
        # Imported here, once a client: one more module global grew message's dict by 256 B.
        from array import array

        self.state = array("i", bytes(4 * _S_SIZE))
        self.start(_CTE_7BIT, b"", b"")  # every attribute now: the instance dict never grows

    def start(self, cte, src, buf):
        """A body from buffer `src` into buffer `buf`."""
        self.src = src
        self.buf = buf
        st = self.state
        st[_S_CAP] = len(buf) - 4
        st[_S_QP] = 1 if cte == _CTE_QP else 0
        st[_S_CR] = st[_S_COL] = st[_S_LONG] = 0
        st[_S_BOL] = 1
        self.too_long = False
        self.pos = 0  # next output byte
        self.chunk()

    def chunk(self):
        """A new chunk of input starts at src[0]."""
        self.index = 0  # next input byte

    def encode(self, n):
        """Consume src[self.index:n] into buf from self.pos until buf is full (no tuple per
        call)."""
        # A small frame (see BodySource.readinto): MicroPython keeps it on the C stack.
        st = self.state
        st[_S_I] = self.index
        st[_S_O] = self.pos
        transform(self.src, n, self.buf, st)
        self.index = st[_S_I]
        self.pos = st[_S_O]
        self.too_long = st[_S_LONG] != 0

    def finish(self, n):
        """End the body at buf[n]: a CRLF if the last line lacks one (never an extra empty
        line), then ".", CRLF; the new end."""
        out = self.buf
        if not self.state[_S_BOL]:
            out[n] = _CR
            out[n + 1] = _LF
            n += 2
        out[n] = _DOT
        out[n + 1] = _CR
        out[n + 2] = _LF
        return n + 3
