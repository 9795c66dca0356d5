# microsmtp: protocol traces — each command line the client writes and each reply line it
# reads, handed to the app's function with the secrets masked. MIT licence.
# Loaded only for a client made with trace= (Session.restart): without one the engine runs
# alone and a board never holds this bytecode. The Tracer stands between the driver and the
# engine (drivers call s.engine.send(result) either way), so protocol.py carries no tracing
# code a plain send would pay for: what a request writes is tx[:tx_n] when the engine asks
# for OP_SEND, what a read gave is rx[rx_end:rx_end + n] when the driver hands back n > 0
# (protocol.py's table). With TLS both are the decrypted SMTP lines.
import binascii

from micropython import const

from .status import SMTPError

# protocol.py's values (tests/test_units.py checks they match): requests, phases, flag
# bits, status codes.
_OP_CONNECT = const(1)
_OP_SEND = const(2)
_OP_WAIT = const(3)
_OP_RECV = const(4)
_OP_STARTTLS = const(5)
_P_AUTH = const(6)
_P_AUTH_CANCEL = const(9)
_P_BODY = const(11)
_P_DOT = const(12)
_P_QUIT = const(16)
_F_AFTER_DOT = const(4)
_F_QUIT_SENT = const(8)
_INTERNAL_ERROR = const(0xA3)
_DELIVERY_UNKNOWN = const(0xC4)
_LINE_MAX = const(512)
_MASK = const(b"****")


def _holds(text, secret):
    """Whether text holds secret, or a piece of it of 8 bytes."""
    if len(secret) < 8:
        return len(secret) > 0 and text.find(secret) >= 0
    for i in range(len(text) - 7):
        if secret.find(text[i:i + 8]) >= 0:
            return True
    return False


def _echoes(line, secret):
    """Whether a reply line holds the secret: in clear, in base64, or in a word that
    decodes from base64 to it."""
    if _holds(line, secret) or _holds(line, binascii.b2a_base64(secret)[:-1]):
        return True
    for word in line.split():
        try:
            if _holds(binascii.a2b_base64(word), secret):
                return True
        except ValueError:
            pass
    return False


def wrap(s):
    """The Tracer that takes the place of s.engine (Session.restart, with s.trace set);
    TypeError for a trace that cannot be called (from Client(), before anything is sent)."""
    if not callable(s.trace):
        raise TypeError("trace must be a function, trace(direction, line), or None")
    return Tracer(s, s.engine)


