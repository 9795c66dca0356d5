# microsmtp: one SMTP session as a sans-IO state machine (h11's idea). MIT licence.
# Session.run() is a generator: it yields small int requests (OP_*) and gets int results.
# It never touches a socket, a file or the clock: transport.py (or a test's scripted
# driver) does the I/O, so every driver runs exactly the same protocol code.
from micropython import const

from . import auth, message
from .status import (
    AUTH_REPLY_ERROR,
    CONNECT_ERROR,
    CONNECTION_CLOSED,
    DATA_REPLY_ERROR,
    DELIVERY_UNKNOWN,
    GREET_REPLY_ERROR,
    HELLO_REPLY_ERROR,
    INTERNAL_ERROR,
    INVALID_SERVER_REPLY,
    MAIL_REPLY_ERROR,
    MESSAGE_FORMAT_ERROR,
    MESSAGE_REPLY_ERROR,
    OVERSIZE_SERVER_REPLY,
    RCPT_REPLY_ERROR,
    RESOLVE_ERROR,
    SERVER_ERROR_REPLY,
    TIMEOUT_ERROR,
    SMTPError,
)

# Requests yielded to the driver.
OP_CONNECT = const(1)  # resolve host, connect (connect_ms); sets local_literal. -> 0 or ERR_*
OP_SEND = const(2)  # write tx[0:tx_n] (io_ms per write) -> 0 or ERR_*
OP_WAIT = const(3)  # start a new reply deadline of wait_ms, then do OP_RECV
OP_RECV = const(4)  # readinto rx[rx_end:rx_cap] before the deadline -> n, 0 at EOF, or ERR_*

# Driver results below zero.
ERR_TIMEOUT = const(-1)
ERR_CLOSED = const(-2)  # reset, broken pipe, any other socket error mid-session
ERR_RESOLVE = const(-3)
ERR_CONNECT = const(-4)

_LINE_MAX = const(512)  # RFC 5321 §4.5.3.1.5: reply line <= 512 octets with CRLF
_MAX_LINES = const(40)  # more lines in one reply is a broken or hostile server
_TEXT_MAX = const(300)  # reply text kept for an error message
_AUTH_ROUNDS = const(3)  # 334 challenges answered before cancelling with "*"

_CAP_8BITMIME = const(1)
_CAP_PIPELINING = const(2)
_CAP_STARTTLS = const(4)
_CAP_SMTPUTF8 = const(8)
_CAP_SIZE = const(16)
_CAP_AUTH = const(32)

_PRIORITY_HEADERS = {
    message.PRIORITY_HIGH: b"X-Priority: 1 (Highest)\r\nImportance: high\r\n",
    message.PRIORITY_LOW: b"X-Priority: 5 (Lowest)\r\nImportance: low\r\n",
}


def printable(raw):
    """Server text for a person: printable ASCII kept, anything else shown as '?'."""
    out = bytearray(raw)
    for i in range(len(out)):
        if out[i] < 32 or out[i] > 126:
            out[i] = 63
    return bytes(out).decode()


