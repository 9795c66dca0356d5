# microsmtp: TLS and the stronger AUTH mechanisms, imported only by clients that use them
# (a plaintext LAN-relay client never loads this: RAM is the budget on a board). MIT licence.
# The session's TLS steps live here too, reached through protocol.Session.secure (set at a
# TLS client's first connection): STARTTLS, and what a failed handshake says.
import binascii
import hashlib

from micropython import const

from . import transport

# protocol.py's values (tests/test_units.py checks they match): results, TLS modes, phases,
# capability and flag bits, what _next() returns, status codes.
_ERR_TLS = const(-5)
_ERR_CERT = const(-6)
_TLS_IMPLICIT = const(2)
_P_EHLO = const(2)
_P_STARTTLS = const(4)
_P_TLS = const(5)
_CAP_STARTTLS = const(4)
_F_CAN_QUIT = const(1)
_F_SECURE = const(2)
_N_SEND = const(1)
_N_TLS = const(3)
_TLS_NOT_OFFERED = const(0xD0)
_TLS_REFUSED = const(0xD1)
_TLS_HANDSHAKE_ERROR = const(0xD2)
_TLS_CERT_ERROR = const(0xD3)
_TLS_INJECTION = const(0xD5)
# A PEM certificate's two marker lines (RFC 7468 §2); the base64 between them is the DER.
_PEM_BEGIN = const(b"-----BEGIN CERTIFICATE-----")
_PEM_END = const(b"-----END CERTIFICATE-----")


def ca_certs(cadata):
    """cadata as DER certificates: DER bytes, PEM text (str or bytes, one or more
    certificates), or the path of a CA file on the board's flash (DER or PEM)."""
    if isinstance(cadata, str):
        if cadata.find("-----BEGIN") < 0:
            try:
                with open(cadata, "rb") as f:
                    cadata = f.read()
            except OSError:
                raise ValueError("cadata: cannot read the CA file %r" % cadata)
        else:
            cadata = cadata.encode()
    if not isinstance(cadata, (bytes, bytearray, memoryview)):
        raise TypeError("cadata must be DER bytes, PEM text or a file path")
    data = bytes(cadata)
    if not data:
        raise ValueError("cadata is empty")  # [] would mean "no checks": never by accident
    if data.find(b"-----BEGIN") < 0:
        return [data]
    # MicroPython's ssl takes DER only: each PEM block is base64 between its two lines.
    certs = []
    i = 0
    while True:
        a = data.find(_PEM_BEGIN, i)
        if a < 0:
            break
        b = data.find(_PEM_END, a)
        if b < 0:
            raise ValueError("cadata: a PEM certificate has no END line")
        certs.append(binascii.a2b_base64(data[a + len(_PEM_BEGIN):b]))
        i = b + len(_PEM_END)
    if not certs:
        raise ValueError("cadata holds no certificate")
    return certs


# --- the session's TLS steps (protocol.Session calls them; s is the session). Their names
# are ones the firmware has already: a new name is heap on a board (docs/ENGINE.md).

def start(s):
    """protocol.Session._next's part: STARTTLS, or the wrap after its 220 (_N_TLS)."""
    if s.phase == _P_STARTTLS:
        s.line("STARTTLS", b"STARTTLS", b"", b"")
        return _N_SEND
    # RFC 3207 §4.2: forget what was learned in clear, ask again. Set before the wrap: one
    # that fails ends the session.
    s.flags |= _F_SECURE
    s.caps = s.max_size = 0
    if s.auth is not None:
        s.auth.mechs = 0
    s.phase = _P_EHLO
    return _N_TLS


def reply(s):
    """protocol.Session._handle's part: after EHLO in clear, STARTTLS is next; the reply to
    STARTTLS."""
    if s.phase != _P_STARTTLS:
        # RFC 3207 §6: a STARTTLS stripped from EHLO by a man in the middle is an attack:
        # never go on in clear.
        if not s.caps & _CAP_STARTTLS:
            raise s.refusal(_TLS_NOT_OFFERED, "TLS is required but the server does not offer "
                            "STARTTLS; nothing else was sent (tls=TLS_NONE for a plaintext "
                            "relay)")
        s.phase = _P_STARTTLS
        return
    if s.rx_start < s.rx_end:
        # Bytes after the 220 would pass for data sent over TLS (RFC 3207 §4: response
        # injection).
        s.flags &= ~_F_CAN_QUIT
        s.code = 0
        raise s.refusal(_TLS_INJECTION, "The server sent data after its 220 to STARTTLS "
                        "(response injection); the session was ended")
    if s.code != 220:
        raise s.refusal(_TLS_REFUSED, "STARTTLS refused; nothing else was sent")
    s.phase = _P_TLS


