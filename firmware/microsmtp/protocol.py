# microsmtp: one SMTP session as a sans-IO state machine (h11's idea). MIT licence.
# Session.run() is a generator: it yields small int requests (OP_*) and gets int results.
# It never touches a socket, a file or the clock: transport.py (or a test's scripted
# driver) does the I/O, so every driver runs exactly the same protocol code.
# Heap is the budget here (a board loads this into RAM): few functions, short strings,
# private consts that mpy-cross inlines.
from micropython import const

from . import auth, message
from .status import SMTPError

# Requests yielded to the driver. Private consts, inlined by mpy-cross: every name a module
# keeps costs heap on a board. transport.py and secure.py hold the same values
# (tests/test_units.py checks that they match).
_OP_CONNECT = const(1)  # resolve host, connect (connect timeout); sets local_literal -> 0 or ERR_*
_OP_SEND = const(2)  # write tx[0:tx_n] within io_ms -> 0 or ERR_*
_OP_WAIT = const(3)  # start a new reply deadline of wait_ms, then do _OP_RECV
_OP_RECV = const(4)  # readinto rx[rx_end:512] before the deadline -> n, 0 at EOF, or ERR_*
_OP_STARTTLS = const(5)  # wrap the connection in TLS now (RFC 3207) -> 0 or ERR_*

# Driver results below zero.
_ERR_TIMEOUT = const(-1)
_ERR_CLOSED = const(-2)  # reset, broken pipe, any other socket error mid-session
_ERR_RESOLVE = const(-3)
_ERR_CONNECT = const(-4)
_ERR_TLS = const(-5)  # the TLS handshake failed (os_error says why)
_ERR_CERT = const(-6)  # the server's certificate was rejected (os_error says why)

# TLS modes (the public TLS_* constants of __init__.py).
_TLS_STARTTLS = const(1)
_TLS_IMPLICIT = const(2)

# Status codes: the values of __init__.py's public names (tests/test_units.py checks).
_INVALID_SERVER_REPLY = const(0xA2)
_INTERNAL_ERROR = const(0xA3)
_GREET_REPLY_ERROR = const(0xA7)
_HELLO_REPLY_ERROR = const(0xA8)
_MAIL_REPLY_ERROR = const(0xA9)
_RCPT_REPLY_ERROR = const(0xAA)
_MESSAGE_REPLY_ERROR = const(0xAB)
_DATA_REPLY_ERROR = const(0xAC)
_AUTH_REPLY_ERROR = const(0xAD)
_SERVER_ERROR_REPLY = const(0xAE)
_OVERSIZE_SERVER_REPLY = const(0xB1)
_RESOLVE_ERROR = const(0xC0)
_CONNECT_ERROR = const(0xC1)
_TIMEOUT_ERROR = const(0xC2)
_CONNECTION_CLOSED = const(0xC3)
_DELIVERY_UNKNOWN = const(0xC4)
_MESSAGE_FORMAT_ERROR = const(0xC5)
_TLS_NOT_OFFERED = const(0xD0)
_TLS_REFUSED = const(0xD1)
_TLS_HANDSHAKE_ERROR = const(0xD2)
_TLS_CERT_ERROR = const(0xD3)
_TLS_INJECTION = const(0xD5)
_PLAINTEXT_AUTH_REFUSED = const(0xD6)

# Index in Session.timeouts (Client passes them in this order).
_T_CONNECT = const(0)
_T_GREETING = const(1)
_T_ENVELOPE = const(2)
_T_MESSAGE = const(3)
_T_QUIT = const(4)

_LINE_MAX = const(512)  # RFC 5321 §4.5.3.1.5: reply line <= 512 octets with CRLF
_MAX_LINES = const(40)  # more lines in one reply is a broken or hostile server
_TEXT_MAX = const(300)  # reply text kept for an error message
_AUTH_ROUNDS = const(3)  # 334 challenges answered before cancelling with "*"

