# Unit cases for the pieces under the session, run on CPython (test_units.py) and on the
# MicroPython unix port (the same file, compiled with mpy-cross). Plain functions and an
# explicit check(): asserts would vanish in the -O3 build the unix port runs.
import microsmtp
from microsmtp import auth, message


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r%r" % (exc.__name__, fn, args))


def case_date_header():
    check(message.date_value((2026, 11, 28, 9, 5, 7, 5, 332)) == "Sat, 28 Nov 2026 09:05:07 +0000",
          "RFC 5322 date")
    check(message.date_value((2000, 1, 1, 0, 0, 0, 5, 1)) is None, "unset clock: no Date")
    check(message.date_value((2020, 12, 31, 0, 0, 0, 3, 366)) is None, "2020 counts as unset")


def case_subject_words():
    subject = "Kessel \u00fcberhitzt: 92 \u00b0C \u20ac \u6e29\u5ea6 " * 4
    raw = subject.encode()
    out = b""
    import binascii
    for word in message.subject_words(subject):
        check(len(word) + 12 <= 75, "encoded word over 75 characters")
        part = binascii.a2b_base64(word)
        part.decode()  # each word is whole UTF-8 characters: decodes alone
        out += part
    check(out == raw, "words join back to the subject")
    check(message.encoded_subject_needed("caf\u00e9"), "non-ASCII needs encoding")
    check(message.encoded_subject_needed("=?UTF-8?Q?=0A?="), "an encoded-word look-alike")
    check(not message.encoded_subject_needed("Door opened"), "plain ASCII stays")


def case_scan_body():
    check(message.scan_body("plain\nascii\r\n") == (True, True), "ascii")
    check(message.scan_body(b"caf\xc3\xa9\n") == (False, True), "8-bit bytes")
    check(message.scan_body("caf\u00e9") == (False, True), "8-bit str")
    check(message.scan_body("x" * 998) == (True, True), "998 fits")
    check(message.scan_body("a\n" + "x" * 999 + "\nb") == (True, False), "999 is too long")
    check(message.scan_body(b"x" * 999) == (True, False), "bytes too long")
    check(message.scan_body(memoryview(b"abc")) is None, "memoryview: not scanned")
    check(message.scan_body("") == (True, True), "empty")
    # RFC 2045 §2.7-2.8: a NUL cannot go as 7bit or 8bit (issue 9, defect 6).
    check(message.scan_body("a\x00b") == (True, False), "NUL in str")
    check(message.scan_body(b"caf\xc3\xa9\x00") == (False, False), "NUL in bytes")


def _scan_file(data, limit=None, skip=0):
    import io

    f = io.BytesIO(data)
    f.read(skip)  # a file handed over mid-way (the outbox's, after its JSON line)
    src = message.BodySource()
    src.reset(f, limit)
    got = src.scan(bytearray(16))  # small chunks: lines cross them
    rest = bytearray(len(data))
    n = src.readinto(rest)
    return got, bytes(rest[:n])


def case_scan_file_before_mail():
    """A body that can be read twice is classified like an in-memory one, then rewound
    (issue 9, defect 3a: a long line in a file used to cut the mail mid-DATA)."""
    check(_scan_file(b"short\nlines\r\n") == ((True, True), b"short\nlines\r\n"), "7bit")
    check(_scan_file(b"a\n" + b"x" * 999 + b"\nb")[0] == (True, False), "999 across chunks")
    check(_scan_file(b"x" * 998 + b"\r\n" + b"y" * 998)[0] == (True, True), "998 fits")
    check(_scan_file(b"x" * 600 + b"\r" + b"y" * 600)[0] == (True, True), "CR ends a line")
    check(_scan_file(b"caf\xc3\xa9\n")[0] == (False, True), "8-bit")
    check(_scan_file(b"ok\n\x00\n")[0] == (True, False), "NUL")
    got, rest = _scan_file(b"HEAD\nbody " + b"z" * 1200, limit=8, skip=5)
    check(got == (True, True) and rest == b"body zzz", "the limit and the start are kept")
    src = message.BodySource()
    src.reset(iter([b"x" * 2000]), None)
    check(src.scan(bytearray(16)) is None, "an iterator cannot be read twice")


_PARSER = [None]


