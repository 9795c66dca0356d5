# microsmtp: rich mail — Cc/Bcc, display names, Reply-To, custom headers, HTML and
# attachments streamed as base64. MIT licence.
# Loaded at a client's first rich send (Client.send with cc=, bcc=, reply_to=, headers=,
# html=, attachments= or a recipient with a display name): a board whose alerts are plain
# text never holds this bytecode (.mpy files load into RAM on stock firmware).
#
# Mail takes the place of the session's message.Head (protocol.Session.head) at the first
# rich send and keeps it: a plain mail after it goes out exactly as Head would send it.
# For a mail with parts, Mail is also the body the engine reads (readinto): the MIME
# structure, the text parts and each attachment as base64, one buffer at a time, made in
# the buffers the engine hands it, nothing allocated per chunk.
#
# Boundaries are constants that start with "=_", proven never to occur inside a part:
# base64 has no "_" and "=" only as padding before a line end; quoted-printable writes every
# "=" as "=3D"; and a text part in 7bit or 8bit is looked at first, and goes
# quoted-printable if it holds "=_" (or cannot be looked at: a stream). RFC 2045 §6.7 and
# RFC 2046 §5.1.1 give the reasoning.
from micropython import const

from . import message
from .message import CTE_WIRE, check
from .native import copy, scan_body

_H_TO = const(6)  # message.Head's parts (its _H_*): tests/test_units.py checks they agree
_H_SUBJECT = const(7)
_H_TYPE = const(14)  # "...Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-..."
_H_CTE = const(15)
_S_QP = const(3)  # message.BodyEncoder's state: 1 while quoted-printable
_CTE_8BIT = const(1)  # message.py's transfer encodings (Head.cte)
_CTE_QP = const(2)
_SCAN_8BIT = const(1024)  # message.py's _SCAN_*
_SCAN_UNFIT = const(2048)
_F_UTF8 = const(128)  # message.Head.start()'s answer: the mail needs SMTPUTF8
_MAX_FILES = const(16)
_B64_LINE = const(57)  # input bytes of one 76-character base64 line (RFC 2045 §6.8)
_B64_RAW = const(342)  # 6 lines: 468 bytes of output, within a 536-byte pool buffer

# The body's program (Mail.ops): one op a byte, its argument (a level or a file) above 4 bits.
_DO_DELIM = const(1)  # "\r\n--" boundary "\r\n"
_DO_CLOSE = const(2)  # "\r\n--" boundary "--\r\n"
_DO_ALT = const(3)  # a multipart/alternative part's header
_DO_REL = const(4)  # a multipart/related part's header
_DO_TEXT = const(5)  # the text/plain part
_DO_HTML = const(6)  # the text/html part
_DO_FILE = const(7)  # attachment k: its header, then its base64
_MIXED = const(0)  # boundary levels
_ALT = const(1)
_REL = const(2)
_BOUNDARY = (b"=_mixed.microsmtp", b"=_alt.microsmtp", b"=_rel.microsmtp")
_MULTIPART = (b"mixed", b"alternative", b"related")
_B64 = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_CONTENT = const(1)  # _bpart(): the op's content streams now

# Headers a caller may not set: the client writes them, or they decide how the mail is read.
_OWN = ("from", "to", "cc", "bcc", "date", "message-id", "subject", "reply-to", "sender",
        "mime-version", "x-priority", "importance", "return-path", "received")
_KEYS = ("cc", "bcc", "reply_to", "headers", "html", "attachments")
# What str.strip() takes off as white space (Python's, which mail readers' resemble): a
# filename must not begin or end with one. (MicroPython's strip() knows ASCII only.)
_SPACES = " \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
    "\u2028\u2029\u202f\u205f\u3000"


def _addresses(value, what):
    """A recipient field as a list or tuple of str (one str: a 1-tuple)."""
    if isinstance(value, str):
        return (value,)
    if not (isinstance(value, list) or isinstance(value, tuple)):
        raise TypeError("%s must be an address or a list of addresses" % what)
    return value


