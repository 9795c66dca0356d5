# microsmtp: SASL mechanisms for SMTP AUTH (RFC 4954). MIT licence.
import binascii

from micropython import const

# NetX Duo's values for LOGIN, CRAM-MD5, PLAIN and NONE; XOAUTH2 and AUTO are microsmtp's.
AUTH_LOGIN = const(1)
AUTH_CRAM_MD5 = const(2)
AUTH_PLAIN = const(3)
AUTH_XOAUTH2 = const(4)
AUTH_AUTO = const(0)  # the strongest mechanism both sides support
AUTH_NONE = const(0xFFFF)

# Bits for the mechanisms a server lists after AUTH in its EHLO reply: 1 << (AUTH_* - 1).
MECH_LOGIN = const(1)
MECH_CRAM_MD5 = const(2)
MECH_PLAIN = const(4)
MECH_XOAUTH2 = const(8)
# The names as the server lists them and as the AUTH command says them, by AUTH_* - 1
# (protocol.py's _MECHS holds the same, for the EHLO reply).
_NAMES = const((b"LOGIN", b"CRAM-MD5", b"PLAIN", b"XOAUTH2"))
# Strongest first: a token never shows the password; CRAM-MD5 sends only a keyed digest.
_STRENGTH = const((AUTH_XOAUTH2, AUTH_CRAM_MD5, AUTH_PLAIN, AUTH_LOGIN))



def name(mech):
    """b"PLAIN" for AUTH_PLAIN, and so on."""
    return _NAMES[mech - 1]


def b64(data):
    # MicroPython's b2a_base64 always ends with "\n"; CPython's too by default.
    return binascii.b2a_base64(data)[:-1]


def choose(configured, listed, offered, creds, tried=0):
    """The mechanism to use next, or AUTH_NONE.

    listed: the server's EHLO had an AUTH line; offered: the MECH_* bits it named;
    creds: 1 a password, 2 a token, 3 both; tried: MECH_* bits already refused with 534
    ("too weak": try the next one)."""
    have_password = creds & 1
    have_token = creds & 2
    if not creds:
        return AUTH_NONE  # nothing to authenticate with (documented)
    if configured == AUTH_AUTO:
        for mech in _STRENGTH:
            bit = 1 << (mech - 1)
            if offered & bit and not tried & bit and (
                    have_token if mech == AUTH_XOAUTH2 else have_password):
                return mech
        if tried:
            return AUTH_NONE  # every mechanism we could use was refused as too weak
        # Nothing usable listed: guide rule 1 says PLAIN; with only a token, XOAUTH2.
        return AUTH_PLAIN if have_password else AUTH_XOAUTH2
    if tried:
        return AUTH_NONE  # a pinned mechanism is not swapped for another after 534
    if configured == AUTH_CRAM_MD5 or configured == AUTH_XOAUTH2:
        return configured
    # The NetX Duo user guide's rules for PLAIN, LOGIN and NONE.
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