def _parse_reply(reply):
    """Feed `reply` to Session._reply through a 512-byte rx, byte by byte copies (no
    allocation on this side); the session after it and what the parse allocated."""
    import micropython

    s = _PARSER[0]
    if s is None:  # one session for every parse: this harness shares a small heap
        s = _PARSER[0] = microsmtp.Client("mail.test", from_address="dev@example.org",
                                          net=object())._session
        s.rx = bytearray(512)
        s.rx_mv = memoryview(s.rx)
    s.rx_start = s.rx_end = s.caps = s.mechs = 0
    s.step = "EHLO"
    total = getattr(micropython, "mem_total", None)  # the unix port's allocation count
    gen = s._reply(1000)
    pos = 0
    before = total() if total else 0
    try:
        r = gen.send(None)
        while True:
            n = 0
            while n < 128 and pos < len(reply) and s.rx_end + n < 512:
                s.rx[s.rx_end + n] = reply[pos]
                n += 1
                pos += 1
            r = gen.send(n)
    except StopIteration:
        pass
    return s, (total() - before if total else 0), r


def case_input_checks():
    bad = ("a\r\n@example.org", "a@example.org\r\nRCPT TO:<x@y>", "a\x00@example.org",
           "a b@example.org", "<a@example.org>", "no-at-sign", "@example.org", "a@",
           "a@exa mple.org", "caf\u00e9@example.org", "x" * 65 + "@example.org",
           "a@" + "d" * 250 + ".org", "a@[192.0.2.1")
    for addr in bad:
        raises(ValueError, message.check, addr, "recipient", message.ADDRESS)
    for addr in ("a@example.org", "first.last+tag@sub.example.org", "a@[192.0.2.1]",
                 "x" * 64 + "@example.org"):
        message.check(addr, "recipient", message.ADDRESS)
    for text in ("hi\r\nBcc: x@y", "tab\there", "del\x7f", "nul\x00"):
        raises(ValueError, message.check, text, "subject")
    raises(TypeError, message.check, b"bytes", "subject")
    message.check("Boiler at 92 \u00b0C", "subject", message.TEXT, 4096)


def case_client_rejects_bad_config():
    def client(**kw):
        args = {"from_address": "dev@example.org"}
        args.update(kw)
        return microsmtp.Client(args.pop("server", "mail.test"), args.pop("port", 25), **args)

    raises(ValueError, client, from_address="dev@example.org\r\nX: y")
    raises(ValueError, client, username="alice\r\n", password="x")
    raises(ValueError, client, username="alice", password="pa\nss")
    raises(ValueError, client, password="orphan")
    raises(ValueError, client, client_domain="dev example.org")
    raises(ValueError, client, server="mail.test\r\n")
    raises(ValueError, client, port=0)
    raises(ValueError, client, auth=7)
    raises(ValueError, client, timeouts={"greting": 5})
    raises(ValueError, client, timeouts={"message": 0})
    raises(TypeError, client, pool=[bytearray(536)])
    c = client(username="alice", password="s3cret")
    check("s3cret" not in repr(c), "repr shows no password")
    raises(ValueError, c.send, [], "s", "b")
    raises(ValueError, c.send, "ops@example.org", "s", "b", 3)
    raises(TypeError, c.send, "ops@example.org", "s", 12345)
    check(c.pool.available() == c.pool.count, "nothing taken on bad input")
    c.close()
    e = raises(microsmtp.SMTPError, c.send, "ops@example.org", "s", "b")
    check(e.status == microsmtp.CLIENT_NOT_INITIALIZED, "closed client")
    check(c.mail_send("ops@example.org", 2, "s", "b") == microsmtp.CLIENT_NOT_INITIALIZED,
          "mail_send returns the status")


def case_buffer_pool():
    raises(ValueError, microsmtp.BufferPool, 0)
    raises(ValueError, microsmtp.BufferPool, 2, 100)
    pool = microsmtp.BufferPool(2, 512)
    a = pool.acquire()
    b = pool.acquire()
    check(pool.available() == 0, "both taken")
    e = raises(microsmtp.SMTPError, pool.acquire)
    check(e.status == microsmtp.PACKET_ALLOCATE_ERROR, "exhaustion is a status, not MemoryError")
    pool.release(a)
    pool.release(a)  # a double release (NetX regression 9) changes nothing
    pool.release(bytearray(512))  # nor does a stranger's buffer
    check(pool.available() == 1, "double release ignored")
    pool.release(b)
    check(pool.available() == 2, "all back")


