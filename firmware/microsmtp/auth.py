# microsmtp: SMTP AUTH (RFC 4954) — the mechanisms and the exchange. MIT licence.
# Loaded only by a client with credentials: a LAN relay's plain path never pays for it.
import binascii

from micropython import const

from .message import as_bytes

# protocol.py's values (tests/test_units.py checks they match): phases, capability bits,
# what _next() returns, status codes.
_P_AUTH = const(6)
_P_AUTH_REPLY = const(7)
_P_AUTH_ANSWER = const(8)
_P_AUTH_CANCEL = const(9)
_P_ENVELOPE = const(10)
_CAP_AUTH = const(16)
_F_SECURE = const(2)
_N_SEND = const(1)
_N_LONG = const(5)
_AUTHENTICATION_ERROR = const(0xA0)
_AUTH_REPLY_ERROR = const(0xAD)
_PLAINTEXT_AUTH_REFUSED = const(0xD6)
_LINE_MAX = const(512)
_AUTH_ROUNDS = const(3)  # 334 challenges answered before cancelling with "*"

# microsmtp.AUTH_*, private here (a name kept is a dict entry on a board): NetX Duo's values
# for LOGIN, CRAM-MD5, PLAIN and NONE; XOAUTH2 and AUTO are microsmtp's.
_AUTH_LOGIN = const(1)
_AUTH_CRAM_MD5 = const(2)
_AUTH_PLAIN = const(3)
_AUTH_XOAUTH2 = const(4)
_AUTH_AUTO = const(0)  # the strongest mechanism both sides support
_AUTH_NONE = const(0xFFFF)

# Bits for the mechanisms a server lists after AUTH in its EHLO reply: 1 << (AUTH_* - 1)
# (CRAM-MD5's 2 and XOAUTH2's 8 are only ever computed so).
_MECH_LOGIN = const(1)
_MECH_PLAIN = const(4)
# The names as the server lists them and as the AUTH command says them, by AUTH_* - 1
# (protocol.py's _MECHS holds the same, for the EHLO reply).
_NAMES = const((b"LOGIN", b"CRAM-MD5", b"PLAIN", b"XOAUTH2"))
# Strongest first: a token never shows the password; CRAM-MD5 sends only a keyed digest.
_STRENGTH = const((_AUTH_XOAUTH2, _AUTH_CRAM_MD5, _AUTH_PLAIN, _AUTH_LOGIN))



def name(mech):
    """b"PLAIN" for AUTH_PLAIN, and so on."""
    return _NAMES[mech - 1]


def b64(data):
    # MicroPython's b2a_base64 always ends with "\n"; CPython's too by default.
    return binascii.b2a_base64(data)[:-1]


