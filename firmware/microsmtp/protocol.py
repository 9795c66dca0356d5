# microsmtp: the SMTP session as an explicit state machine (h11's idea). MIT licence.
# One generator, Session.engine(), made once per client and resumed for its whole life,
# moves the bytes: it asks its driver for I/O with small int requests and gets int results.
# Two small methods decide everything else: _next() says what comes next in the current
# phase (and writes the command into tx), _handle() reads the reply's code. Nothing here
# touches a socket, a file or the clock, and after a client's first send nothing here
# allocates per command, per reply, per line or per buffer: on MicroPython a generator
# made per step, a bytes object per reply line, or a call to a function with more than 11
# words of locals and stack (py/objfun.c, VM_MAX_STATE_ON_STACK) each take heap.
from micropython import const

from . import message
from .status import SMTPError

# --- the driver seam ----------------------------------------------------------------------
# transport.py (sockets), tests/scripted.py (transcripts) and an asyncio driver run the
# engine the same way: op = s.engine.send(result) until it yields OP_MAIL or OP_CLOSE (with
# trace=, s.engine is trace.py's Tracer in front of the generator: only send() is used). The
# I/O record is the Session's attributes: tx, tx_n, rx, rx_start, rx_end, wait_ms, io_ms,
# os_error, local_literal (and tls, host, port, ca, timeouts for connecting; with TLS,
# secure: the secure module, whose wrap() wraps the socket).
#
# | request        | what the driver does                                    | result      |
# |----------------|---------------------------------------------------------|-------------|
# | OP_CONNECT 1   | resolve host, connect within the connect timeout, and   | 0 or ERR_*  |
# |                | TCP_NODELAY;                                            |             |
# |                | tls == TLS_IMPLICIT: wrap in TLS (handshake may finish  |             |
# |                | in the next read); local_literal "[ip]" when domain is  |             |
# |                | None                                                    |             |
# | OP_SEND 2      | write tx[0:tx_n] whole. A write deadline of io_ms       | 0 or ERR_*  |
# |                | starts at the first OP_SEND after any other request;    |             |
# |                | the OP_SENDs right after it share it (a whole message)  |             |
# | OP_WAIT 3      | start a reply deadline of wait_ms, then as OP_RECV      | as OP_RECV  |
# | OP_RECV 4      | one read into rx[rx_end:512] before the deadline        | n > 0, 0 at |
# |                |                                                         | EOF, ERR_*  |
# | OP_STARTTLS 5  | wrap the connection in TLS (RFC 3207)                   | 0 or ERR_*  |
# | OP_MAIL 6      | a mail is over: its error in `error` (None: sent).      | 1 next mail |
# |                | Return to the caller; resume with 1 once the next mail  | loaded, 0   |
# |                | is loaded, or 0 to end the session                      | to end      |
# | OP_CLOSE 7     | close the connection (the session is over; `error`     | anything    |
# |                | says why, None after QUIT). The engine waits here for  |             |
# |                | the next session: resume it when its first mail is in   |             |
# ERR_*: -1 timeout, -2 closed or reset, -3 no address, -4 no connection, -5 TLS handshake,
# -6 certificate; os_error then says why in words (an errno name, mbedTLS's reason). A read
# that meets a reset after bytes came gives those bytes (a 550 then a hang-up is a refusal);
# the reset is the next read's answer. The driver allocates what its platform makes (the
# resolver's answer, a socket, a poll entry, TLS) and nothing per read or write.
_OP_CONNECT = const(1)
_OP_SEND = const(2)
_OP_WAIT = const(3)
_OP_RECV = const(4)
_OP_STARTTLS = const(5)
_OP_MAIL = const(6)
_OP_CLOSE = const(7)

_ERR_TIMEOUT = const(-1)
_ERR_RESOLVE = const(-3)
_ERR_CONNECT = const(-4)
_ERR_TLS = const(-5)
_ERR_CERT = const(-6)

# TLS modes (the public TLS_* constants of __init__.py).
_TLS_STARTTLS = const(1)
_TLS_IMPLICIT = const(2)

# Status codes: the values of __init__.py's public names (tests/test_units.py checks).
_OVERSIZE_MAIL_DATA = const(0xA1)
_INVALID_SERVER_REPLY = const(0xA2)
_GREET_REPLY_ERROR = const(0xA7)
_HELLO_REPLY_ERROR = const(0xA8)
_MAIL_REPLY_ERROR = const(0xA9)
_RCPT_REPLY_ERROR = const(0xAA)
_MESSAGE_REPLY_ERROR = const(0xAB)
_DATA_REPLY_ERROR = const(0xAC)
_SERVER_ERROR_REPLY = const(0xAE)
_OVERSIZE_SERVER_REPLY = const(0xB1)
_RESOLVE_ERROR = const(0xC0)
_CONNECT_ERROR = const(0xC1)
_TIMEOUT_ERROR = const(0xC2)
_CONNECTION_CLOSED = const(0xC3)
_DELIVERY_UNKNOWN = const(0xC4)
_MESSAGE_FORMAT_ERROR = const(0xC5)