def failed(s, r):
    """protocol.Session._lost's part: _ERR_TLS or _ERR_CERT as an SMTPError."""
    # The handshake finishes inside the next read or write (transport.py, under that
    # phase's deadline), but it belongs to the connection or the STARTTLS.
    s.step = "CONNECT" if s.tls == _TLS_IMPLICIT else "STARTTLS"
    if r == _ERR_CERT:
        return s.refusal(_TLS_CERT_ERROR, "The certificate of %s was rejected: %s; check "
                         "cadata and the server name" % (s.host, s.os_error))
    return s.refusal(_TLS_HANDSHAKE_ERROR, "TLS handshake with %s failed (%s); is TLS on "
                     "this port (465: implicit, 587: STARTTLS)?" % (s.host, s.os_error))


def wrap(net, sock, s):
    """Wrap the non-blocking connection in TLS, verifying the certificate and the server's
    name unless insecure=True; the TLS socket, or _ERR_TLS / _ERR_CERT (os_error: why).
    The handshake runs in the reads and writes that follow (transport.py)."""
    ssl = getattr(net, "ssl", None)
    if ssl is None:
        import ssl  # on 1.23+ ports a small wrapper over the built-in tls module
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if not s.ca:  # insecure=True, asked for explicitly
            ctx.verify_mode = ssl.CERT_NONE
        else:
            # MicroPython's default is CERT_NONE: set it, never rely on it.
            ctx.verify_mode = ssl.CERT_REQUIRED
            for der in s.ca:
                ctx.load_verify_locations(cadata=der)
        # server_hostname: SNI, and the name the certificate must carry.
        # do_handshake_on_connect=False: MicroPython's wrap_socket() otherwise runs the
        # whole handshake in a C loop whose only bound is the socket timeout of each read,
        # restarted by every byte (a path dripping the handshake held a send for minutes).
        # Deferred on a non-blocking socket (documented for non-blocking sockets; what
        # asyncio.open_connection does), the handshake advances inside read() and write(),
        # which return None while it waits (modtls_mbedtls.c socket_read/socket_write:
        # WANT_READ/WANT_WRITE -> EAGAIN; poll() waits for the direction it needs). There
        # is no do_handshake(), and nothing says when it is over (cipher() dereferences
        # the session mbedTLS makes only at the end), so the session's next read (the
        # greeting, implicit TLS) or write (EHLO, STARTTLS) runs it, under that phase's
        # deadline.
        return ctx.wrap_socket(sock, server_hostname=s.host, do_handshake_on_connect=False)
    except ValueError as e:
        # Bad CA data (MicroPython: "invalid cert"); the shim reports it the same way.
        # (It called transport._reason, which never existed: an AttributeError escaped.)
        s.os_error = " ".join(str(e).split()).rstrip(".") or "invalid cert"
        return _ERR_CERT
    except OSError as e:
        s.os_error = transport._name(e)
        return _ERR_TLS


def xoauth2_response(username, token):
    # Google's and Microsoft's XOAUTH2: base64("user=U^Aauth=Bearer T^A^A").
    # One join, not a chain of copies: a real token is 1-2 KB.
    # (binascii here, not auth.b64: a TLS client without credentials never loads auth.py.)
    return binascii.b2a_base64(b"".join((b"user=", bytes(username), b"\x01auth=Bearer ",
                                         bytes(token), b"\x01\x01")))[:-1]


def cram_md5_answer(challenge, username, password):
    """RFC 2195: base64(user SP hex(HMAC-MD5(password, challenge))). HMAC (RFC 2104) by hand:
    MicroPython has hashlib.md5 but no hmac module."""
    key = bytes(password)
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(64):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    inner = hashlib.md5(bytes(ipad) + challenge).digest()
    digest = hashlib.md5(bytes(opad) + inner).digest()
    return binascii.b2a_base64(bytes(username) + b" " + binascii.hexlify(digest))[:-1]