def _split(entry, what):
    """(display name or None, address) of `addr` or `Name <addr>` / `"Name" <addr>`, both
    checked: the address by RFC 5321's grammar, the name for control characters."""
    if not isinstance(entry, str):
        raise TypeError(what + " must be a str")
    lt = entry.rfind("<")
    if lt < 0:
        check(entry, what, message.ADDRESS)
        return None, entry
    check(entry, what, message.TEXT, 600)  # no control character anywhere (CR, LF, TAB)
    if not entry.endswith(">"):
        raise ValueError("%s %r: a display name's address ends with '>'" % (what, entry))
    addr = entry[lt + 1:-1]
    check(addr, what, message.ADDRESS)
    name = entry[:lt].strip(" ")  # (spaces only: the same on CPython and MicroPython)
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    check(name, what + "'s display name", message.TEXT, 200)
    return name or None, addr


def rich(client, recipients, body, rich):
    """Client.rich once mime.py is loaded: the session's Mail (made at the first rich
    mail, in the place of its message.Head for good) checks and keeps the mail."""
    s = client._session
    if s is None:
        client._begin(True)  # raises: a closed client
    if not isinstance(s.head, Mail):
        s.head = Mail(s)
    return s.head.prepare(recipients, body, rich)


def _words(text):
    """text as RFC 2047 B encoded words (message.subject_words: whole UTF-8 characters)."""
    return ["=?utf-8?B?%s?=" % w.decode() for w in message.subject_words(text)]


def _phrase(name):
    """A display name as RFC 5322 writes it: a quoted string, or RFC 2047 encoded words
    when it has non-ASCII characters or holds "=?" (a reader would decode that)."""
    if message.encoded_subject_needed(name):
        return " ".join(_words(name))
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def _render(entries, what, envelope):
    """Check a recipient field; its addresses onto `envelope` (RCPT TO); its header form:
    a list of entries, or None when every entry is a bare address (the field as given)."""
    out = None
    for i in range(len(entries)):
        name, addr = _split(entries[i], what)
        envelope.append(addr)
        if (name is not None or addr is not entries[i]) and out is None:
            out = list(entries[:i])  # "<addr>" too is written as the bare address
        if out is not None:
            out.append(addr if name is None else "%s <%s>" % (_phrase(name), addr))
    return out


def _fold(name, value):
    """One header line (without its CRLF), folded at spaces to keep lines near 78
    characters (RFC 5322 §2.2.3); a non-ASCII value, or one holding "=?", as encoded
    words (RFC 2047), one a line."""
    if message.encoded_subject_needed(value):
        return "%s: %s" % (name, "\r\n ".join(_words(value)))
    out = []
    line = name + ":"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and len(line) > len(name) + 1:
            out.append(line)
            line = ""
        line += " " + word
    out.append(line)
    return "\r\n".join(out)


def _check_header(name, value):
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("header names and values must be str")
    if not 0 < len(name) <= 76:
        raise ValueError("header name %r must have 1 to 76 characters" % name)
    for c in name:  # RFC 5322 §2.2 ftext: printable ASCII but ":"
        if not 33 <= ord(c) <= 126 or c == ":":
            raise ValueError("header name %r is not a field name RFC 5322 allows" % name)
    low = name.lower()
    if low in _OWN or low.startswith("content-"):
        raise ValueError("header %r is the client's to write; use send()'s own "
                         "arguments" % name)
    check(value, "header %s" % name, message.TEXT, 900)


def _check_type(ctype):
    """type/subtype of RFC 2045 §5.1 tokens, no parameters (no injection through them)."""
    if not isinstance(ctype, str):
        raise TypeError("an attachment's content type must be a str")
    slash = ctype.find("/")
    ok = 0 < slash < len(ctype) - 1 and len(ctype) <= 100
    for c in ctype:
        if not ok:
            break
        ok = c == "/" or 33 <= ord(c) <= 126 and c not in '()<>@,;:\\"[]?='
    if not ok or ctype.count("/") != 1:
        raise ValueError("content type %r is not type/subtype (RFC 2045 §5.1)" % ctype)


def _check_filename(name):
    """A file's name, no path: 1 to 255 characters, no control character (injection).
    Read character by character: a view of its bytes (message.check) would cost 32 B."""
    if not isinstance(name, str):
        raise TypeError("an attachment's filename must be a str")
    if not 0 < len(name) <= 255 or "/" in name or "\\" in name:
        raise ValueError("filename %r must be a name of 1 to 255 characters, not a path"
                         % name)
    for c in name:
        if ord(c) < 32 or 127 <= ord(c) < 160:
            raise ValueError("filename %r contains a control character" % name)
    if name[0] in _SPACES or name[-1] in _SPACES:  # readers strip them: another name
        raise ValueError("filename %r begins or ends with a space" % name)


