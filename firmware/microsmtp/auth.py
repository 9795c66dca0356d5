# microsmtp: SASL mechanisms for SMTP AUTH (RFC 4954). MIT licence.
import binascii

from micropython import const

AUTH_LOGIN = const(1)
AUTH_PLAIN = const(3)
AUTH_NONE = const(0xFFFF)

# Bits for the mechanisms a server lists after AUTH in its EHLO reply.
MECH_PLAIN = const(1)
MECH_LOGIN = const(2)
MECH_CRAM_MD5 = const(4)
MECH_XOAUTH2 = const(8)
MECH_BITS = {b"PLAIN": MECH_PLAIN, b"LOGIN": MECH_LOGIN, b"CRAM-MD5": MECH_CRAM_MD5,
             b"XOAUTH2": MECH_XOAUTH2}

NAMES = {AUTH_LOGIN: "LOGIN", AUTH_PLAIN: "PLAIN", AUTH_NONE: "NONE"}


def b64(data):
    # MicroPython's b2a_base64 always ends with "\n"; CPython's too by default.
    return binascii.b2a_base64(data)[:-1]


def choose(configured, listed, offered, have_credentials):
    """The mechanism to use, by the NetX Duo SMTP Client user guide's fallback rules.

    listed: the server's EHLO had an AUTH line; offered: MECH_* bits it named."""
    if not have_credentials:
        return AUTH_NONE  # nothing to authenticate with (documented)
    if configured == AUTH_NONE:
        if not listed:
            return AUTH_NONE
        configured = AUTH_PLAIN  # guide: NONE, server supports AUTH -> switch to PLAIN
    known = offered & (MECH_PLAIN | MECH_LOGIN)
    if not known:
        return AUTH_PLAIN  # guide: no usable type listed (or none at all) -> PLAIN
    if configured == AUTH_LOGIN and not offered & MECH_LOGIN:
        return AUTH_PLAIN  # guide: LOGIN configured, only PLAIN listed
    if configured == AUTH_PLAIN and not offered & MECH_PLAIN:
        return AUTH_LOGIN  # guide: PLAIN configured, only LOGIN listed
    return configured


def plain_response(username, password):
    # RFC 4616: authzid NUL authcid NUL passwd; NetX sends the user as both identities.
    user = bytes(username)
    return b64(user + b"\0" + user + b"\0" + bytes(password))


def login_answer(challenge, username, password):
    """Answer to an AUTH LOGIN prompt, or None for a prompt that is neither.

    Servers word them differently ("Username:", "User Name", "password:"), so the decoded
    prompt is matched on "user" / "pass", in any case."""
    try:
        prompt = binascii.a2b_base64(challenge).lower()
    except ValueError:
        return None
    if prompt.find(b"user") >= 0:
        return b64(bytes(username))
    if prompt.find(b"pass") >= 0:
        return b64(bytes(password))
    return None