def case_error_classification():
    E = microsmtp.SMTPError
    check(E(0xA9, "x.", "MAIL", 451).temporary, "4xx is temporary")
    check(not E(0xA9, "x.", "MAIL", 550).temporary, "5xx is permanent")
    check(E(0xAA, "x.", "RCPT", 552).temporary, "552 to RCPT is 452")
    check(not E(0xAB, "x.", "MESSAGE", 552).temporary, "552 after DATA is permanent")
    check(E(microsmtp.TIMEOUT_ERROR, "x.", "EHLO").temporary, "timeouts are temporary")
    check(E(microsmtp.DELIVERY_UNKNOWN, "x.", "MESSAGE").temporary, "unknown: retry may dup")
    check(not E(microsmtp.INVALID_PARAM, "x.").temporary, "bad input is not")
    check(E(microsmtp.PACKET_ALLOCATE_ERROR, "x.", "POOL").temporary, "no memory now")
    check(str(E(0xA7, "One sentence.")) == "One sentence.", "str is the sentence")


def case_auth_fallback_rules():
    P, L, N = auth.AUTH_PLAIN, auth.AUTH_LOGIN, auth.AUTH_NONE
    mp, ml, mc = auth.MECH_PLAIN, auth.MECH_LOGIN, auth.MECH_CRAM_MD5
    rules = (  # configured, AUTH listed, mechanisms offered, credentials -> used
        (P, False, 0, True, P),  # guide 1: nothing listed -> PLAIN
        (L, False, 0, True, P),
        (N, True, mp | ml, True, P),  # guide 2: NONE but the server has AUTH -> PLAIN
        (N, True, ml, True, L),  # ... and then guide 3
        (N, False, 0, True, N),
        (N, True, mp, False, N),  # no credentials: nothing to send
        (P, True, mp, False, N),
        (L, True, mp, True, P),  # guide 3
        (P, True, ml, True, L),
        (L, True, mc, True, P),  # NetX regression 3: only unknown names -> PLAIN
        (L, True, mp | ml, True, L),
        (P, True, mp | ml, True, P),
    )
    for configured, listed, offered, creds, want in rules:
        got = auth.choose(configured, listed, offered, creds)
        check(got == want, "choose%r -> %r" % ((configured, listed, offered, creds), got))


def case_auth_strongest_first():
    A, N = auth.AUTH_AUTO, auth.AUTH_NONE
    P, L, C, X = auth.AUTH_PLAIN, auth.AUTH_LOGIN, auth.AUTH_CRAM_MD5, auth.AUTH_XOAUTH2
    mp, ml, mc, mx = auth.MECH_PLAIN, auth.MECH_LOGIN, auth.MECH_CRAM_MD5, auth.MECH_XOAUTH2
    every = mp | ml | mc | mx
    rules = (  # configured, offered, creds (1 password, 2 token), tried -> used
        (A, every, 1, 0, C),  # CRAM-MD5 never sends the password
        (A, every, 3, 0, X),  # a token beats a password
        (A, every, 2, 0, X),
        (A, mp | ml, 1, 0, P),
        (A, ml, 1, 0, L),
        (A, 0, 1, 0, P),  # nothing listed: guide rule 1
        (A, 0, 2, 0, X),
        (A, every, 1, mc, P),  # 534 to CRAM-MD5: the next one
        (A, every, 1, mc | mp, L),
        (A, mc | mp | ml, 1, mc | mp | ml, N),  # all too weak: give up
        (A, every, 0, 0, N),  # nothing to authenticate with
        (C, mp, 1, 0, C),  # pinned: used as asked
        (X, mp, 2, 0, X),
        (C, every, 1, mc, N),  # a pinned mechanism is not swapped after 534
    )
    for configured, offered, creds, tried, want in rules:
        got = auth.choose(configured, bool(offered), offered, creds, tried)
        check(got == want, "choose%r -> %r" % ((configured, offered, creds, tried), got))


def case_login_prompts():
    user, password = memoryview(b"alice"), memoryview(b"s3cret")
    for prompt, want in ((b"VXNlcm5hbWU6", b"YWxpY2U="), (b"dXNlcm5hbWU6", b"YWxpY2U="),
                         (b"VXNlciBOYW1lAA==", b"YWxpY2U="), (b"UGFzc3dvcmQ6", b"czNjcmV0"),
                         (b"cGFzc3dvcmQ6", b"czNjcmV0")):
        check(auth.login_answer(auth.decode(prompt), user, password) == want, prompt)
    check(auth.login_answer(auth.decode(b"SGVsbG8/"), user, password) is None, "unknown")
    check(auth.decode(b"!!not base64!!") is None, "undecodable challenge")
    check(auth.decode(b"") == b"", "an empty challenge is valid")
    check(auth.plain_response(user, password) == b"YWxpY2UAYWxpY2UAczNjcmV0", "PLAIN")