# Index in Session.timeouts (Client passes them in this order).
_T_GREETING = const(1)
_T_ENVELOPE = const(2)
_T_MESSAGE = const(3)
_T_QUIT = const(4)

_LINE_MAX = const(512)  # RFC 5321 §4.5.3.1.4-5: command and reply lines, CRLF included
_MAX_LINES = const(40)  # more lines in one reply is a broken or hostile server
_TEXT_MAX = const(300)  # reply text kept for an error message
_HEAD_ROOM = const(600)  # a header block's size at most, for SIZE= (RFC 1870 §4: an estimate)
_END = const(5)  # "\r\n.\r\n": what BodyEncoder.finish() may add after the body
_SCAN_8BIT = const(1024)  # message.py's: what BodySource.scan() found (-1: a stream)
_SCAN_UNFIT = const(2048)
_H_END = const(17)  # message.py: Head's parts are done
_PRIORITY_NORMAL = const(2)  # message.py's
_CTE_7BIT = const(0)  # message.py's transfer encodings (Head.cte)
_CTE_8BIT = const(1)
_CTE_QP = const(2)

# EHLO keywords in 10-byte slots; a keyword's bit in Session.caps is 1 << its slot.
_KEYWORDS = const(b"8BITMIME  PIPELININGSTARTTLS  SIZE      AUTH      SMTPUTF8  ")
_CAP_8BITMIME = const(1)
_CAP_PIPELINING = const(2)
_CAP_STARTTLS = const(4)  # (secure.py reads it)
_CAP_SIZE = const(8)
_CAP_AUTH = const(16)
_CAP_SMTPUTF8 = const(32)  # RFC 6531: UTF-8 addresses (and headers, RFC 6532)
_SLOT_SIZE = const(3)
_SLOT_AUTH = const(4)
# auth.py's mechanism names in its order, in 10-byte slots: a listed one's MECH_* bit is
# 1 << its slot (tests/test_units.py checks the two agree).
_MECHS = const(b"LOGIN     CRAM-MD5  PLAIN     XOAUTH2   ")

# The phases of a session: what the reply being read answers (docs/ENGINE.md draws them).
_P_GREETING = const(1)
_P_EHLO = const(2)
_P_HELO = const(3)
_P_STARTTLS = const(4)
_P_TLS = const(5)  # the 220 came: wrap
_P_AUTH = const(6)  # choose a mechanism and send AUTH
_P_AUTH_REPLY = const(7)
_P_AUTH_ANSWER = const(8)  # send the answer to a 334 (auth.py's AUTH phases: 6-9)
_P_AUTH_CANCEL = const(9)  # send "*"
_P_ENVELOPE = const(10)  # MAIL, RCPT..., DATA: written and answered one by one, or pipelined
_P_BODY = const(11)  # the 354 came: headers, body, "."
_P_DOT = const(12)  # the reply after "."
_P_LONE_DOT = const(13)  # RFC 2920 §3.1: every RCPT refused yet DATA said 354
_P_MAIL_DONE = const(14)  # the mail's result is known: hand it over
_P_RSET = const(15)
_P_QUIT = const(16)

# Session.flags: what this session has done and learned (one int, not six attributes:
# every attribute name is a string interned in a board's heap).
_F_CAN_QUIT = const(1)  # the lines are intact and the server still there: QUIT makes sense
_F_SECURE = const(2)  # the connection is TLS (implicit, or after STARTTLS)
_F_AFTER_DOT = const(4)  # "." went: a loss now leaves the delivery unknown
_F_QUIT_SENT = const(8)  # QUIT travelled with the "." (PIPELINING)
_F_RSET = const(16)  # a failed transaction is left open: RSET before the next mail
_F_BROKEN = const(32)  # a reply broke the protocol: no mail goes on this session
_F_SINGLE = const(64)  # Client.send: one mail, QUIT may travel with its "." (the caller's)
_F_UTF8 = const(128)  # the mail has an address with UTF-8: SMTPUTF8 (RFC 6531), utf8.py

# What _next() asks the engine to do.
_N_SEND = const(1)  # send tx, then read a reply
_N_READ = const(2)  # read a reply (the greeting, one of a pipelined group)
_N_TLS = const(3)
_N_BODY = const(4)
_N_LONG = const(5)  # an AUTH answer longer than a buffer (a big OAuth token)
_N_MAIL = const(6)