def choose(configured, listed, offered, creds, tried=0):
    """The mechanism to use next (an AUTH_* value), AUTH_NONE, or minus a pinned
    mechanism the server does not offer.

    listed: the server's EHLO had an AUTH line; offered: the _MECH_* bits it named;
    creds: 1 a password, 2 a token, 3 both; tried: _MECH_* bits already refused with 534
    ("too weak": try the next one)."""
    # (Few locals: a call with more than 11 words of them and its stack takes its frame
    # from the heap, once a connection.)
    if not creds:
        return _AUTH_NONE  # nothing to authenticate with (documented)
    if configured == _AUTH_AUTO:
        offered &= ~tried  # what is left to try
        for mech in range(4):
            mech = _STRENGTH[mech]  # (the index first: one local less, see above)
            # Its _MECH_ bit is 1 << (mech - 1); XOAUTH2 needs the token, the rest a password.
            if offered & (1 << (mech - 1)) and creds & (2 if mech == _AUTH_XOAUTH2 else 1):
                return mech
        if tried:
            return _AUTH_NONE  # every mechanism we could use was refused as too weak
        # Nothing usable listed: guide rule 1 (docs/NETX.md) says PLAIN; with only a token,
        # XOAUTH2.
        return _AUTH_PLAIN if creds & 1 else _AUTH_XOAUTH2
    if tried:
        return _AUTH_NONE  # a pinned mechanism is not swapped for another after 534
    if configured == _AUTH_CRAM_MD5 or configured == _AUTH_XOAUTH2:
        # Pinned: microsmtp's own mechanisms (NetX has no rule for them), sent only when
        # the server names them; a blind "AUTH CRAM-MD5" earns a 504 (issue 12). No AUTH
        # listed, or one naming nothing microsmtp knows (a bare "AUTH" breaks RFC 4954's
        # grammar) counts as not offered too.
        return configured if offered & (1 << (configured - 1)) else -configured
    # The NetX Duo user guide's rules for PLAIN, LOGIN and NONE.
    if configured == _AUTH_NONE:
        if not listed:
            return _AUTH_NONE
        configured = _AUTH_PLAIN  # guide: NONE, server supports AUTH -> switch to PLAIN
    if not offered & (_MECH_PLAIN | _MECH_LOGIN):
        return _AUTH_PLAIN  # guide: no usable type listed (or none at all) -> PLAIN
    if configured == _AUTH_LOGIN and not offered & _MECH_LOGIN:
        return _AUTH_PLAIN  # guide: LOGIN configured, only PLAIN listed
    if configured == _AUTH_PLAIN and not offered & _MECH_PLAIN:
        return _AUTH_LOGIN  # guide: PLAIN configured, only LOGIN listed
    return configured


def plain_response(username, password):
    # RFC 4616: authzid NUL authcid NUL passwd; NetX sends the user as both identities.
    user = bytes(username)
    return b64(user + b"\0" + user + b"\0" + bytes(password))


def decode(challenge):
    """A 334 challenge's bytes, or None when it is not valid base64 (answered with "*")."""
    try:
        data = binascii.a2b_base64(challenge)
    except ValueError:
        return None
    # MicroPython's a2b_base64 skips bad characters instead of failing: re-encode to check.
    return data if b64(data) == bytes(challenge).strip() else None


def login_answer(challenge, username, password):
    """Answer to a decoded AUTH LOGIN prompt, or None for a prompt that is neither.

    Servers word them differently ("Username:", "User Name", "password:"), so the prompt
    is matched on "user" / "pass", in any case."""
    challenge = challenge.lower()
    if challenge.find(b"user") >= 0:
        return b64(bytes(username))
    if challenge.find(b"pass") >= 0:
        return b64(bytes(password))
    return None