def _needs_2231(name):
    """A filename quoted-string cannot carry as it is: non-ASCII or '"'."""
    for c in name:
        if ord(c) > 126 or c == '"':
            return True
    return False


def _param_2231(name):
    """RFC 2231 §4: filename*=utf-8''%XX... (attribute-chars kept, the rest %-encoded)."""
    out = ["filename*=utf-8''"]
    for b in name.encode():
        c = chr(b)
        if b < 128 and (c.isalpha() or c.isdigit() or c in "!#$&+-.^_`|~"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def _check_data(data, what):
    # (isinstance one type at a time: a tuple of types is built on every call, 48 B.)
    if not (isinstance(data, str) or isinstance(data, bytes) or isinstance(data, bytearray)
            or isinstance(data, memoryview) or hasattr(data, "readinto")
            or hasattr(data, "__next__") or hasattr(data, "__iter__")):
        raise TypeError("%s must be str, bytes, a file or an iterator of chunks" % what)


def _check_rich(rich):
    """send()'s keywords checked: no other, html= and attachments= of their kinds."""
    for key in rich:
        if key not in _KEYS:
            raise TypeError("send() got an unexpected keyword argument %r" % key)
    html = rich.get("html")
    if html is not None:
        _check_data(html, "html")
    _check_files(rich.get("attachments", ()), html)


def _own(to):
    """To's addresses as a tuple of the envelope's own (a list could be the caller's)."""
    if isinstance(to, str):
        return (to,)
    if not (isinstance(to, list) or isinstance(to, tuple)):
        raise TypeError("recipients must be an address or a list of addresses")
    return tuple(to)


def _check_files(files, html):
    """attachments= checked (a content ID: inline, shown in the HTML)."""
    if not (isinstance(files, list) or isinstance(files, tuple)):
        raise TypeError("attachments must be a list of (filename, content_type, data)")
    if len(files) > _MAX_FILES:
        raise ValueError("more than %d attachments in one mail" % _MAX_FILES)
    for i in range(len(files)):
        _check_file(files[i], html)


def _names(files):
    """The RFC 2231 filename parameters the files need, or None when none does."""
    names = None
    for i in range(len(files)):
        if _needs_2231(files[i][0]):
            if names is None:
                names = [None] * len(files)
            names[i] = _param_2231(files[i][0])
    return names


def _headers(headers, extra):
    """headers= (a dict, or a list of (name, value)) checked, folded onto extra."""
    if headers is None:
        return
    if isinstance(headers, dict):
        headers = list(headers.items())
    elif not (isinstance(headers, list) or isinstance(headers, tuple)):
        raise TypeError("headers is a dict or a list of (name, value)")
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError("headers is a dict or a list of (name, value)")
        _check_header(item[0], item[1])
        extra.append(_fold(item[0], item[1]))


def _check_file(item, html):
    if not isinstance(item, tuple) or not 3 <= len(item) <= 4:
        raise TypeError("an attachment is (filename, content_type, data) or (filename, "
                        "content_type, data, content_id)")
    _check_filename(item[0])
    _check_type(item[1])
    _check_data(item[2], "an attachment's data")
    if len(item) == 4:
        if html is None:
            raise ValueError("an inline part (with a content ID) needs html= to show it")
        cid = item[3]
        check(cid, "content_id", message.ADDRESS if "@" in cid else message.DOMAIN, 100)
        if scan_body(cid, len(cid), 0) & _SCAN_8BIT:  # an address may have UTF-8; not it
            raise ValueError("content_id %r has non-ASCII characters" % cid)


def _fielded(to, rich):
    """True when the header fields need mime.py (Cc, Reply-To, headers, display names);
    otherwise Head writes To from the envelope."""
    return "cc" in rich or "bcc" in rich or "reply_to" in rich or "headers" in rich or \
        message.rich(to)


def _fields(to, rich):
    """To, Cc, Bcc, Reply-To and the caller's headers checked: (the envelope, every
    address once more as RCPT TO; To's entries as written, or None when all are bare;
    the header lines after To, or None; a Reply-To address with UTF-8, or None)."""
    to = _addresses(to, "recipients")
    cc = _addresses(rich.get("cc", ()), "cc")
    bcc = _addresses(rich.get("bcc", ()), "bcc")
    if not to:
        raise ValueError("no recipient given (To needs one; cc and bcc add more)")
    if len(to) + len(cc) + len(bcc) > 100:  # RFC 5321 §4.5.3.1.8
        raise ValueError("more than 100 recipients in one mail")
    envelope = []
    shown = _render(to, "recipient", envelope)
    extra = []
    if cc:
        extra.append("Cc: " + ",\r\n ".join(_render(cc, "cc", envelope) or cc))
    _render(bcc, "bcc", envelope)  # the envelope only: never a header
    reply = rich.get("reply_to")
    wide = None
    if reply is not None:
        reply = _addresses(reply, "reply_to")
        seen = []
        extra.append("Reply-To: " + ",\r\n ".join(_render(reply, "reply_to", seen) or reply))
        for addr in seen:  # utf8.py names it when the server lacks SMTPUTF8
            if scan_body(addr, len(addr), 0) & _SCAN_8BIT:
                wide = addr
                break
    _headers(rich.get("headers"), extra)
    return envelope, shown if shown is not None else to, \
        ("\r\n" + "\r\n".join(extra)).encode() if extra else None, wide


def envelope(to, rich):
    """send()'s rich arguments checked as Mail.prepare checks them, nothing kept: the
    envelope's addresses (RCPT TO). Outbox.put checks a mail with it before writing it,
    and flush() the mail it reads back (a tampered file must not inject either)."""
    _check_rich(rich)
    return _fields(to, rich)[0] if _fielded(to, rich) else _own(to)


def only(envelope, rcpt):
    """rcpt (a list of addresses, each one of envelope's) as the envelope: a session's
    send(envelope=...), the outbox's retry for the recipients a server refused."""
    if not (isinstance(rcpt, list) or isinstance(rcpt, tuple)) or not rcpt:
        raise TypeError("envelope must be a non-empty list of the mail's addresses")
    for i in range(len(rcpt)):
        if rcpt[i] not in envelope:
            raise ValueError("envelope address %r is not one of the mail's recipients"
                             % (rcpt[i],))
    return list(rcpt)


def _b64(src, n, buf, o):
    """src[:n] as base64 into buf from o, a CRLF after every 76 characters (57 bytes) and
    at the end; the new o. Small ints only: nothing allocated (RFC 2045 §6.8). Bytecode,
    not viper: native code loads on one architecture only, so all of it lives in
    native.py, on every board's plain path; this loop makes about 8 MB/s of input on the
    unix port (binascii.b2a_base64 would allocate its result a line)."""
    i = 0
    while i + 3 <= n:
        v = src[i] << 16 | src[i + 1] << 8 | src[i + 2]
        buf[o] = _B64[v >> 18]
        buf[o + 1] = _B64[v >> 12 & 63]
        buf[o + 2] = _B64[v >> 6 & 63]
        buf[o + 3] = _B64[v & 63]
        o += 4
        i += 3
        if i % _B64_LINE == 0:
            buf[o] = 13
            buf[o + 1] = 10
            o += 2
    if i < n:  # the last one or two bytes, padded with "="
        v = src[i] << 16 | (src[i + 1] << 8 if i + 1 < n else 0)
        buf[o] = _B64[v >> 18]
        buf[o + 1] = _B64[v >> 12 & 63]
        buf[o + 2] = _B64[v >> 6 & 63] if i + 1 < n else 61
        buf[o + 3] = 61
        o += 4
        i = n
    if i % _B64_LINE:
        buf[o] = 13
        buf[o + 1] = 10
        o += 2
    return o


class Mail(message.Head):
    """A session's header block (as Head) and, for a mail with parts, its body."""

    def __init__(self, session):
        head = session.head
        self.session = session
        self.from_address = head.from_address
        self.domain = head.domain
        self.date = head.date
        self.mid = head.mid
        self.cte = self.priority = 0
        self.part = message.BodySource()  # the part being sent, or looked at
        self.raw = bytearray(_B64_RAW)  # an attachment's bytes before base64
        self.ops = bytearray(2 * _MAX_FILES + 12)
        self.armed = None
        self.clear()

    def clear(self):
        message.Head.clear(self)
        self._plain()

    def _plain(self):
        """No rich part: the mail goes out as Head sends it."""
        self.to = self.extra = self.text = self.html = self.files = self.names = None
        self.body = None  # what the session reads as the body: this Mail, or the text
        self.wide_reply = None  # a Reply-To address with UTF-8: the mail needs SMTPUTF8
        self.flags = self.size = 0  # the text parts' _SCAN_* flags, the body's size
        self.top = -1  # the multipart level of the whole mail; -1: none (text/plain)
        self.x = self.nops = self.op = self.bpos = self.left = 0
        self.bstage = 0

    # --- before the session: the arguments checked, kept --------------------------------

    def prepare(self, to, body, rich):
        """Check a rich mail's arguments (nothing sent yet) and keep them; the envelope's
        recipients (RCPT TO). The body the session is to read is then self.body. (Small
        steps: a call with many locals takes its frame from the heap.)"""
        _check_rich(rich)
        if _fielded(to, rich):
            envelope, self.to, self.extra, self.wide_reply = _fields(to, rich)
        else:  # To alone, bare addresses: Head writes it from the envelope
            envelope = _own(to)
            self.to = self.extra = self.wide_reply = None
        self._keep(body, rich)
        # Armed for the mail whose recipients are this envelope (Session.load keeps them):
        # any other loaded later (this one never sent: a closed client, a bad subject) is
        # a plain mail, which start() sees.
        self.armed = envelope
        return envelope

    def _keep(self, body, rich):
        """All checked: kept for start(). None of it has gone anywhere yet."""
        self.text = body
        self.html = rich.get("html")
        self.files = rich.get("attachments", ())
        self.names = _names(self.files)
        self._program()
        self.body = self if self.top >= 0 else body

    def _program(self):
        """The body's op list: which parts, in which multiparts (RFC 2046 §5.1)."""
        html = self.html is not None
        inline = 0
        for i in range(len(self.files)):
            inline += len(self.files[i]) == 4
        attached = len(self.files) - inline
        self.nops = 0
        self.top = _MIXED if attached else _ALT if html else -1
        if attached:
            self._add(_DO_DELIM | _MIXED << 4)
            if html:
                self._add(_DO_ALT)
        if html:
            self._add(_DO_DELIM | _ALT << 4)
            self._add(_DO_TEXT)
            self._add(_DO_DELIM | _ALT << 4)
            if inline:
                self._add(_DO_REL)
                self._add(_DO_DELIM | _REL << 4)
            self._add(_DO_HTML)
            if inline:
                self._files(True, _REL)
                self._add(_DO_CLOSE | _REL << 4)
            self._add(_DO_CLOSE | _ALT << 4)
        elif attached:
            self._add(_DO_TEXT)
        if attached:
            self._files(False, _MIXED)
            self._add(_DO_CLOSE | _MIXED << 4)

    def _add(self, op):
        self.ops[self.nops] = op
        self.nops += 1

    def _files(self, inline, level):
        for i in range(len(self.files)):
            if (len(self.files[i]) == 4) == inline:
                self._add(_DO_DELIM | level << 4)
                self._add(_DO_FILE | i << 4)

    # --- at the session's start of the mail ---------------------------------------------

    def start(self, gmtime):
        if self.armed is not self.recipients or self.armed is None:
            self._plain()  # a plain mail after a rich one: Head's, as it always was
        self.armed = None
        # A Reply-To address with UTF-8 is only in a header, yet RFC 6532's UTF-8 there
        # needs SMTPUTF8 too.
        wide = message.Head.start(self, gmtime) or (0 if self.wide_reply is None else _F_UTF8)
        self.x = self.op = self.bpos = self.bstage = 0
        if self.top < 0:
            return wide  # rich headers, a text/plain body as any: the session looks at it
        s = self.session
        # The session reads this Mail: its scan (the transfer encoding of the text parts)
        # and its size (RFC 1870 SIZE=, an estimate) are the parts'.
        self.flags = self.size = 0
        self.text = self._look(self.text, s.scratch)
        if self.html is not None:
            self.html = self._look(self.html, s.scratch)
        s.body.scanned = self.flags
        s.body.size = self._size()
        self.part.reset(None, None)
        return wide

    def _size(self):
        """The body's size once encoded, near enough for SIZE=; -1 if a part's is unknown."""
        p = self.part
        size = self.size
        for i in range(len(self.files)):
            p.reset(self.files[i][2], None)
            if p.size < 0 or size < 0:
                return -1
            size += (p.size + 2) // 3 * 4 + p.size // 28 + 300  # base64, its CRLFs, header
        return size

    def _look(self, data, scratch):
        """A text part looked at: its _SCAN_* flags onto self.flags, its size onto
        self.size. _SCAN_UNFIT (quoted-printable) also when it holds "=_" or cannot be
        looked at (a stream): then no boundary can occur in it. What to stream it from:
        a str's view (its bytes, made here once), or the part as given."""
        p = self.part
        p.reset(data, None)
        flags = p.scan(scratch)
        self.size = self.size + p.size + 300 if p.size >= 0 and self.size >= 0 else -1
        if flags < 0:
            flags = _SCAN_UNFIT
        elif p.mode:
            flags |= self._file_holds(data, scratch)
        elif (data.find("=_") if isinstance(data, str) else
              bytes(data).find(b"=_") if isinstance(data, memoryview) else
              data.find(b"=_")) >= 0:
            flags |= _SCAN_UNFIT
        self.flags |= flags
        return p.data if isinstance(data, str) else data

    def _file_holds(self, f, scratch):
        """_SCAN_UNFIT when the file holds "=_" (across its chunks too); rewound."""
        pos = f.tell()
        last = 0
        found = 0
        while not found:
            n = f.readinto(scratch) or 0
            if not n:
                break
            found = scratch.find(b"=_", 0, n) >= 0 or last == 61 and scratch[0] == 95
            last = scratch[n - 1]
        f.seek(pos)
        return _SCAN_UNFIT if found else 0

    def tell(self):  # message.tell(): the body is read once, as it is made
        return -1

    # --- the header block ---------------------------------------------------------------

    def _part(self):
        k = self.index
        if k == _H_TO and self.to is not None:
            r = self.r
            return b",\r\n " if r & 1 else message.encode(self.to[r >> 1])  # UTF-8: bytes
        if k == _H_SUBJECT and self.x == 0 and self.extra is not None:
            return self.extra  # Cc, Reply-To, the caller's headers: after To
        if self.top >= 0:
            if k == _H_TYPE:  # (no tuple of pieces: it would be built at every call)
                x = self.x
                return b">\r\nMIME-Version: 1.0\r\nContent-Type: multipart/" if x == 0 \
                    else _MULTIPART[self.top] if x == 1 else b"; boundary=\"" if x == 2 \
                    else _BOUNDARY[self.top] if x == 3 \
                    else b"\"\r\nContent-Transfer-Encoding: "
            if k == _H_CTE:  # RFC 2045 §6.4: a multipart is 7bit or 8bit, never encoded
                return b"8bit" if self.cte == _CTE_8BIT else b"7bit"
        return message.Head._part(self)

    def _next(self):
        k = self.index
        if k == _H_TO and self.to is not None:
            self.pos = 0
            self.r += 1
            if self.r < 2 * len(self.to) - 1:
                return
            self.r = 0
            self.index += 1
            return
        if k == _H_SUBJECT and self.x == 0 and self.extra is not None:
            self.pos = 0
            self.x = 1
            return
        if k == _H_TYPE and self.top >= 0:
            self.pos = 0
            self.x += 1
            if self.x < 5:
                return
            self.index += 1
            return
        message.Head._next(self)
        if self.index == _H_TYPE:
            self.x = 0

    # --- the body, for the engine: readinto(buf) as a file's ----------------------------

    def readinto(self, buf):
        """The next bytes of the body into buf; 0 at its end. One kind a call: MIME
        structure and base64 (the encoder's quoted-printable off), or a text part's bytes
        (on when the text goes quoted-printable), so the engine's encoder handles each."""
        while self.op < self.nops:
            p = self._bpart()
            if p == _CONTENT:
                n = self._content(buf)
                if n:
                    return n
                continue
            n = self._structure(buf)
            if n:
                self.session.enc.state[_S_QP] = 0
                return n
        return 0

    def _structure(self, buf):
        """Copy the op's pieces into buf until its content, the next op's, or a full buf."""
        n = 0
        while self.op < self.nops:
            p = self._bpart()
            if p == _CONTENT:
                break
            m = len(p) - self.bpos
            if m > len(buf) - n:
                m = len(buf) - n
                if not m:
                    break
            copy(buf, n, p, self.bpos, m)
            n += m
            self.bpos += m
            if self.bpos == len(p):
                self._bnext()
        return n

    def _bpart(self):
        """The piece of op self.op at stage self.bstage, or _CONTENT for its content."""
        op = self.ops[self.op]
        code = op & 15
        k = self.bstage
        # (If-chains, no tuple of pieces: a tuple would be built at every call.)
        if code == _DO_DELIM or code == _DO_CLOSE:
            return b"\r\n--" if k == 0 else _BOUNDARY[op >> 4] if k == 1 else \
                b"\r\n" if code == _DO_DELIM else b"--\r\n"
        if code == _DO_ALT or code == _DO_REL:
            return b"Content-Type: multipart/" if k == 0 else \
                _MULTIPART[_ALT if code == _DO_ALT else _REL] if k == 1 else \
                b"; boundary=\"" if k == 2 and code == _DO_ALT else \
                b"; type=\"text/html\"; boundary=\"" if k == 2 else \
                _BOUNDARY[_ALT if code == _DO_ALT else _REL] if k == 3 else b"\"\r\n\r\n"
        if code == _DO_TEXT or code == _DO_HTML:
            if k == 0:
                return b"Content-Type: text/plain; charset=utf-8\r\n" if code == _DO_TEXT \
                    else b"Content-Type: text/html; charset=utf-8\r\n"
            return b"Content-Transfer-Encoding: " if k == 1 else CTE_WIRE[self.cte] if k == 2 \
                else b"\r\n\r\n" if k == 3 else _CONTENT
        return self._file_part(op >> 4, k)

    def _file_part(self, i, k):
        item = self.files[i]
        if k == 0:
            return b"Content-Type: "
        if k == 1:
            return item[1]
        if k == 2:
            return b"\r\nContent-Disposition: inline;\r\n " if len(item) == 4 else \
                b"\r\nContent-Disposition: attachment;\r\n "
        if k == 3:
            return b"filename=\"" if self.names is None or self.names[i] is None else b""
        if k == 4:
            return item[0] if self.names is None or self.names[i] is None else self.names[i]
        if k == 5:
            return b"\"" if self.names is None or self.names[i] is None else b""
        if k == 6:
            return b"\r\nContent-ID: <" if len(item) == 4 else b""
        if k == 7:
            return item[3] if len(item) == 4 else b""
        if k == 8:
            return b">" if len(item) == 4 else b""
        if k == 9:
            return b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        return _CONTENT

    def _bnext(self):
        """On to the next piece of the op, or to the next op after its last."""
        self.bpos = 0
        self.bstage += 1
        op = self.ops[self.op] & 15
        if self.bstage == (3 if op <= _DO_CLOSE else 5 if op <= _DO_REL else 99):
            self._done()

    def _done(self):
        self.op += 1
        self.bstage = self.bpos = 0

    def _content(self, buf):
        """The op's content into buf: a text part's bytes, or an attachment's base64; 0
        once it is all sent (then the next op)."""
        op = self.ops[self.op] & 15
        p = self.part
        if self.bstage != 99:  # the content starts: its source opened
            self.bstage = 99
            p.reset(self.text if op == _DO_TEXT else self.html if op == _DO_HTML
                    else self.files[self.ops[self.op] >> 4][2], None)
            self.left = p.size
        if op == _DO_FILE:
            n = self._base64(buf)
        else:
            n = p.readinto(buf)
            self.session.enc.state[_S_QP] = 1 if self.cte == _CTE_QP else 0
        if not n:
            self._done()
        return n

    def _base64(self, buf):
        """Six whole base64 lines from the attachment into buf (468 bytes: a pool buffer
        holds 512 or more), or the last ones as it ends. A file or bytes fill raw in one
        read; an iterator's chunk may end short of it: the rest of raw is read then, through
        a view (the one allocation, once a chunk, and only for an iterator)."""
        n = self.part.readinto(self.raw)
        while n and n < _B64_RAW and n != self.left:  # short, and not its known end
            k = self.part.readinto(memoryview(self.raw)[n:])
            if not k:
                break
            n += k
        if self.left > 0:
            self.left -= n
        return _b64(self.raw, n, buf, 0) if n else 0