class Session:
    def __init__(self, host, port, from_address, username, password, domain, auth_type,
                 timeouts, tls, ca, allow_plaintext_auth, token, trace):
        self.host = host
        self.port = port
        self.domain = domain
        self.tls = tls
        self.ca = ca  # a list of DER certificates, or [] with insecure=True (no checks)
        self.timeouts = timeouts  # ms: connect, greeting, envelope, message, quit
        # auth.Login, the credentials and the AUTH exchange's state, made at the first
        # connection (auth.py loads then); a tuple of them till then; None without any.
        self.auth = None if username is None else (
            username, password, token, auth_type, allow_plaintext_auth)
        self.body = message.BodySource()
        self.enc = message.BodyEncoder()
        self.head = message.Head(from_address)
        self.rx = self.tx = self.scratch = None
        self.local_literal = self.os_error = None
        self.rx_start = self.rx_end = self.tx_n = self.wait_ms = self.io_ms = 0
        self.refused = self.error = None
        self.flags = 0
        self.secure = None  # secure.py, for TLS: the engine loads it at the first connection
        self.trace = trace  # Client's trace=: a function, or None (then trace.py never loads)
        self._reset()
        # Every attribute exists from here on: the instance dict is sized once, now, and
        # never grows (a reallocation) in the middle of a send on a fragmented heap.
        self.engine = None
        self.restart()

    def restart(self):
        """A new engine, waiting for a session: after an exception escaped the old one
        (MemoryError, KeyboardInterrupt) it cannot be resumed."""
        self.engine = self._engine()
        next(self.engine)  # to its first yield: OP_CLOSE, waiting for a session
        if self.trace is not None:
            # trace.py's Tracer takes the engine's place before the driver: it sees each
            # request and result, and the engine itself does not change (nothing to pay
            # per send without a trace).
            from . import trace

            self.engine = trace.wrap(self)

    # --- what the caller sets: buffers, then each mail -----------------------------------

    def buffers(self, rx, tx, scratch):
        """The pool buffers of a session (None, None, None: give them back)."""
        self.rx = rx
        self.tx = tx
        self.scratch = scratch

    def load(self, recipients, subject, body):
        """The next mail: checked arguments (message.check_mail), its body (str, bytes, a
        file, an iterator). Only kept here, nothing made, so nothing can fail yet: after
        it, head.priority must be set, and head.time (seconds for its Date) and head.id
        (its Message-ID's unique part) may be, and body.left (NetX's body_length); start()
        makes the rest. (The priority apart: Client.send's frame, with its **rich, stays
        within the 11 words the C stack holds only with a call of three arguments here.)"""
        h = self.head
        h.recipients = recipients
        h.subject = subject
        h.priority = _PRIORITY_NORMAL
        h.id = h.time = None
        self.body.body = body
        self.body.left = -1

    def start(self, gmtime):
        """The loaded mail made ready once the buffers are in: its body opened and looked at
        (a file read once through scratch and rewound, so a long line or a NUL is known
        before MAIL); its Date (gmtime: time.gmtime, the Client's clock), Message-ID and
        subject's encoded words. Nothing has gone on the wire yet."""
        src = self.body
        src.reset(src.body, src.left)
        src.scanned = src.scan(self.scratch)
        self.refused = self.error = None
        self.flags = self.flags & ~_F_UTF8 | self.head.start(gmtime)  # _F_UTF8 or 0

    def release(self):
        """Drop every reference to the mail and the buffers: the initial state again."""
        self.refused = self.error = None
        self.body.reset(None, None)
        self.enc.start(0, b"", b"")
        self.head.clear()
        self.buffers(None, None, None)

    def _reset(self):
        """A new connection: nothing learned yet."""
        self.rx_start = self.rx_end = self.tx_n = 0
        self.code = self.caps = self.max_size = 0
        self.phase = self.cmd = self.got = self.queued = 0
        a = self.auth
        if a is not None and not isinstance(a, tuple):
            a.tried = a.mechs = 0
        self.flags &= _F_SINGLE | _F_UTF8  # _F_*: what this session has done and learned
        self.text = self.failed = None
        self.step = "CONNECT"
        self.wait_ms = self.io_ms = self.timeouts[_T_ENVELOPE]

    # --- the engine ----------------------------------------------------------------------

    def _engine(self):
        while True:
            yield _OP_CLOSE  # a session is over, or none began yet: resumed to start one
            a = self.auth
            if isinstance(a, tuple):  # credentials, and a first connection: AUTH loads
                from . import auth

                self.auth = auth.Login(a[0], a[1], a[2], a[3], a[4])
            if self.tls and self.secure is None:  # TLS: secure.py's part of the session
                from . import secure

                self.secure = secure
            self._reset()
            try:
                r = yield _OP_CONNECT  # with implicit TLS the driver also wraps
                if r < 0:
                    raise self._lost(r)
                self.flags |= _F_CAN_QUIT | (_F_SECURE if self.tls == _TLS_IMPLICIT else 0)
                self.phase = _P_GREETING
            except SMTPError as e:
                self.error = e
                continue
            while self.phase:
                try:
                    n = self._next()
                    if n == _N_MAIL:
                        more = yield _OP_MAIL  # 1: the next mail is loaded; 0: the end
                        self.error = self.failed = None
                        self.cmd = self.got = self.queued = 0
                        self.phase = (_P_RSET if self.flags & _F_RSET else _P_ENVELOPE) if more \
                            else _P_QUIT if self.flags & _F_CAN_QUIT else 0
                        continue
                    if n == _N_TLS:  # secure.py set the session up for EHLO over TLS
                        r = yield _OP_STARTTLS
                        if r < 0:
                            raise self._lost(r)
                        continue
                    if n == _N_BODY:
                        self.io_ms = self.timeouts[_T_MESSAGE]
                        head = self.head  # message.py builds the header block
                        self.tx_n = head.fill(self.tx, 0)
                        while head.index < _H_END:  # a header block over a buffer
                            r = yield _OP_SEND
                            if r < 0:
                                raise self._lost(r)
                            self.tx_n = head.fill(self.tx, 0)
                        enc = self.enc
                        enc.start(self.head.cte, self.scratch, self.tx)
                        enc.pos = self.tx_n
                        while True:
                            k = self.body.readinto(self.scratch)
                            if not k:
                                break
                            enc.chunk()
                            # RFC 2045 §2.7-2.8: no NUL in 7bit or 8bit text. A body read
                            # only once cannot be checked before DATA; a file and a body in
                            # memory are (they go quoted-printable then).
                            if self.head.cte != _CTE_QP and \
                                    self.scratch.find(b"\0", 0, k) >= 0:
                                raise self._cut()
                            while enc.index < k:
                                enc.encode(k)
                                if enc.too_long:
                                    raise self._cut()
                                if enc.index < k:  # tx is full: send it
                                    self.tx_n = enc.pos
                                    r = yield _OP_SEND
                                    if r < 0:
                                        raise self._lost(r)
                                    enc.pos = 0
                        if enc.pos > len(self.tx) - _END:  # no room for "\r\n.\r\n" too
                            self.tx_n = enc.pos
                            r = yield _OP_SEND
                            if r < 0:
                                raise self._lost(r)
                            enc.pos = 0
                        self.tx_n = enc.finish(enc.pos)
                        # RFC 2920: QUIT may end a pipelined group; with one mail it travels
                        # with the "." (one write, one round trip less).
                        if self.flags & _F_SINGLE and self.caps & _CAP_PIPELINING and \
                                self.tx_n + 6 <= len(self.tx):
                            self.tx[self.tx_n:self.tx_n + 6] = b"QUIT\r\n"
                            self.tx_n += 6
                            self.flags |= _F_QUIT_SENT
                        self.io_ms = self.timeouts[_T_ENVELOPE]
                        # The reply to "." may take the message timeout (NetX's
                        # message_timeout: a server scans the mail before it answers).
                        self.wait_ms = self.timeouts[_T_MESSAGE]
                        self.flags |= _F_AFTER_DOT  # a loss from here on: maybe delivered
                        self.phase = _P_DOT
                    elif n == _N_LONG:  # an AUTH answer over a line: auth.py's pieces
                        while self.auth.fill(self):
                            r = yield _OP_SEND
                            if r < 0:
                                raise self._lost(r)
                    if n != _N_READ:
                        r = yield _OP_SEND
                        if r < 0:
                            raise self._lost(r)
                        self.tx_n = 0

                    # One whole reply into code (and text: a 334's challenge, error text).
                    # Lines may come split over any number of reads (docs/NETX.md,
                    # regressions 5, 6); a line is at most 512 bytes and a reply 40 lines:
                    # memory is bounded.
                    rx = self.rx
                    first = True
                    code = lines = 0
                    self.text = None
                    if self.rx_start == self.rx_end:
                        self.rx_start = self.rx_end = 0
                    while True:
                        j = rx.find(b"\n", self.rx_start, self.rx_end)
                        if j < 0:
                            if self.rx_end >= _LINE_MAX:  # rx is full: the partial line first
                                k = self.rx_end - self.rx_start
                                if k >= _LINE_MAX:
                                    raise self._bad(_OVERSIZE_SERVER_REPLY,
                                                    "a line over 512 bytes")
                                for j in range(k):  # byte by byte: a slice would be an object
                                    rx[j] = rx[self.rx_start + j]
                                self.rx_start = 0
                                self.rx_end = k
                            r = yield _OP_WAIT if first else _OP_RECV
                            first = False
                            if r <= 0:
                                raise self._lost(r)
                            self.rx_end += r
                            continue
                        ls = self.rx_start
                        le = j
                        self.rx_start = j + 1
                        if le > ls and rx[le - 1] == 13:
                            le -= 1
                        # RFC 5321 §4.2: three digits, the first 2-5, then SP, "-" or the end;
                        # "222222220-" (docs/NETX.md, regression 8) is not 222.
                        c = 0
                        sep = rx[ls + 3] if le - ls > 3 else 32
                        if le - ls >= 3 and 50 <= rx[ls] <= 53 and (sep == 32 or sep == 45):
                            c = rx[ls] * 100 + rx[ls + 1] * 10 + rx[ls + 2] - 5328  # "000"
                            if not 48 <= rx[ls + 1] <= 57 or not 48 <= rx[ls + 2] <= 57:
                                c = 0
                        if not c:
                            raise self._bad(_SERVER_ERROR_REPLY, "a malformed reply code", True)
                        if code and c != code:
                            raise self._bad(_INVALID_SERVER_REPLY, "mixed reply codes", True)
                        code = c
                        lines += 1
                        if lines > _MAX_LINES:
                            raise self._bad(_OVERSIZE_SERVER_REPLY,
                                            "over %d reply lines" % _MAX_LINES)
                        ls = ls + 4 if le - ls > 3 else le  # the text after the code
                        if c == 334:
                            if self.text is None:  # the challenge
                                self.text = bytes(rx[ls:le])
                        elif c >= 400:
                            # Kept for the error message, bounded. In AUTH only its RFC 3463
                            # code leaves _text: a server may echo what the client sent
                            # there (RFC 4954's base64 is the password in clear).
                            t = bytes(rx[ls:le])
                            if self.text is None:
                                self.text = t
                            elif len(self.text) < _TEXT_MAX:
                                self.text = (self.text + b" " + t)[:_TEXT_MAX]
                        elif c == 250 and lines > 1 and self.phase == _P_EHLO:
                            # A keyword line (line 1 names the server), read in place here:
                            # a helper would take its frame from the heap once a line.
                            # Words compare in any case (§2.4) with the 10-byte slots of
                            # _KEYWORDS, then after AUTH of _MECHS; SIZE's number follows it.
                            names = _KEYWORDS
                            word = 0  # 1: AUTH's mechanisms follow, 2: SIZE's number
                            while ls < le:
                                if rx[ls] == 32:  # docs/NETX.md, regression 6: "250-  AUTH LOGIN"
                                    ls += 1
                                    continue
                                j = ls  # the word is rx[ls:j]; "AUTH=PLAIN": pre-RFC form
                                while j < le and rx[j] != 32 and (word or rx[j] != 61):
                                    j += 1
                                if word == 2:  # RFC 1870: SIZE 10240000 (0: no limit)
                                    self.max_size = 0
                                    for k in range(ls, j):
                                        if not 48 <= rx[k] <= 57 or self.max_size > 99999999:
                                            self.max_size = 0
                                            break
                                        self.max_size = self.max_size * 10 + rx[k] - 48
                                    break
                                k = -1
                                if j - ls <= 10:
                                    for p in range(0, len(names), 10):
                                        m = 0
                                        while m < 10:
                                            r = rx[ls + m] if ls + m < j else 32
                                            if 97 <= r <= 122:
                                                r -= 32
                                            if r != names[p + m]:
                                                break
                                            m += 1
                                        else:
                                            k = p // 10
                                            break
                                if word:
                                    if k >= 0 and self.auth is not None:
                                        self.auth.mechs |= 1 << k  # auth.py's _MECH_* bits
                                elif k == _SLOT_AUTH:  # the mechanisms it names follow
                                    self.caps |= _CAP_AUTH
                                    names = _MECHS
                                    word = 1
                                    if j < le and rx[j] == 61:
                                        j += 1
                                else:
                                    if k < 0:
                                        break  # a keyword of no use here
                                    self.caps |= 1 << k
                                    if k != _SLOT_SIZE:
                                        break
                                    word = 2
                                ls = j
                        if sep != 45:
                            break
                    self.code = code
                    # Bytes after a whole reply. Pipelined replies may follow; after "." the
                    # 250 counts (QUIT lets the rest go). Otherwise they answer nothing and
                    # would be read as the next reply (desynchronisation), so they end the
                    # session (after STARTTLS's 220: secure.py, response injection).
                    ph = self.phase
                    if self.rx_start < self.rx_end and ph != _P_QUIT and ph != _P_DOT and \
                            ph != _P_STARTTLS and (ph != _P_ENVELOPE or
                                                   self.got + 1 >= self.queued):
                        raise self._bad(_INVALID_SERVER_REPLY, "data that answers nothing")
                    self._handle()
                except SMTPError as e:
                    self._failed(e)

    # --- the state machine: what comes next, and what a reply means --------------------

    def _next(self):
        """What the engine does next in this phase; a command goes into tx."""
        ph = self.phase
        if ph == _P_GREETING:
            self.step = "GREETING"
            self.wait_ms = self.timeouts[_T_GREETING]
            return _N_READ
        self.wait_ms = self.timeouts[_T_ENVELOPE]
        if ph == _P_EHLO or ph == _P_HELO:
            # RFC 5321 §4.1.4: our domain, else our address literal.
            self.line("EHLO" if ph == _P_EHLO else "HELO",
                       b"EHLO " if ph == _P_EHLO else b"HELO ",
                       self.domain or self.local_literal or "[127.0.0.1]", b"")
        elif ph == _P_STARTTLS or ph == _P_TLS:
            return self.secure.start(self)
        elif _P_AUTH <= ph <= _P_AUTH_CANCEL:
            return self.auth.next(self)  # auth.py: loaded with the credentials
        elif ph == _P_ENVELOPE:
            return self._envelope()
        elif ph == _P_BODY:
            self.step = "MESSAGE"
            return _N_BODY
        elif ph == _P_DOT:
            self.wait_ms = self.timeouts[_T_MESSAGE]
            return _N_READ
        elif ph == _P_LONE_DOT:
            self.wait_ms = self.timeouts[_T_MESSAGE]
            self.line("DATA", b".", b"", b"")
        elif ph == _P_MAIL_DONE:
            return _N_MAIL
        elif ph == _P_RSET:
            self.line("RSET", b"RSET", b"", b"")
        elif ph == _P_QUIT:
            # Any reply or none within quit_ms ends it (RFC 5321 §4.1.1.10).
            self.wait_ms = self.timeouts[_T_QUIT]
            self.step = "QUIT"
            if self.flags & _F_QUIT_SENT:  # it went with the "."
                return _N_READ
            self.rx_start = self.rx_end = 0  # what came unasked before QUIT: let go
            self.tx_n = 0
            self.line("QUIT", b"QUIT", b"", b"")
        return _N_SEND

    def _handle(self):
        """What the reply in code means for this phase: the next phase, or an error."""
        ph = self.phase
        c = self.code
        if ph == _P_GREETING:
            if c != 220:
                raise self.refusal(_GREET_REPLY_ERROR, "No 220 greeting")
            self.phase = _P_EHLO
        elif ph == _P_EHLO and (c == 500 or c == 502):
            self.phase = _P_HELO  # §3.2: HELO for a server that does not know EHLO
        elif ph == _P_EHLO or ph == _P_HELO:
            if c != 250:
                raise self.refusal(_HELLO_REPLY_ERROR, "%s refused" % self.step)
            # Without credentials there is nothing to authenticate with (documented).
            self.phase = _P_ENVELOPE if self.auth is None else _P_AUTH
            if self.tls == _TLS_STARTTLS and not self.flags & _F_SECURE:
                self.secure.reply(self)  # STARTTLS next, or TLS_NOT_OFFERED (RFC 3207 §6)
        elif ph == _P_STARTTLS:
            self.secure.reply(self)
        elif ph == _P_AUTH_REPLY or ph == _P_AUTH_CANCEL:
            self.auth.reply(self)
        elif ph == _P_ENVELOPE:
            self._envelope_reply()
        elif ph == _P_DOT:
            self.flags &= ~_F_AFTER_DOT
            if c != 250:  # (552 or X.3.4: too big, see refusal())
                raise self.refusal(_OVERSIZE_MAIL_DATA if c == 552 else _MESSAGE_REPLY_ERROR,
                                  "Message not accepted")
            self.phase = _P_MAIL_DONE
            if self.refused:  # it went to some recipients, not all
                self.step = "RCPT"
                self.code = 0
                raise self.refusal(_RCPT_REPLY_ERROR, "The message went to %d of %d "
                                   "recipients; refused" % (
                                       len(self.head.recipients) - len(self.refused),
                                       len(self.head.recipients)))
        elif ph == _P_LONE_DOT:
            raise self._held()
        elif ph == _P_RSET:
            if c != 250:
                raise self.refusal(_INVALID_SERVER_REPLY, "RSET refused")
            self.flags &= ~_F_RSET
            self.phase = _P_ENVELOPE if self.failed is None else _P_MAIL_DONE
            if self.failed is not None:
                raise self._held()
        elif ph == _P_QUIT:
            self.phase = 0

    def _failed(self, e):
        """An SMTPError in a session: the mail's (the session goes on, RSET first) or the
        session's (QUIT while the lines are intact, as NetX does; else just close, §3.8 and
        §4.5.3.2)."""
        ph = self.phase
        if ph == _P_QUIT:  # QUIT got no reply: nothing to report
            self.phase = 0
            return
        self.flags &= ~_F_AFTER_DOT
        self.tx_n = 0
        if not self.flags & _F_CAN_QUIT:
            self.error = e
            self.phase = 0
            return
        if ph == _P_ENVELOPE and self.got < self.queued and not self.flags & _F_BROKEN:
            # RFC 2920 §3.1: the rest of a pipelined group answers all the same; hear it
            # out before reporting (and before RSET).
            if self.failed is None:
                self.failed = e
            return
        self.error = e
        s = e.step
        if not self.flags & _F_BROKEN and (
                s == "MAIL" or s == "RCPT" or s == "DATA" or s == "MESSAGE"):
            # RFC 5321 §4.1.1.5: a transaction left open is reset before the next mail. Not
            # one closed already: by "."'s reply, by RSET, or reported with _P_MAIL_DONE set
            # (_handle: after the RSET's 250, or a 250 to "." with some recipients refused).
            if self.cmd > 0 and ph != _P_DOT and ph != _P_RSET and ph != _P_MAIL_DONE:
                self.flags |= _F_RSET
            self.phase = _P_MAIL_DONE
        else:
            self.phase = _P_QUIT

    def _held(self):
        """The error kept while a pipelined group was heard out (or before RSET)."""
        e = self.failed
        self.failed = None
        if e is None:  # RFC 2920 §3.1: every RCPT refused, DATA said 354, "." ended it
            self.step = "RCPT"
            self.code = 0
            size = True  # RFC 1870 §6: 552 to every RCPT: the message is too big for them
            for r in self.refused:
                size = size and r[1] == 552
            e = self.refusal(_OVERSIZE_MAIL_DATA if size else _RCPT_REPLY_ERROR,
                             "Every recipient refused")
        return e

    # --- one mail: MAIL, RCPT, DATA (RFC 5321 §3.3; RFC 2920 pipelining) -------------------

    def _envelope(self):
        """Write the next commands of the envelope: one at a time, or with PIPELINING all
        that fit in tx (RFC 2920 §3.1); or read the next reply of the group. (MAIL's part
        is a method of its own: with its locals too, this call's frame would pass 11 words
        and come from the heap, once a reply.)"""
        n = len(self.head.recipients)
        cmd = self.cmd
        while cmd <= n + 1 and (cmd == self.got or self.caps & _CAP_PIPELINING):
            if cmd == 0:
                self._mail_from()
            elif cmd <= n:
                rcpt = message.encode(self.head.recipients[cmd - 1])  # UTF-8: its bytes
                if self.tx_n + 12 + len(rcpt) > len(self.tx):  # "RCPT TO:<" rcpt ">\r\n"
                    break
                self.line("RCPT", b"RCPT TO:<", rcpt, b">")
            elif self.tx_n + 6 > len(self.tx):
                break
            else:
                self.line("DATA", b"DATA", b"", b"")
            cmd += 1
            if not self.caps & _CAP_PIPELINING:
                break
        self.queued += cmd - self.cmd
        self.cmd = cmd
        self._set_step()
        return _N_SEND if self.tx_n else _N_READ

    def _mail_from(self):
        """A transaction starts: its transfer encoding, now that EHLO said what the server
        takes; its size against the server's limit; MAIL."""
        # RFC 6152: 8-bit only with 8BITMIME; lines over 998 octets or NUL only QP.
        v = self.body.scanned  # -1: a stream, not looked at
        self.head.cte = _CTE_QP
        if v >= 0 and not v & (_SCAN_8BIT | _SCAN_UNFIT):
            self.head.cte = _CTE_7BIT
        elif self.caps & _CAP_8BITMIME and not (v >= 0 and v & _SCAN_UNFIT):
            self.head.cte = _CTE_8BIT
        self.refused = self.failed = None
        self.got = self.queued = 0
        # RFC 1870 §4: a message over the server's limit is refused now, not after its
        # upload (the 552 would come only after it).
        v = self.body.size
        if self.max_size and v >= 0 and v + _HEAD_ROOM > self.max_size:
            self.step = "MAIL"
            self.code = 0
            raise self.refusal(_OVERSIZE_MAIL_DATA, "The message (%d bytes) is over the "
                               "server's limit of %d bytes (SIZE); not sent" % (
                                   v + _HEAD_ROOM, self.max_size))
        self.line("MAIL", b"MAIL FROM:<", self.head.from_address, b">")
        self.tx_n -= 2  # the parameters go before the line end
        if self.caps & _CAP_SIZE and v >= 0:  # RFC 1870 §6: an estimate
            self.put(b" SIZE=")
            v += _HEAD_ROOM  # its digits, in place
            d = 1
            while d * 10 <= v:
                d *= 10
            while d:
                self.tx[self.tx_n] = 48 + v // d % 10
                self.tx_n += 1
                d //= 10
        if self.head.cte == _CTE_8BIT:
            self.put(b" BODY=8BITMIME")
        if self.flags & _F_UTF8:  # RFC 6531: an address with UTF-8 (Head.start saw it)
            from . import utf8  # (loaded with the first such mail)

            utf8.start(self)  # SMTPUTF8 (MAIL goes), or the mail refused (tx let go)
        self.put(b"\r\n")

    def _set_step(self):
        """The step an error names: the command whose reply comes next."""
        g = self.got
        self.step = "MAIL" if g == 0 else "RCPT" if g <= len(self.head.recipients) else "DATA"

    def _envelope_reply(self):
        c = self.code
        n = len(self.head.recipients)
        g = self.got
        self.got = g + 1
        if self.failed is not None:  # a pipelined group after an error: heard out
            if g == n + 1 and c == 354:
                self.phase = _P_LONE_DOT  # RFC 2920 §3.1: end the data at once
            elif self.got >= self.queued:
                raise self._held()
            else:
                self._set_step()
            return
        if g == 0:
            if c != 250:
                raise self.refusal(_OVERSIZE_MAIL_DATA if c == 552 else _MAIL_REPLY_ERROR,
                                  "Sender %s refused" % bytes(self.head.from_address).decode())
        elif g <= n:
            if c == 421:
                raise self.refusal(_RCPT_REPLY_ERROR, "Server closing")
            if c != 250 and c != 251:  # 251: "will forward", accepted
                if self.refused is None:
                    self.refused = []
                self.refused.append((self.head.recipients[g - 1], c, self._text()))
            if g == n and self.refused is not None and len(self.refused) == n and \
                    not self.caps & _CAP_PIPELINING:
                # Every recipient refused: RSET, no DATA (RFC 5321 §4.1.1.5); then report.
                self.queued = self.got
                self.failed = self._held()
                self.phase = _P_RSET
                return
        else:
            if self.refused is not None and len(self.refused) == n:
                if c == 354:  # §3.1: DATA took it all the same: a lone "." ends it
                    self.phase = _P_LONE_DOT
                    return
                raise self._held()
            if c != 354:
                raise self.refusal(_DATA_REPLY_ERROR, "DATA refused")
            self.phase = _P_BODY
            return
        self._set_step()

    def _cut(self):
        """A body read only once cannot go as announced: the session ends without "."
        (closing mid-DATA discards the mail)."""
        self.flags &= ~_F_CAN_QUIT
        self.code = 0  # the 354 before was the go-ahead, not a refusal
        return self.refusal(_MESSAGE_FORMAT_ERROR, "The message was cut off, not delivered: "
                            "the streamed body has %s, which %s mail cannot carry; pass it "
                            "in memory or as a file, which are checked before MAIL" % (
                                "a line over 998 bytes" if self.enc.too_long else
                                "a NUL (zero) byte", message.CTE_WIRE[self.head.cte].decode()))

    def line(self, step, start, data, end):
        """The command line start + data + end + CRLF after what tx holds (pipelining)."""
        self.step = step
        self.put(start)
        self.put(data)
        self.put(end)
        self.put(b"\r\n")

    def put(self, data):
        """data after what tx holds: bytes-like, or a str of ASCII (a checked address or
        name), copied as it is."""
        n = len(data)
        message.copy(self.tx, self.tx_n, data, 0, n)
        self.tx_n += n

    def _text(self):
        """The server's reply text for an error, printable ASCII; "" when it holds any
        8-byte piece of a credential as the client sends it (raw, base64, the PLAIN or
        XOAUTH2 string): a server that echoes must not put a secret into a log (auth.py
        checks). Of AUTH's own replies only the enhanced status code is kept ("5.7.8"):
        free text there may echo a credential in a form no check can know (issue 9)."""
        t = self.text
        a = self.auth
        if t and a is not None and not isinstance(a, tuple):
            if self.step == "AUTH":
                t = a.status_code(t)
            if a.echoes(t):
                return ""
        if not t:
            return ""
        out = bytearray(t)
        for i in range(len(out)):
            if not 32 <= out[i] <= 126:  # control or non-ASCII bytes shown as "?"
                out[i] = 63
        return out.decode()

    def refusal(self, status, what):
        """The SMTPError for this step: one sentence, the server's code and words."""
        code = self.code if self.step != "CONNECT" else 0
        if code == 421:  # §3.8: the server is going away; no QUIT, no RSET
            self.flags &= ~_F_CAN_QUIT
        text = self._text() if code else ""
        if status == _MESSAGE_REPLY_ERROR and text[5:6] in ("", " ") and \
                text[1:5] in (".3.4", ".2.3"):
            # RFC 3463's X.3.4 "message too big for system" or X.2.3 "exceeds administrative
            # limit" under a code other than 552 (OpenSMTPD: 554 5.3.4). Here, not in
            # _handle: a local more there takes its frame from the heap at every reply.
            status = _OVERSIZE_MAIL_DATA
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
        return e

    def _bad(self, status, what, framed=False):
        # A reply we cannot use. QUIT still makes sense if the lines were intact (NetX
        # regression 8); after an over-long line or unsolicited data the framing is lost.
        self.flags = self.flags & ~_F_CAN_QUIT | _F_BROKEN | (_F_CAN_QUIT if framed else 0)
        self.code = 0
        return self.refusal(status, "Bad reply from the server, " + what)

    def _lost(self, r):
        """The driver's network failure (r < 0, or 0: closed) as an SMTPError."""
        self.flags &= ~_F_CAN_QUIT
        self.code = 0
        if self.flags & _F_AFTER_DOT:
            return self.refusal(_DELIVERY_UNKNOWN, "Connection lost after the message was "
                                "sent, before the server confirmed it: it may or may not have "
                                "been delivered")
        if r == _ERR_RESOLVE:
            return self.refusal(_RESOLVE_ERROR, "Cannot resolve %s (%s); check the name and "
                                "the network" % (self.host, self.os_error))
        if r == _ERR_CONNECT:
            return self.refusal(_CONNECT_ERROR, "Cannot connect to %s port %d (%s); check the "
                                "server, the port and the network" % (
                                    self.host, self.port, self.os_error))
        if r == _ERR_TIMEOUT:
            return self.refusal(_TIMEOUT_ERROR, "No answer from the server within %d ms"
                                % self.wait_ms)
        if r <= _ERR_TLS:  # _ERR_TLS, _ERR_CERT: from secure.py's wrap, which says why
            return self.secure.failed(self, r)
        return self.refusal(_CONNECTION_CLOSED, "The server closed the connection" + (
            " (%s)" % self.os_error if self.os_error else ""))