def _seconds(ms):
    return "%d" % (ms // 1000) if ms % 1000 == 0 else "%.1f" % (ms / 1000)


class Session:
    def __init__(self, host, port, from_address, username, password, domain, auth_type,
                 timeouts):
        self.host = host
        self.port = port
        self.from_address = from_address
        self.from_b = message.as_bytes(from_address)
        self.username = None if username is None else message.as_bytes(username)
        self.password = None if password is None else message.as_bytes(password)
        # Credentials as they could come back in a server's reply text, for scrubbing.
        # Longest first, so a shorter secret inside a longer one cannot leave a remainder.
        self.secrets = () if password is None or username is None else (
            auth.plain_response(self.username, self.password).decode(),
            auth.b64(self.password).decode(), password)
        self.domain = None if domain is None else message.as_bytes(domain)
        self.auth_type = auth_type
        (self.connect_ms, self.greeting_ms, self.envelope_ms, self.message_ms,
         self.quit_ms) = timeouts
        self.body = message.BodySource()
        self.enc = message.BodyEncoder()
        self.release()

    def prepare(self, recipients, subject, body, limit, priority, scan, now, rx, tx, scratch):
        self.recipients = recipients
        self.subject = subject
        self.body.reset(body, limit)
        self.priority = priority
        self.scan = scan  # (ascii, short lines) for in-memory bodies, None when streamed
        self.now = now
        self.rx = rx
        self.rx_mv = memoryview(rx)
        self.tx = tx
        self.tx_mv = memoryview(tx)
        self.scratch = scratch

    def release(self):
        """Drop every reference to the pool buffers and the body: back to the initial state."""
        self.rx = self.rx_mv = self.tx = self.tx_mv = self.scratch = None
        self.recipients = self.subject = self.now = None
        self.body.reset(None, None)
        self.local_literal = None
        self.os_error = None

    # --- the session ---------------------------------------------------------------------

    def run(self):
        self.rx_start = self.rx_end = 0
        self.rx_cap = _LINE_MAX
        self.tx_n = 0
        self.caps = 0
        self.mechs = 0
        self.size_max = 0
        self.after_dot = False
        self.can_quit = False
        self.refused = None
        self.step = "CONNECT"
        self.io_ms = self.envelope_ms
        self.wait_ms = 0
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
            e = SMTPError(
                RCPT_REPLY_ERROR,
                "The message went to %d of %d recipients; refused (RCPT): %s." % (
                    len(self.recipients) - len(self.refused), len(self.recipients),
                    self._refusals(self.refused)),
                "RCPT", self.refused[0][1], self.refused[0][2])
            e.refused = self.refused
            raise e

    def _transaction(self):
        r = yield OP_CONNECT
        if r < 0:
            self._net_fail(r)
        self.can_quit = True

        self.step = "GREETING"
        yield from self._reply(self.greeting_ms)
        if self.code != 220:
            self._refused(GREET_REPLY_ERROR, "The server did not greet with 220")

        yield from self._hello()
        yield from self._auth()

        self.step = "MAIL"
        cte = self._choose_cte()
        self._cmd(b"MAIL FROM:<", self.from_b,
                  b"> BODY=8BITMIME" if cte == message.CTE_8BIT else b">")
        yield from self._exchange(self.envelope_ms)
        if self.code != 250:
            self._refused(MAIL_REPLY_ERROR, "The sender %s was refused" % self.from_address)

        self.step = "RCPT"
        refused = None
        for rcpt in self.recipients:
            self._cmd(b"RCPT TO:<", message.as_bytes(rcpt), b">")
            yield from self._exchange(self.envelope_ms)
            if self.code == 250 or self.code == 251:  # 251: "will forward", accepted
                continue
            if self.code == 421:
                self._refused(RCPT_REPLY_ERROR, "The server is closing the connection")
            if refused is None:
                refused = []
            refused.append((rcpt, self.code, self._text()))
        if refused is not None and len(refused) == len(self.recipients):
            # Every recipient refused: RSET, no DATA (RFC 5321 §4.1.1.5).
            self.step = "RSET"
            self._cmd(b"RSET")
            yield from self._exchange(self.envelope_ms)
            self.step = "RCPT"
            e = SMTPError(RCPT_REPLY_ERROR, "Every recipient was refused (RCPT): %s." %
                          self._refusals(refused), "RCPT", refused[0][1], refused[0][2])
            e.refused = refused
            raise e
        self.refused = refused

        self.step = "DATA"
        self._cmd(b"DATA")
        yield from self._exchange(self.envelope_ms)
        if self.code != 354:
            self._refused(DATA_REPLY_ERROR, "DATA was refused")

        self.step = "MESSAGE"
        yield from self._message(cte)
        self.after_dot = True
        yield from self._reply(self.message_ms)
        if self.code != 250:
            self._refused(MESSAGE_REPLY_ERROR, "The message was not accepted")
        self.after_dot = False

    def _hello(self):
        domain = self.domain
        if domain is None:
            domain = message.as_bytes(self.local_literal or "[127.0.0.1]")
        self.step = "EHLO"
        self._cmd(b"EHLO ", domain)
        yield from self._exchange(self.envelope_ms)
        if self.code == 500 or self.code == 502:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO (NetX has no fallback).
            self.step = "HELO"
            self._cmd(b"HELO ", domain)
            yield from self._exchange(self.envelope_ms)
        if self.code != 250:
            self._refused(HELLO_REPLY_ERROR, "The server refused our %s" % self.step)

    def _auth(self):
        mech = auth.choose(self.auth_type, self.caps & _CAP_AUTH, self.mechs,
                           self.username is not None)
        if mech == auth.AUTH_NONE:
            return
        self.step = "AUTH"
        user = self.username
        password = self.password if self.password is not None else b""
        if mech == auth.AUTH_PLAIN:
            answer = auth.plain_response(user, password)
            # RFC 4954 §4: the initial response goes on the AUTH line when the line fits.
            if 11 + len(answer) + 2 <= _LINE_MAX:
                self._cmd(b"AUTH PLAIN ", answer)
            else:
                self._cmd(b"AUTH PLAIN")
        else:
            answer = None
            self._cmd(b"AUTH LOGIN")
        yield from self._exchange(self.envelope_ms)
        rounds = 0
        while self.code == 334:
            rounds += 1
            if mech == auth.AUTH_LOGIN:
                answer = auth.login_answer(self.challenge, user, password)
            if answer is None or rounds > _AUTH_ROUNDS:
                # An unknown prompt or a never-ending exchange: cancel (RFC 4954 §4).
                self._cmd(b"*")
                yield from self._exchange(self.envelope_ms)
                raise self._error(
                    AUTH_REPLY_ERROR, "Authentication with %s failed on an unexpected challenge"
                    % auth.NAMES[mech], None, "")
            self._cmd(answer)
            yield from self._exchange(self.envelope_ms)
        if self.code != 235:
            self._refused(AUTH_REPLY_ERROR,
                          "Authentication with %s was refused" % auth.NAMES[mech])

    def _choose_cte(self):
        # RFC 6152: 8-bit only with 8BITMIME; lines over 998 octets only quoted-printable.
        has_8bit = self.caps & _CAP_8BITMIME
        if self.scan is None:  # streamed: cannot look ahead
            return message.CTE_8BIT if has_8bit else message.CTE_QP
        ascii_only, short_lines = self.scan
        if short_lines and ascii_only:
            return message.CTE_7BIT
        if short_lines and has_8bit:
            return message.CTE_8BIT
        return message.CTE_QP

    def _message(self, cte):
        self.io_ms = self.message_ms
        self.tx_n = 0
        date = message.date_value(self.now)
        if date is not None:
            yield from self._out(b"Date: ", date, b"\r\n")
        yield from self._out(b"From: ", self.from_b, b"\r\nTo: ")
        first = True
        for rcpt in self.recipients:
            # One address per line keeps every header line short (RFC 5322 §2.2.3 folding).
            yield from self._out(b"" if first else b",\r\n ", message.as_bytes(rcpt), b"")
            first = False
        yield from self._out(b"\r\nSubject:", b"", b"")
        if message.encoded_subject_needed(self.subject):
            # RFC 2047 encoded words, one per folded line; never a raw control character.
            sep = b" =?utf-8?B?"
            for word in message.subject_words(self.subject):
                yield from self._out(sep, word, b"?=")
                sep = b"\r\n =?utf-8?B?"
            yield from self._out(b"\r\n", b"", b"")
        else:
            yield from self._out(b" ", message.as_bytes(self.subject), b"\r\n")
        yield from self._out(b"Message-ID: ", message.message_id(self.from_address),
                             b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
                             b"charset=utf-8\r\nContent-Transfer-Encoding: ")
        yield from self._out(message.CTE_NAMES[cte], b"\r\n",
                             _PRIORITY_HEADERS.get(self.priority, b""))
        yield from self._out(b"\r\n", b"", b"")

        enc = self.enc
        enc.start(cte, self.tx)
        enc.o = self.tx_n
        src = self.scratch
        while True:
            n = self.body.readinto(src)
            if not n:
                break
            enc.chunk()
            while enc.i < n:
                enc.encode(src, n)
                if enc.too_long:
                    self.can_quit = False  # mid-DATA: closing without "." discards it
                    raise SMTPError(
                        MESSAGE_FORMAT_ERROR,
                        "The message was not sent: a line of the streamed body is longer than"
                        " 998 bytes; pass it in memory (it is then quoted-printable encoded)"
                        " or break its lines.", "MESSAGE")
                if enc.i < n:  # tx is full: send it
                    self.tx_n = enc.o
                    r = yield OP_SEND
                    if r < 0:
                        self._net_fail(r)
                    enc.o = 0
        if enc.o > len(self.tx) - 5:
            self.tx_n = enc.o
            r = yield OP_SEND
            if r < 0:
                self._net_fail(r)
            enc.o = 0
        self.tx_n = enc.finish(enc.o)
        r = yield OP_SEND
        if r < 0:
            self._net_fail(r)
        self.io_ms = self.envelope_ms

    def _quit(self):
        self.step = "QUIT"
        self.can_quit = False
        try:
            self._cmd(b"QUIT")
            r = yield OP_SEND
            if r < 0:
                return
            # Only the end matters now: any reply, or none within quit_ms (RFC 5321 §4.1.1.10).
            self.rx_start = self.rx_end = 0
            yield from self._reply(self.quit_ms)
        except SMTPError:
            pass

    # --- commands and replies ------------------------------------------------------------

    def _cmd(self, a, b=None, c=None):
        """Build one command line in tx: one write per protocol step (no Nagle stalls)."""
        mv = self.tx_mv
        n = len(a)
        mv[0:n] = a
        if b is not None:
            k = len(b)
            if n + k > _LINE_MAX - 2:
                self._too_long()
            mv[n:n + k] = b
            n += k
        if c is not None:
            k = len(c)
            if n + k > _LINE_MAX - 2:
                self._too_long()
            mv[n:n + k] = c
            n += k
        mv[n] = 13
        mv[n + 1] = 10
        self.tx_n = n + 2

    def _too_long(self):
        raise SMTPError(INTERNAL_ERROR, "The %s command would exceed 512 bytes." % self.step,
                        self.step)

    def _out(self, a, b, c):
        """Append pieces of the message to tx, sending full buffers as it goes."""
        for piece in (a, b, c):
            if isinstance(piece, str):
                piece = message.as_bytes(piece)
            i = 0
            n = len(piece)
            while i < n:
                room = len(self.tx) - self.tx_n
                if room == 0:
                    r = yield OP_SEND
                    if r < 0:
                        self._net_fail(r)
                    self.tx_n = 0
                    room = len(self.tx)
                k = n - i if n - i < room else room
                self.tx_mv[self.tx_n:self.tx_n + k] = piece[i:i + k]
                self.tx_n += k
                i += k

    def _exchange(self, wait_ms):
        r = yield OP_SEND
        if r < 0:
            self._net_fail(r)
        yield from self._reply(wait_ms)

    def _reply(self, wait_ms):
        """Read one whole reply; set code (and challenge/text when needed).

        Lines may arrive split over any number of reads (NetX regressions 5 and 6); a line
        is capped at 512 bytes and a reply at _MAX_LINES lines, so memory stays bounded."""
        rx = self.rx
        first = True
        code = 0
        lines = 0
        self.text_b = None
        self.challenge = None
        while True:
            j = rx.find(b"\n", self.rx_start, self.rx_end)
            if j < 0:
                if self.rx_start:  # move the partial line to the front
                    k = self.rx_end - self.rx_start
                    self.rx_mv[0:k] = self.rx_mv[self.rx_start:self.rx_end]
                    self.rx_start = 0
                    self.rx_end = k
                if self.rx_end >= _LINE_MAX:
                    self._bad_reply(OVERSIZE_SERVER_REPLY,
                                    "sent a reply line longer than 512 bytes", False)
                self.wait_ms = wait_ms
                r = yield OP_WAIT if first else OP_RECV
                first = False
                if r <= 0:
                    self._net_fail(r)
                self.rx_end += r
                continue
            ls = self.rx_start
            le = j
            self.rx_start = j + 1
            if le > ls and rx[le - 1] == 13:
                le -= 1
            # RFC 5321 §4.2: three digits, the first 2-5, then SP, "-" or the line end.
            if le - ls < 3:
                self._bad_reply(SERVER_ERROR_REPLY, "sent a reply without a 3-digit code")
            d0 = rx[ls] - 48
            d1 = rx[ls + 1] - 48
            d2 = rx[ls + 2] - 48
            if not (2 <= d0 <= 5 and 0 <= d1 <= 9 and 0 <= d2 <= 9):
                self._bad_reply(SERVER_ERROR_REPLY, "sent a reply without a valid code")
            sep = rx[ls + 3] if le - ls > 3 else 32
            if sep != 32 and sep != 45:  # NetX regression 8: "222222220-" is not 222
                self._bad_reply(SERVER_ERROR_REPLY, "sent a malformed reply code")
            c = d0 * 100 + d1 * 10 + d2
            if code and c != code:
                self._bad_reply(INVALID_SERVER_REPLY, "mixed reply codes in one reply")
            code = c
            lines += 1
            if lines > _MAX_LINES:
                self._bad_reply(OVERSIZE_SERVER_REPLY,
                                "sent a reply of more than %d lines" % _MAX_LINES, False)
            ts = ls + 4 if le - ls > 3 else le
            if c >= 400:
                self._keep_text(ts, le)
            elif c == 334 and self.challenge is None:
                self.challenge = bytes(self.rx_mv[ts:le])
            elif c == 250 and lines > 1 and self.step == "EHLO":
                self._capability(ts, le)  # the first line names the server, not a keyword
            if sep != 45:
                break
        self.code = code
        if self.rx_start < self.rx_end and self.step != "QUIT":
            # No pipelining yet: bytes nobody asked for would be read as the next reply
            # (reply desynchronisation), so they end the session.
            self._bad_reply(INVALID_SERVER_REPLY, "sent data that answers nothing", False)

    def _keep_text(self, a, b):
        piece = bytes(self.rx_mv[a:b])
        if self.text_b is None:
            self.text_b = piece
        elif len(self.text_b) < _TEXT_MAX:
            self.text_b += b" " + piece
        if len(self.text_b) > _TEXT_MAX:
            self.text_b = self.text_b[:_TEXT_MAX]

    def _capability(self, a, b):
        words = bytes(self.rx_mv[a:b]).upper().split()
        if not words:
            return
        kw = words[0]
        if kw == b"AUTH" or kw.startswith(b"AUTH="):  # "AUTH=PLAIN" is the pre-RFC form
            self.caps |= _CAP_AUTH
            if len(kw) > 5:
                words[0] = kw[5:]
            else:
                words.pop(0)
            for m in words:
                self.mechs |= auth.MECH_BITS.get(m, 0)
        elif kw == b"8BITMIME":
            self.caps |= _CAP_8BITMIME
        elif kw == b"PIPELINING":
            self.caps |= _CAP_PIPELINING
        elif kw == b"STARTTLS":
            self.caps |= _CAP_STARTTLS
        elif kw == b"SMTPUTF8":
            self.caps |= _CAP_SMTPUTF8
        elif kw == b"SIZE":
            self.caps |= _CAP_SIZE
            if len(words) > 1 and words[1].isdigit():
                self.size_max = int(words[1])

    # --- failures --------------------------------------------------------------------------

    def _text(self):
        if not self.text_b:
            return ""
        text = printable(self.text_b)
        for secret in self.secrets:  # a server may echo a credential back (e.g. in a 500)
            if secret:
                text = text.replace(secret, "***")
        return text

    def _refusals(self, refused):
        return "; ".join("%s %d %s" % (r[0], r[1], r[2]) for r in refused)

    def _error(self, status, what, code, text):
        # One sentence: what went wrong (STEP): the server's own words.
        sentence = "%s (%s)" % (what, self.step)
        if code:
            sentence += ": %d %s" % (code, text) if text else ": %d" % code
        return SMTPError(status, sentence + ".", self.step, code, text)

    def _refused(self, status, what):
        if self.code == 421:  # §3.8: the server is going away; no QUIT, no RSET
            self.can_quit = False
        raise self._error(status, what, self.code, self._text())

    def _bad_reply(self, status, what, framed=True):
        # A reply we cannot use. QUIT still makes sense if the lines were intact (NetX
        # regression 8); after an over-long line or unsolicited data the framing is lost.
        if not framed:
            self.can_quit = False
        raise SMTPError(status, "The server %s (%s); the session was ended." % (what, self.step),
                        self.step)

    def _net_fail(self, r):
        self.can_quit = False
        step = self.step
        if self.after_dot:
            raise SMTPError(
                DELIVERY_UNKNOWN,
                "The connection was lost after the message was sent and before the server "
                "confirmed it (MESSAGE): it may or may not have been delivered.", step)
        if r == ERR_RESOLVE:
            raise SMTPError(RESOLVE_ERROR, "Cannot resolve the server name %r (CONNECT, %s): "
                            "check the name and that the network is up." % (
                                self.host, self.os_error), step)
        if r == ERR_CONNECT:
            raise SMTPError(CONNECT_ERROR, "Cannot connect to %s port %d (CONNECT, %s): check "
                            "the server, the port and the network." % (
                                self.host, self.port, self.os_error), step)
        if r == ERR_TIMEOUT:
            raise SMTPError(TIMEOUT_ERROR, "The server did not answer within %s s (%s)." % (
                _seconds(self.wait_ms), step), step)
        raise SMTPError(CONNECTION_CLOSED, "The server closed the connection (%s%s)." % (
            step, "" if self.os_error is None else ", %s" % self.os_error), step)