# EHLO keywords in 10-byte slots; a keyword's bit in Session.caps is 1 << its slot.
_KEYWORDS = const(b"8BITMIME  PIPELININGSTARTTLS  SMTPUTF8  SIZE      AUTH      ")
_CAP_8BITMIME = const(1)
_CAP_STARTTLS = const(4)
_CAP_AUTH = const(32)
# auth.py's mechanism names in its order, in 10-byte slots: a listed one's MECH_* bit is
# 1 << its slot (tests/test_units.py checks the two agree).
_MECHS = const(b"LOGIN     CRAM-MD5  PLAIN     XOAUTH2   ")

_PRIORITY = {4: b"X-Priority: 1 (Highest)\r\nImportance: high\r\n",
             1: b"X-Priority: 5 (Lowest)\r\nImportance: low\r\n"}


class Session:
    def __init__(self, host, port, from_address, username, password, domain, auth_type,
                 timeouts, tls, ca, allow_plaintext_auth, token):
        self.host = host
        self.port = port
        self.from_address = from_address
        self.username = None if username is None else message.as_bytes(username)
        self.password = None if password is None else message.as_bytes(password)
        self.token = None if token is None else message.as_bytes(token)
        self.domain = domain
        self.auth_type = auth_type
        self.tls = tls
        self.ca = ca  # a list of DER certificates, or None with insecure=True (no checks)
        self.allow_plaintext_auth = allow_plaintext_auth
        self.timeouts = timeouts  # ms: connect, greeting, envelope, message, quit
        self.network = True  # transport.py: the network module may tell our address
        self.body = message.BodySource()
        self.enc = message.BodyEncoder()
        self.priority = self.scan = None
        # outbox.py's hook: batch(error or None) -> the next mail's load() arguments, or None.
        self.batch = None
        self.release()
        # Every attribute exists from here on: the instance dict is sized once, now, and
        # never grows (a 752-byte reallocation) in the middle of a send on a fragmented heap.
        self._start()

    def prepare(self, recipients, subject, body, limit, priority, scan, now, rx, tx, scratch):
        self.now = now
        self.rx = rx
        self.rx_mv = memoryview(rx)
        self.tx = tx
        self.tx_mv = memoryview(tx)
        self.scratch = scratch
        self.load(recipients, subject, body, priority, scan, limit)

    def load(self, recipients, subject, body, priority, scan=None, limit=None):
        """The mail to send (again for each mail of a batch, whose hook may set now and id
        for it first)."""
        self.recipients = recipients
        self.subject = subject
        self.body.reset(body, limit)
        self.priority = priority
        # (ascii, fits 7bit/8bit) for in-memory bodies and files (read once through
        # scratch, then rewound); None for a stream that can be read only once.
        self.scan = scan or self.body.scan(self.scratch)

    def release(self):
        """Drop every reference to the pool buffers and the body: the initial state again."""
        self.rx = self.rx_mv = self.tx = self.tx_mv = self.scratch = None
        # id: the Message-ID's unique part, None for a new one (the outbox keeps one per
        # mail). Named `id`: a name the firmware has interned already costs no heap, where a
        # new one can cost a whole qstr pool (README §6).
        self.recipients = self.subject = self.now = self.id = None
        self.local_literal = self.os_error = None
        self.body.reset(None, None)
        self.enc.start(0, b"", b"")

    # --- the session ---------------------------------------------------------------------

    def _start(self):
        self.rx_start = self.rx_end = self.tx_n = self.caps = self.mechs = self.wait_ms = 0
        self.code = 0
        self.after_dot = self.can_quit = False
        self.refused = self.text_b = None
        self.step = "CONNECT"
        self.io_ms = self.timeouts[_T_ENVELOPE]
        self.secure = False  # the connection is encrypted (implicit TLS or after STARTTLS)

    def run(self):
        self._start()
        try:
            yield from self._transaction()
        except SMTPError:
            # NetX: after a 4xx/5xx or a reply it cannot use, QUIT then report. Not after a
            # timeout or a broken connection (§4.5.3.2: close), nor after 421 (§3.8).
            if self.can_quit:
                yield from self._quit()
            raise
        yield from self._quit()
        if self.refused:
            raise self._partial()

    def _partial(self):
        """The error for a mail that went to some recipients but not all."""
        self.step = "RCPT"
        try:
            self._fail(_RCPT_REPLY_ERROR, "The message went to %d of %d recipients; refused" % (
                len(self.recipients) - len(self.refused), len(self.recipients)))
        except SMTPError as e:
            return e

    def _transaction(self):
        r = yield _OP_CONNECT  # with implicit TLS (port 465) the driver also does the handshake
        if r < 0:
            self._lost(r)
        self.secure = self.tls == _TLS_IMPLICIT
        self.can_quit = True
        self.step = "GREETING"
        yield from self._reply(self.timeouts[_T_GREETING])
        if self.code != 220:
            self._fail(_GREET_REPLY_ERROR, "No 220 greeting")

        yield from self._hello()
        if self.tls == _TLS_STARTTLS:
            yield from self._starttls()
        yield from self._auth()
        while True:
            result = None
            try:
                yield from self._envelope()
            except SMTPError as e:
                # In a batch (the outbox), a refused message does not end the session: RSET
                # (RFC 5321 §4.1.1.5) and on to the next. A lost connection or 421 does.
                if self.batch is None or not self.can_quit:
                    raise
                result = e
                self.after_dot = False
            if self.batch is None:
                return
            reset = result is not None  # the transaction failed: RSET before the next
            if result is None and self.refused:
                result = self._partial()
            self.refused = None
            # The hook first: a refusal is recorded even if the RSET below finds the
            # connection gone (a 5xx after "." and a hang-up must not block the queue).
            following = self.batch(result)  # the next message, or None
            if following is None:
                return
            if reset:
                yield from self._command("RSET", b"RSET")
                if self.code != 250:
                    self._fail(_INVALID_SERVER_REPLY, "RSET refused")
            self.load(*following)

    def _envelope(self):
        """One mail: MAIL, RCPT for each recipient, DATA, the message, its reply."""
        # RFC 6152: 8-bit only with 8BITMIME; lines over 998 octets only quoted-printable.
        has_8bit = self.caps & _CAP_8BITMIME
        if self.scan is None:  # a streamed body: no look ahead
            cte = message.CTE_8BIT if has_8bit else message.CTE_QP
        elif self.scan[1]:
            cte = message.CTE_7BIT if self.scan[0] else (
                message.CTE_8BIT if has_8bit else message.CTE_QP)
        else:
            cte = message.CTE_QP
        yield from self._command("MAIL", b"MAIL FROM:<", self.from_address,
                                 b"> BODY=8BITMIME" if cte == message.CTE_8BIT else b">")
        if self.code != 250:
            self._fail(_MAIL_REPLY_ERROR, "Sender %s refused" % self.from_address)

        refused = []
        for rcpt in self.recipients:
            yield from self._command("RCPT", b"RCPT TO:<", rcpt, b">")
            if self.code == 421:
                self._fail(_RCPT_REPLY_ERROR, "Server closing")
            if self.code != 250 and self.code != 251:  # 251: "will forward", accepted
                refused.append((rcpt, self.code, self._text()))
        self.refused = refused
        if len(refused) == len(self.recipients):
            # Every recipient refused: RSET, no DATA (RFC 5321 §4.1.1.5).
            yield from self._command("RSET", b"RSET")
            self.step = "RCPT"
            self._fail(_RCPT_REPLY_ERROR, "Every recipient refused")

        yield from self._command("DATA", b"DATA")
        if self.code != 354:
            self._fail(_DATA_REPLY_ERROR, "DATA refused")
        self.step = "MESSAGE"
        yield from self._message(cte)
        self.after_dot = True
        yield from self._reply(self.timeouts[_T_MESSAGE])
        if self.code != 250:
            self._fail(_MESSAGE_REPLY_ERROR, "Message not accepted")
        self.after_dot = False

    def _hello(self):
        # RFC 5321 §4.1.4: our domain, else our address literal.
        domain = self.domain or self.local_literal or "[127.0.0.1]"
        yield from self._command("EHLO", b"EHLO ", domain)
        if self.code == 500 or self.code == 502:
            # §3.2: a server that does not know EHLO gets HELO (NetX has no fallback).
            yield from self._command("HELO", b"HELO ", domain)
        if self.code != 250:
            self._fail(_HELLO_REPLY_ERROR, "%s refused" % self.step)

    def _starttls(self):
        """RFC 3207: required whenever asked for; §6: a STARTTLS stripped from EHLO by a
        man in the middle is an attack, so never go on in clear."""
        if not self.caps & _CAP_STARTTLS:
            self._fail(_TLS_NOT_OFFERED, "TLS is required but the server does not offer "
                       "STARTTLS; nothing else was sent (tls=TLS_NONE for a plaintext relay)")
        # _reply ends the session if the read with the 220 held more bytes (injection).
        yield from self._command("STARTTLS", b"STARTTLS")
        if self.code != 220:
            self._fail(_TLS_REFUSED, "STARTTLS refused; nothing else was sent")
        r = yield _OP_STARTTLS
        if r < 0:
            self._lost(r)
        # §4.2: forget everything learned in clear and ask again; never STARTTLS twice.
        self.secure = True
        self.caps = self.mechs = 0
        yield from self._hello()

    def _auth(self):
        tried = 0  # mechanisms refused with 534, "too weak" (RFC 4954 §6)
        while True:
            mech = auth.choose(self.auth_type, self.caps & _CAP_AUTH, self.mechs,
                               (self.username is not None and self.password is not None)
                               | (self.token is not None) << 1, tried)
            if mech == auth.AUTH_NONE:
                if tried:
                    self._fail(_AUTH_REPLY_ERROR, "Every AUTH mechanism was refused as too weak")
                return
            if not self.secure and not self.allow_plaintext_auth:
                self.step = "AUTH"
                self.code = 0
                self._fail(_PLAINTEXT_AUTH_REFUSED, "Not sending credentials over an unencrypted "
                           "connection: use TLS (tls=TLS_STARTTLS or TLS_IMPLICIT, with cadata),"
                           " or allow_plaintext_auth=True for a trusted LAN relay")
            yield from self._auth_with(mech)
            if self.code == 235:
                return
            if self.code != 534:  # 535: bad credentials, never retried; 454/432: temporary
                # A fixed sentence: the server's words in AUTH are never kept (_reply).
                self._fail(_AUTH_REPLY_ERROR, "%s login refused%s" % (
                    auth.name(mech).decode(), "" if self.code != 535 else
                    ": the token is expired or lacks the mail scope" if mech == auth.AUTH_XOAUTH2
                    else ": wrong username or password (some providers want an app password)"))
            tried |= 1 << (mech - 1)  # auth.py: MECH bit = 1 << (AUTH value - 1)

    def _auth_with(self, mech):
        user = self.username
        answer = None
        if mech == auth.AUTH_PLAIN:
            answer = auth.plain_response(user, self.password)
        elif mech == auth.AUTH_XOAUTH2:
            from . import secure

            answer = secure.xoauth2_response(user, self.token)
        name = b"AUTH " + auth.name(mech)
        # RFC 4954 §4: the initial response goes on the AUTH line when the line fits;
        # a longer one (a big token) waits for the server's 334.
        first = answer is not None and len(name) + len(answer) < _LINE_MAX - 3
        yield from self._command("AUTH", name, b" " if first else None, answer if first else None)
        rounds = 0
        while self.code == 334:
            rounds += 1
            reply = None
            if rounds <= _AUTH_ROUNDS:
                if mech == auth.AUTH_PLAIN:
                    reply = answer  # a bare 334 after the initial response: the same again
                elif mech == auth.AUTH_XOAUTH2:
                    if rounds == 1 and not first:
                        reply = answer
                    else:
                        # The token was refused: the 334 carries base64 JSON saying why (not
                        # kept: server text in AUTH never is); an empty line ends the
                        # exchange, and a 535 follows.
                        reply = b""
                else:
                    data = auth.decode(self.text_b)
                    if data is None:
                        pass
                    elif mech == auth.AUTH_LOGIN:
                        reply = auth.login_answer(data, user, self.password)
                    else:
                        from . import secure

                        reply = secure.cram_md5_answer(data, user, self.password)
            if reply is None:
                # An unknown or undecodable challenge, or a never-ending exchange: cancel
                # (RFC 4954 §4) and report.
                yield from self._command("AUTH", b"*")
                self.code = 0
                self._fail(_AUTH_REPLY_ERROR, "Unexpected %s challenge" % auth.name(mech).decode())
            yield from self._command("AUTH", reply)

    def _message(self, cte):
        self.io_ms = self.timeouts[_T_MESSAGE]
        self.tx_n = 0
        date = message.date_value(self.now)
        if date:
            yield from self._out(b"Date: ", date, b"\r\n")
        yield from self._out(b"From: ", self.from_address, b"\r\nTo: ")
        sep = b""
        for rcpt in self.recipients:
            # One address per line keeps every header line short (RFC 5322 §2.2.3 folding).
            yield from self._out(sep, rcpt, b"")
            sep = b",\r\n "
        if message.encoded_subject_needed(self.subject):
            # RFC 2047 encoded words, one per folded line; never a raw control character.
            sep = b"\r\nSubject: =?utf-8?B?"
            for word in message.subject_words(self.subject):
                yield from self._out(sep, word, b"?=")
                sep = b"\r\n =?utf-8?B?"
            yield from self._out(b"\r\n", b"", b"")
        else:
            yield from self._out(b"\r\nSubject: ", self.subject, b"\r\n")
        yield from self._out(b"Message-ID: ", message.message_id(self.from_address, self.id),
                             b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
                             b"charset=utf-8\r\nContent-Transfer-Encoding: ")
        yield from self._out(message.CTE_NAMES[cte], b"\r\n", _PRIORITY.get(self.priority, b""))
        yield from self._out(b"\r\n", b"", b"")

        enc = self.enc
        enc.start(cte, self.scratch, self.tx)
        enc.o = self.tx_n
        while True:
            n = self.body.readinto(self.scratch)
            if not n:
                break
            enc.chunk()
            # RFC 2045 §2.7-2.8: no NUL in 7bit or 8bit text. A body read only once cannot
            # be checked before DATA; files and in-memory bodies are (they go QP then).
            nul = cte != message.CTE_QP and self.scratch.find(b"\0", 0, n) >= 0
            while enc.i < n:
                if not nul:
                    enc.encode(n)
                if nul or enc.too_long:
                    self.can_quit = False  # mid-DATA: closing without "." discards the mail
                    self.code = 0  # the 354 before was the go-ahead, not a refusal
                    self._fail(_MESSAGE_FORMAT_ERROR, "The message was cut off, not delivered:"
                               " the streamed body has %s, which %s mail cannot carry; pass it "
                               "in memory or as a file, which are checked before MAIL" % (
                                   "a NUL (zero) byte" if nul else "a line over 998 bytes",
                                   message.CTE_NAMES[cte]))
                if enc.i < n:  # tx is full: send it
                    self.tx_n = enc.o
                    r = yield _OP_SEND
                    if r < 0:
                        self._lost(r)
                    enc.o = 0
        if enc.o > len(self.tx) - 5:
            self.tx_n = enc.o
            r = yield _OP_SEND
            if r < 0:
                self._lost(r)
            enc.o = 0
        self.tx_n = enc.finish(enc.o)
        r = yield _OP_SEND
        if r < 0:
            self._lost(r)
        self.io_ms = self.timeouts[_T_ENVELOPE]

    def _quit(self):
        self.can_quit = False
        try:
            # Any reply or none within quit_ms ends it (RFC 5321 §4.1.1.10); nothing to report.
            self.rx_start = self.rx_end = 0
            yield from self._command("QUIT", b"QUIT", None, None, self.timeouts[_T_QUIT])
        except SMTPError:
            pass

    # --- commands and replies ------------------------------------------------------------

    def _command(self, step, a, b=None, c=None, wait_ms=0):
        """Send one command line (one write: no Nagle stall) and read its whole reply."""
        self.step = step
        mv = self.tx_mv
        n = 0
        for part in (a, b, c):
            if part is not None:
                part = message.as_bytes(part)
                k = len(part)
                if n + k > _LINE_MAX - 2:
                    break
                mv[n:n + k] = part
                n += k
        else:
            mv[n:n + 2] = b"\r\n"
            self.tx_n = n + 2
            n = -1
        if n >= 0:
            # Over 512 bytes: only an AUTH response may be (RFC 4954 §4: up to 12288 octets,
            # e.g. an OAuth token); it goes out buffer by buffer.
            if step != "AUTH" or len(c or b or b"") > 12000:
                self.code = 0
                self._fail(_INTERNAL_ERROR, "Command over 512 bytes")
            self.tx_n = 0
            yield from self._out(a, b or b"", c or b"")
            yield from self._out(b"\r\n", b"", b"")
        r = yield _OP_SEND
        if r < 0:
            self._lost(r)
        yield from self._reply(wait_ms or self.timeouts[_T_ENVELOPE])

    def _out(self, a, b, c):
        """Append pieces of the message to tx, sending full buffers as it goes."""
        for piece in (a, b, c):
            piece = message.as_bytes(piece)
            i = 0
            n = len(piece)
            while i < n:
                room = len(self.tx) - self.tx_n
                if not room:
                    r = yield _OP_SEND
                    if r < 0:
                        self._lost(r)
                    self.tx_n = 0
                    room = len(self.tx)
                k = min(n - i, room)
                self.tx_mv[self.tx_n:self.tx_n + k] = piece[i:i + k]
                self.tx_n += k
                i += k

    def _reply(self, wait_ms):
        """Read one whole reply into code (and text_b: a 334's challenge, error text).

        Lines may arrive split over any number of reads (NetX regressions 5 and 6); a line
        is capped at 512 bytes and a reply at _MAX_LINES lines, so memory stays bounded."""
        rx = self.rx
        mv = self.rx_mv
        first = True
        code = lines = 0
        self.text_b = None
        while True:
            j = rx.find(b"\n", self.rx_start, self.rx_end)
            if j < 0:
                if self.rx_end >= _LINE_MAX:  # rx is full: the partial line to the front
                    k = self.rx_end - self.rx_start
                    if k >= _LINE_MAX:
                        self._bad(_OVERSIZE_SERVER_REPLY, "a line over 512 bytes")
                    for j in range(k):  # byte by byte: slices would be objects on the heap
                        rx[j] = rx[self.rx_start + j]
                    self.rx_start = 0
                    self.rx_end = k
                self.wait_ms = wait_ms
                r = yield _OP_WAIT if first else _OP_RECV
                first = False
                if r <= 0:
                    self._lost(r)
                self.rx_end += r
                continue
            ls = self.rx_start
            le = j
            self.rx_start = j + 1
            if le > ls and rx[le - 1] == 13:
                le -= 1
            # RFC 5321 §4.2: three digits, the first 2-5, then SP, "-" or the line end;
            # "222222220-" (NetX regression 8) is not 222.
            c = 0
            sep = rx[ls + 3] if le - ls > 3 else 32
            if le - ls >= 3 and 50 <= rx[ls] <= 53 and (sep == 32 or sep == 45):
                c = rx[ls] * 100 + rx[ls + 1] * 10 + rx[ls + 2] - 5328  # 5328: "000"
                if not 48 <= rx[ls + 1] <= 57 or not 48 <= rx[ls + 2] <= 57:
                    c = 0
            if not c:
                self._bad(_SERVER_ERROR_REPLY, "a malformed reply code", True)
            if code and c != code:
                self._bad(_INVALID_SERVER_REPLY, "mixed reply codes", True)
            code = c
            lines += 1
            if lines > _MAX_LINES:
                self._bad(_OVERSIZE_SERVER_REPLY, "over %d reply lines" % _MAX_LINES)
            ts = ls + 4 if le - ls > 3 else le  # the text after the code
            if c == 334:
                if self.text_b is None:  # the challenge
                    self.text_b = bytes(mv[ts:le])
            elif c >= 400 and self.step != "AUTH":
                # Kept for the error message, bounded. Never in AUTH: a server may echo
                # what the client sent there (RFC 4954 base64 is the password in clear).
                if self.text_b is None:
                    self.text_b = bytes(mv[ts:le])
                elif len(self.text_b) < _TEXT_MAX:
                    self.text_b = (self.text_b + b" " + bytes(mv[ts:le]))[:_TEXT_MAX]
            elif c == 250 and lines > 1 and self.step == "EHLO":
                # A keyword line (line 1 names the server), read in place in rx: here and
                # not in a helper, as a MicroPython call with this many locals takes its
                # frame from the heap, once per line. Words compare in any case (§2.4)
                # with the 10-byte slots of _KEYWORDS, then after AUTH of _MECHS.
                names = _KEYWORDS
                mechs = False
                while ts < le:
                    if rx[ts] == 32:  # NetX regression 6: "250-  AUTH LOGIN"
                        ts += 1
                        continue
                    j = ts  # the word is rx[ts:j]; "AUTH=PLAIN" is the pre-RFC form
                    while j < le and rx[j] != 32 and (mechs or rx[j] != 61):
                        j += 1
                    k = -1
                    if j - ts <= 10:
                        for p in range(0, len(names), 10):
                            m = 0
                            while m < 10:
                                r = rx[ts + m] if ts + m < j else 32
                                if 97 <= r <= 122:
                                    r -= 32
                                if r != names[p + m]:
                                    break
                                m += 1
                            else:
                                k = p // 10
                                break
                    if mechs:
                        if k >= 0:
                            self.mechs |= 1 << k  # auth.py's MECH_* bits
                    elif k == 5:  # AUTH: the mechanisms it names follow
                        self.caps |= _CAP_AUTH
                        names = _MECHS
                        mechs = True
                        if j < le and rx[j] == 61:
                            j += 1
                    else:
                        if k >= 0:
                            self.caps |= 1 << k
                        break  # the parameters of other keywords do not matter
                    ts = j
            if sep != 45:
                break
        self.code = code
        # After ".", a 250 means delivered whatever follows it; QUIT discards the rest.
        if self.rx_start < self.rx_end and self.step != "QUIT" and not self.after_dot:
            # No pipelining yet: bytes nobody asked for would be read as the next reply
            # (reply desynchronisation), so they end the session. After STARTTLS's 220 they
            # would pass for data sent over TLS (RFC 3207 §4: response injection).
            if self.step == "STARTTLS":
                self.can_quit = False
                self.code = 0
                self._fail(_TLS_INJECTION, "The server sent data after its 220 to STARTTLS "
                           "(response injection); the session was ended")
            self._bad(_INVALID_SERVER_REPLY, "data that answers nothing")

    # --- failures: one sentence each, naming the step and the server's words ---------------

    def _text(self):
        """The server's reply text for an error, printable ASCII; "" when it holds any
        8-byte piece of a credential as the client sends it (raw, base64, the PLAIN or
        XOAUTH2 string): a server that echoes must not put a secret into a log. (In AUTH
        no text is kept at all.) Made here, on the error path: a token is 1-2 KB."""
        t = self.text_b
        if not t:
            return ""
        secrets = []
        if self.token is not None:
            from . import secure

            secrets += [bytes(self.token), secure.xoauth2_response(self.username, self.token)]
        if self.username is not None and self.password is not None:
            secrets += [bytes(self.password), auth.b64(self.password),
                        auth.plain_response(self.username, self.password)]
        for secret in secrets:
            if 0 < len(secret) < 8 and t.find(secret) >= 0:
                return ""
        for i in range(len(t) - 7):
            piece = t[i:i + 8]
            for secret in secrets:
                if secret.find(piece) >= 0:
                    return ""
        out = bytearray(t)
        for i in range(len(out)):
            if not 32 <= out[i] <= 126:  # control or non-ASCII bytes shown as "?"
                out[i] = 63
        return out.decode()

    def _fail(self, status, what):
        code = self.code if self.step != "CONNECT" else 0
        if code == 421:  # §3.8: the server is going away; no QUIT, no RSET
            self.can_quit = False
        text = self._text() if code else ""
        sentence = "%s (%s)" % (what, self.step)
        refused = self.refused if status == _RCPT_REPLY_ERROR and self.refused else None
        if refused:  # per-recipient results
            sentence += ": " + "; ".join("%s %d %s" % r for r in refused)
            code = refused[0][1]
            text = refused[0][2]
        elif code:
            sentence += ": %d %s" % (code, text)
        e = SMTPError(status, sentence.rstrip() + ".", self.step, code or None, text)
        e.refused = refused
        raise e

    def _bad(self, status, what, framed=False):
        # A reply we cannot use. QUIT still makes sense if the lines were intact (NetX
        # regression 8); after an over-long line or unsolicited data the framing is lost.
        self.can_quit = framed
        self.code = 0
        self._fail(status, "Bad reply from the server, " + what)

    def _lost(self, r):
        """The driver reported a network failure (r < 0, or 0: closed)."""
        self.can_quit = False
        self.code = 0
        if self.after_dot:
            self._fail(_DELIVERY_UNKNOWN, "Connection lost after the message was sent, before "
                       "the server confirmed it: it may or may not have been delivered")
        if r == _ERR_RESOLVE:
            self._fail(_RESOLVE_ERROR, "Cannot resolve %s (%s); check the name and the "
                       "network" % (self.host, self.os_error))
        if r == _ERR_CONNECT:
            self._fail(_CONNECT_ERROR, "Cannot connect to %s port %d (%s); check the server, "
                       "the port and the network" % (self.host, self.port, self.os_error))
        if r == _ERR_TIMEOUT:
            self._fail(_TIMEOUT_ERROR, "No answer from the server within %d ms" % self.wait_ms)
        if r == _ERR_CERT or r == _ERR_TLS:
            # The handshake finishes inside the next read or write (transport.py, under
            # that phase's deadline), but it belongs to the connection or the STARTTLS.
            self.step = "CONNECT" if self.tls == _TLS_IMPLICIT else "STARTTLS"
        if r == _ERR_CERT:
            self._fail(_TLS_CERT_ERROR, "The certificate of %s was rejected: %s; check cadata "
                       "and the server name" % (self.host, self.os_error))
        if r == _ERR_TLS:
            self._fail(_TLS_HANDSHAKE_ERROR, "TLS handshake with %s failed (%s); is TLS on "
                       "this port (465: implicit, 587: STARTTLS)?" % (self.host, self.os_error))
        self._fail(_CONNECTION_CLOSED, "The server closed the connection" + (
            " (%s)" % self.os_error if self.os_error else ""))