class Login:
    """A client's credentials and its AUTH exchange (the session's `auth`)."""

    def __init__(self, username, password, token, configured, allow_plaintext):
        self.username = as_bytes(username)
        self.password = None if password is None else as_bytes(password)
        self.token = None if token is None else as_bytes(token)
        self.configured = configured  # AUTH_*: pinned, or AUTO
        self.allow_plaintext = allow_plaintext
        self.answer = None  # PLAIN's or XOAUTH2's response: made once a client (a token:
        self.answer_for = 0  # 1-2 KB), for this mechanism
        self.line = None  # the line that answers a 334
        self.pos = 0  # bytes of a line longer than tx already in the buffers before
        self.mech = self.tried = self.rounds = 0
        self.mechs = 0  # _MECH_* bits of what the server's EHLO lists (protocol.py sets them)
        self.ir = False  # the AUTH line carried the initial response

    def echoes(self, text):
        """True when a server's reply text holds any 8-byte piece of a credential as the
        client sends it (raw, base64, the PLAIN or XOAUTH2 string): protocol.py keeps no such
        text, so a server that echoes cannot put a secret into a log. The forms are made
        here, on the error path: a token is 1-2 KB."""
        secrets = []
        if self.token is not None:
            from . import secure

            secrets += [bytes(self.token), secure.xoauth2_response(self.username, self.token)]
        if self.password is not None:
            secrets += [bytes(self.password), b64(self.password),
                        plain_response(self.username, self.password)]
        for secret in secrets:
            if 0 < len(secret) < 8 and text.find(secret) >= 0:
                return True
        for i in range(len(text) - 7):
            piece = text[i:i + 8]
            for secret in secrets:
                if secret.find(piece) >= 0:
                    return True
        return False

    def status_code(self, text):
        """The RFC 3463 enhanced status code that starts an AUTH reply's text ("5.7.8",
        "4.7.0", "5.7.139"), or b"": digits and dots cannot carry a credential, the words
        after them can (an echoing server), so they are dropped (issue 9, defect 4)."""
        n = len(text)
        i = dots = 0
        if n and (text[0] == 50 or text[0] == 52 or text[0] == 53):  # class 2, 4 or 5
            i = 1
            while i < n and dots < 2 and text[i] == 46:  # "." then 1-3 digits, twice
                j = i + 1
                while j < n and j - i <= 3 and 48 <= text[j] <= 57:
                    j += 1
                if j == i + 1:
                    return b""
                dots += 1
                i = j
        if dots < 2 or i < n and text[i] != 32:
            return b""
        return text[:i]

    # --- the exchange, on protocol.Session's state (its phases _P_AUTH ... _P_AUTH_CANCEL).
    # Methods, so the session reaches them through its `auth` (a `from . import auth` in
    # the engine costs 24 B each time it runs); here, not in protocol.py, so a client
    # without credentials never holds their bytecode. Their names are ones the firmware
    # has already (next, fill, pos): a new name is heap on a board (docs/ENGINE.md).

    def next(self, s):
        """What the engine does next in an AUTH phase (protocol.Session._next's part): the
        AUTH line, the answer to a 334, or "*"."""
        if s.phase == _P_AUTH:
            return self.start(s)
        if s.phase == _P_AUTH_ANSWER:
            s.phase = _P_AUTH_REPLY
            if len(self.line) > _LINE_MAX - 2:
                self.pos = 0
                return _N_LONG
            s.line("AUTH", self.line, b"", b"")
        else:
            s.line("AUTH", b"*", b"", b"")  # _P_AUTH_CANCEL: RFC 4954 §4
        return _N_SEND

    def fill(self, s):
        """The next piece of an answer longer than a line (RFC 4954 §4: a token of KB) into
        tx, buffer by buffer: True while more follow, False once tx holds the last with its
        CRLF. Rare: slices allowed."""
        p = self.line
        m = len(p) - self.pos
        last = m <= len(s.tx) - 2
        if not last:
            m = len(s.tx)
        s.tx[:m] = memoryview(p)[self.pos:self.pos + m]
        self.pos += m
        s.tx_n = m
        if last:
            s.tx[m:m + 2] = b"\r\n"
            s.tx_n = m + 2
        return not last

    def start(self, s):
        """Choose the next mechanism and write its AUTH line into tx; what the engine does."""
        mech = choose(self.configured, s.caps & _CAP_AUTH, self.mechs,
                      (self.password is not None) | (self.token is not None) << 1, self.tried)
        if mech < 0:
            # Pinned and not offered (choose): said before any AUTH line goes out; the
            # engine then QUITs. (A method: its locals here would take start()'s frame off
            # the C stack, 152 B every AUTH; named as Session's, an interned name.)
            raise self.refusal(s, -mech)
        if mech == _AUTH_NONE:
            if self.tried:
                raise s.refusal(_AUTH_REPLY_ERROR, "Every AUTH mechanism was refused as too "
                                "weak")
            s.phase = _P_ENVELOPE
            return s._envelope()
        s.step = "AUTH"
        if not s.flags & _F_SECURE and not self.allow_plaintext:
            s.code = 0
            raise s.refusal(_PLAINTEXT_AUTH_REFUSED, "Not sending credentials over an "
                            "unencrypted connection: use TLS (tls=TLS_STARTTLS or "
                            "TLS_IMPLICIT, with cadata), or allow_plaintext_auth=True for a "
                            "trusted LAN relay")
        if self.answer_for != mech:
            # Made once a client, not once a send: a token is 1-2 KB of base64.
            self.answer = None
            if mech == _AUTH_PLAIN:
                self.answer = plain_response(self.username, self.password)
            elif mech == _AUTH_XOAUTH2:
                from . import secure

                self.answer = secure.xoauth2_response(self.username, self.token)
            self.answer_for = mech
        self.mech = mech
        self.rounds = 0
        s.phase = _P_AUTH_REPLY
        # §4: the initial response goes on the AUTH line when the line fits; a longer one (a
        # big token) waits for the server's 334.
        self.ir = self.answer is not None and \
            6 + len(name(mech)) + len(self.answer) < _LINE_MAX - 2
        s.line("AUTH", b"AUTH ", name(mech), b"")
        if self.ir:
            s.tx_n -= 2
            s.put(b" ")
            s.put(self.answer)
            s.put(b"\r\n")
        return _N_SEND

    def refusal(self, s, mech):
        """The SMTPError for a pinned mechanism the server's EHLO does not list. Only the
        names microsmtp knows can be given; a server lists others too (GSSAPI, NTLM)."""
        s.step = "AUTH"
        s.code = 0
        why = b""
        for m in _STRENGTH:
            if self.mechs & 1 << (m - 1):
                why += b" " + name(m)
        if why:
            why = "it offers%s" % why.decode()
        elif s.caps & _CAP_AUTH:
            why = "its AUTH line names no mechanism microsmtp knows"
        else:
            why = "its EHLO reply lists no AUTH" + (
                "" if s.flags & _F_SECURE else "; some servers offer it only over TLS")
        return s.refusal(_AUTHENTICATION_ERROR, "The server does not offer AUTH %s (%s); set "
                         "auth=AUTH_AUTO or a mechanism it offers" % (name(mech).decode(), why))

    def reply(self, s):
        """What the reply to an AUTH line, an answer or a "*" means."""
        mech = self.mech
        if s.phase == _P_AUTH_CANCEL:
            s.code = 0
            raise s.refusal(_AUTH_REPLY_ERROR, "Unexpected %s challenge" % name(mech).decode())
        if s.code == 235:
            s.phase = _P_ENVELOPE
        elif s.code == 334:
            self.rounds += 1
            # An unknown or undecodable challenge, or a never-ending exchange: cancel (§4)
            # and report.
            self.line = None if self.rounds > _AUTH_ROUNDS else self.challenge(s.text)
            s.phase = _P_AUTH_CANCEL if self.line is None else _P_AUTH_ANSWER
        elif s.code == 534:  # §6: too weak for this server: the next mechanism
            self.tried |= 1 << (mech - 1)  # MECH bit = 1 << (AUTH value - 1)
            s.phase = _P_AUTH
        else:
            # 535: bad credentials, never retried; 454/432: temporary. A fixed sentence and
            # the reply's enhanced code: the server's words in AUTH are never kept
            # (protocol.py's _text).
            raise s.refusal(_AUTH_REPLY_ERROR, "%s login refused%s" % (
                name(mech).decode(), "" if s.code != 535 else
                ": the token is expired or lacks the mail scope" if mech == _AUTH_XOAUTH2
                else ": wrong username or password (some providers want an app password)"))

    def challenge(self, challenge):
        """The line that answers a 334 challenge, or None (then "*" cancels)."""
        if self.mech == _AUTH_PLAIN:
            return self.answer  # a bare 334 after the initial response: again
        if self.mech == _AUTH_XOAUTH2:
            # A first 334 asks for a token too long for the AUTH line; otherwise a 334
            # carries base64 JSON saying why it was refused (not kept: server text in AUTH
            # never is): an empty line ends it, and a 535 follows.
            return self.answer if self.rounds == 1 and not self.ir else b""
        challenge = decode(challenge)
        if challenge is None:
            return None
        if self.mech == _AUTH_LOGIN:
            return login_answer(challenge, self.username, self.password)
        from . import secure

        return secure.cram_md5_answer(challenge, self.username, self.password)