def _encode(body_chunks, cte):
    """Run the body path (BodySource + BodyEncoder) as the session does, small buffers."""
    src = message.BodySource()
    src.reset(iter(body_chunks), None)
    enc = message.BodyEncoder()
    out = bytearray(64)
    scratch = bytearray(16)
    enc.start(cte, scratch, out)
    wire = b""
    while True:
        n = src.readinto(scratch)
        if not n:
            break
        enc.chunk()
        while enc.i < n:
            enc.encode(n)
            if enc.i < n:
                wire += bytes(out[:enc.o])
                enc.o = 0
    if enc.o > len(out) - 5:
        wire += bytes(out[:enc.o])
        enc.o = 0
    return wire + bytes(out[:enc.finish(enc.o)])


def case_body_chunk_boundaries():
    # CRLF split across chunks is one line end; a dot after a split line end is stuffed.
    check(_encode([b"a\r", b"\n.b\r", b"\r\n", b"c"], 0) == b"a\r\n..b\r\n\r\nc\r\n.\r\n",
          "split CRLF")
    one_byte = [bytes([c]) for c in b"x\n.\n..\r.y\r\n\n."]
    check(_encode(one_byte, 0) == b"x\r\n..\r\n...\r\n..y\r\n\r\n..\r\n.\r\n", "byte by byte")
    # A space that ends a chunk may end a line, so it is encoded (=20): valid either way.
    check(_encode(["caf\u00e9 = ", "ok \n"], 2) == b"caf=C3=A9 =3D=20ok=20\r\n.\r\n", "QP")
    qp = _encode([b"z" * 200], 2)
    check(all(len(line) <= 76 for line in qp.split(b"\r\n")), "QP lines <= 76")
    check(qp.count(b"=\r\n") == 2, "QP soft breaks")
    src = message.BodySource()
    src.reset(b"HELLO WORLD", 5)
    buf = bytearray(16)
    check(src.readinto(buf) == 5 and buf[:5] == b"HELLO" and src.readinto(buf) == 0,
          "body_length limits what is read")


def case_ehlo_parsed_in_place():
    """Issue 9, defect 7: a 39-line EHLO reply allocates no more than a 3-line one (the
    keywords are read in rx); the capabilities come out the same."""
    short = b"250-mail.test\r\n250-8BITMIME\r\n250 AUTH=PLAIN cram-md5 XOAUTH2 login\r\n"
    cut = short.index(b"250 AUTH")
    line = bytearray(b"250-X-PAD-00 " + b"x" * 200 + b"\r\n")
    # 36 more lines of 215 bytes (over a 128-byte read each), made in one allocation.
    long = bytearray(len(short) + 36 * len(line))
    long[:cut] = short[:cut]
    for i in range(36):
        line[10] = 48 + i // 10
        line[11] = 48 + i % 10
        long[cut + i * len(line):cut + (i + 1) * len(line)] = line
    long[cut + 36 * len(line):] = short[cut:]
    s1, small, _ = _parse_reply(short)
    s2, big, _ = _parse_reply(long)
    check(s1.code == s2.code == 250, "parsed")
    check(s1.caps == s2.caps == 1 | 32, "8BITMIME and AUTH: %r" % s2.caps)
    check(s1.mechs == s2.mechs == auth.MECH_PLAIN | auth.MECH_CRAM_MD5 | auth.MECH_XOAUTH2
          | auth.MECH_LOGIN, "the pre-RFC AUTH= form, any case: %r" % s2.mechs)
    check(big - small <= 16, "a longer EHLO reply allocated %d bytes more" % (big - small))
    s3, _, _ = _parse_reply(b"250-x\r\n250-  AUTH  LOGIN\r\n250-SIZEX\r\n250 STARTTLS\r\n")
    check(s3.caps == 32 | 4 and s3.mechs == auth.MECH_LOGIN, "spaces, unknown words")


CASES = [name for name in sorted(globals()) if name.startswith("case_")]


def run(name):
    globals()[name]()