class Tracer:
    """s.trace(direction, line) for each line: ">" and a command the client writes (its
    bytes, no CRLF), "<" and a reply line it read. The message between DATA's 354 and "."
    is one line, b"<message: N bytes>" (N: the bytes written, header block included). AUTH
    arguments and answers are masked ("AUTH PLAIN ****", "****"), and so is the text of a
    reply line that holds a piece of a credential (a server that echoes)."""

    def __init__(self, s, engine):
        self.s = s
        self.engine = engine
        self.op = 0  # the engine's last request
        self._reset()

    def _reset(self):
        self.part = None  # the start of a reply line whose end a later read brings
        self.size = -1  # bytes of the message written so far; -1: none under way
        self.long = False  # an AUTH answer longer than a buffer is going out in pieces
        self.on = True  # False once trace raised in QUIT or after: till the next connection

    def send(self, result):
        """What the driver calls: the lines a read gave, the engine's next request, the
        lines that request writes."""
        s = self.s
        if (self.op == _OP_WAIT or self.op == _OP_RECV) and result > 0:
            self.received(s.rx, s.rx_end, s.rx_end + result)
        op = self.op = self.engine.send(result)
        if op == _OP_SEND:
            self.sent(s.tx, s.tx_n)
        elif op == _OP_CONNECT:
            self._reset()
        elif op == _OP_STARTTLS:
            self.part = None
        elif self.size >= 0:  # the message ended without its "." (cut off, or lost)
            self.message(", unfinished")
        return op

    def sent(self, tx, n):
        ph = self.s.phase
        if ph == _P_BODY:  # the header block and the body: counted, not shown
            self.size = max(self.size, 0) + n
            return
        i = 0
        if ph == _P_DOT:  # the message's last bytes, then ".\r\n" (and a pipelined QUIT)
            i = n - 3 - (6 if self.s.flags & _F_QUIT_SENT else 0)
            self.size = max(self.size, 0) + i
        if self.size >= 0:
            self.message("")
        while i < n:
            j = tx.find(b"\r\n", i, n)
            if j < 0:  # a piece of an AUTH answer longer than tx: shown once, at its end
                self.long = True
                return
            line = bytes(tx[i:j])
            if _P_AUTH <= ph <= _P_AUTH_CANCEL:
                line = self.masked(line)
            self.out(">", line)  # a pipelined group: one line each
            i = j + 2

    def masked(self, line):
        """An AUTH command line as traced: the mechanism's name shown, its initial response
        masked; an answer to a 334 masked whole ("*", the cancel, and an empty line hide
        nothing)."""
        if self.long:  # the end of a long answer
            self.long = False
            return _MASK
        if line[:5] == b"AUTH ":  # (no answer starts so: base64 has no space)
            k = line.find(b" ", 5)
            return line if k < 0 else line[:k + 1] + _MASK
        return line if not line or line == b"*" else _MASK

    def received(self, rx, a, b):
        while a < b:
            j = rx.find(b"\n", a, b)
            line = bytes(rx[a:b if j < 0 else j])
            if self.part is not None:
                line = self.part + line
                self.part = None
            if j < 0:
                if len(line) < _LINE_MAX:
                    self.part = line  # its end comes with a later read
                    return
                a = b  # a line over the limit (the engine refuses it): shown as it came
            else:
                a = j + 1
                if line[-1:] == b"\r":
                    line = line[:-1]
            self.out("<", self.hidden(line))

    def hidden(self, line):
        """A reply line as traced: its text masked when it holds a credential, or a piece of
        one (8 bytes), in clear or in base64, or in a word whose base64 decodes to one (the
        PLAIN string, XOAUTH2's, a 334's JSON that repeats the token): a server that echoes
        what AUTH sent cannot put a secret into a log."""
        a = self.s.auth
        if a is None or isinstance(a, tuple):
            return line
        for secret in (a.password, a.token):
            if secret is not None and _echoes(line, bytes(secret)):
                k = 0  # the reply code stays
                while k < 3 and k < len(line) and 48 <= line[k] <= 57:
                    k += 1
                return line[:4] + _MASK if k == 3 else _MASK
        return line

    def message(self, how):
        n = self.size
        self.size = -1
        self.out(">", ("<message: %d bytes%s>" % (n, how)).encode())

    def out(self, direction, line):
        if not self.on:
            return
        try:
            self.s.trace(direction, line)
        except MemoryError:
            raise  # as any other of a send: PACKET_ALLOCATE_ERROR (Client._drive)
        except Exception as e:
            s = self.s
            if s.phase == _P_QUIT or not s.phase:
                # QUIT, or the session over (an unfinished message's line): every mail's
                # result is known already, and it stands.
                self.on = False
                return
            # The session ends here (the driver closes the connection, the client gives
            # every buffer back, the next send starts a new engine): the mail's result is
            # this error. After the "." went out, before its reply was read, the mail may
            # have been delivered.
            unknown = direction == "<" and s.flags & _F_AFTER_DOT
            err = SMTPError(_DELIVERY_UNKNOWN if unknown else _INTERNAL_ERROR,
                            "The trace function raised %s (%s); the session was ended%s (%s)."
                            % (type(e).__name__, str(e)[:200], " after the message was sent: "
                               "it may or may not have been delivered" if unknown else "",
                               s.step), s.step)
            s.error = err  # the session's later mails get it too
            raise err
