"""SMTP session scenarios, written once as data and run by two runners: pytest on CPython
(test_scenarios.py) and the MicroPython unix port (mp_scenarios.py). Each scenario is a
script of server bytes ("S"; "S1" hands them over one byte per read), the exact client
bytes expected ("C", or "C*" = anything up to and including the given end), and faults
("stall", "close", "reset", "wfail")."""

import base64

GREETING = "220 mail.test ESMTP ready\r\n"
EHLO = "EHLO dev.example.org\r\n"
CAPS = ("250-mail.test greets you\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
        "250-AUTH PLAIN LOGIN\r\n250 SIZE 10240000\r\n")
CAPS_NOAUTH = "250-mail.test\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n"
USER, PASSWORD = "alice", "s3cret"
PLAIN_IR = base64.b64encode(b"alice\0alice\0s3cret").decode()
B64_USER = base64.b64encode(b"alice").decode()
B64_PASS = base64.b64encode(b"s3cret").decode()
CREDS = {"username": USER, "password": PASSWORD}
END = "\r\n.\r\n"


def S(text):
    return ["S", text]


def C(text):
    return ["C", text]


QUIT = [C("QUIT\r\n"), S("221 bye\r\n")]


def envelope(to=("ops@example.org",), mail="MAIL FROM:<dev@example.org>\r\n"):
    ev = [C(mail), S("250 ok\r\n")]
    for rcpt in to:
        ev += [C("RCPT TO:<%s>\r\n" % rcpt), S("250 ok\r\n")]
    return ev + [C("DATA\r\n"), S("354 go ahead\r\n"), ["C*", END], S("250 queued\r\n")]


def session(caps=CAPS_NOAUTH, auth=(), **kw):
    return [S(GREETING), C(EHLO), S(caps)] + list(auth) + envelope(**kw) + QUIT


PLAIN_OK = [C("AUTH PLAIN %s\r\n" % PLAIN_IR), S("235 2.7.0 ok\r\n")]
# The follow-up send that proves a client reusable, by whether it authenticates.
OK_SCRIPTS = {"noauth": session(), "auth": session(auth=PLAIN_OK)}

# --- every step x {success, 4xx, 5xx, malformed, close, stall} ------------------------------
# (step, the client's line that gets the reply, the status for a 4xx/5xx there, 4xx, 5xx)
STEPS = [
    ("GREETING", None, "GREET_REPLY_ERROR", "421 busy\r\n", "554 go away\r\n"),
    ("EHLO", EHLO, "HELLO_REPLY_ERROR", "451 try later\r\n", "550 not you\r\n"),
    ("AUTH", "AUTH PLAIN %s\r\n" % PLAIN_IR, "AUTH_REPLY_ERROR", "454 4.7.0 temp\r\n",
     "535 5.7.8 bad credentials\r\n"),
    ("MAIL", "MAIL FROM:<dev@example.org>\r\n", "MAIL_REPLY_ERROR", "451 4.3.0 later\r\n",
     "550 5.7.1 relaying denied\r\n"),
    ("RCPT", "RCPT TO:<ops@example.org>\r\n", "RCPT_REPLY_ERROR", "450 4.2.1 mailbox busy\r\n",
     "550 5.1.1 no such user\r\n"),
    ("DATA", "DATA\r\n", "DATA_REPLY_ERROR", "451 4.3.0 later\r\n", "554 5.5.1 no valid rcpt\r\n"),
    ("MESSAGE", END, "MESSAGE_REPLY_ERROR", "452 4.3.1 full\r\n", "552 5.3.4 too big\r\n"),
    ("QUIT", "QUIT\r\n", None, "421 bye anyway\r\n", "500 what\r\n"),
]


def _full_auth_session():
    return session(caps=CAPS, auth=PLAIN_OK)


def _cut(step_line, step):
    """The auth session up to and including the client line that `step` replies to."""
    full = _full_auth_session()
    if step == "GREETING":
        return []
    for i, ev in enumerate(full):
        if ev[1] == step_line and ev[0] in ("C", "C*"):
            return full[:i + 1]
    raise KeyError(step)


def matrix():
    out = []
    for step, line, status, r4, r5 in STEPS:
        head = _cut(line, step)
        after_fail = list(QUIT)
        if step == "RCPT":
            after_fail = [C("RSET\r\n"), S("250 reset\r\n")] + QUIT
        for outcome in ("4xx", "5xx", "malformed", "close", "stall"):
            sc = {"name": "%s_%s" % (step.lower(), outcome), "client": dict(CREDS)}
            if step != "QUIT":
                sc["step"] = step
            else:  # the mail is already accepted: any end of QUIT is success
                reply = {"4xx": [S(r4)], "5xx": [S(r5)], "malformed": [S("garbage\r\n")],
                         "close": [["close"]], "stall": [["stall"]]}[outcome]
                sc.update(script=head + reply, expect="SUCCESS")
                out.append(sc)
                continue
            if outcome in ("4xx", "5xx"):
                reply = r4 if outcome == "4xx" else r5
                code = int(reply[:3])
                tail = [] if code == 421 else after_fail  # RFC 5321 §3.8: 421 -> just close
                sc.update(script=head + [S(reply)] + tail, expect=status, reply_code=code,
                          temporary=outcome == "4xx")
            elif outcome == "malformed":
                sc.update(script=head + [S("garbage\r\n")] + QUIT, expect="SERVER_ERROR_REPLY")
            elif outcome == "close":
                sc.update(script=head + [["close"]], temporary=True,
                          expect="DELIVERY_UNKNOWN" if step == "MESSAGE" else "CONNECTION_CLOSED")
            else:
                sc.update(script=head + [["stall"]], temporary=True,
                          expect="DELIVERY_UNKNOWN" if step == "MESSAGE" else "TIMEOUT_ERROR")
            out.append(sc)
        out.append({"name": "%s_success" % step.lower(), "client": dict(CREDS),
                    "script": _full_auth_session(), "expect": "SUCCESS"})
    return out


# --- the nine NetX Duo regression scenarios (NETX-REFERENCE.md) ------------------------------
NETX_CAPS = ("250-mail.test\r\n250-ETRN\r\n250-AUTH LOGIN CRAM-MD5 PLAIN\r\n250-8BITMIME\r\n"
             "250 SIZE\r\n")
NETX_GREETING = "220-mail.test ESMTP\r\n220-welcome\r\n220 ready\r\n"


def netx():
    plain_bare = [C("AUTH PLAIN %s\r\n" % PLAIN_IR), S("334 \r\n"), C(PLAIN_IR + "\r\n"),
                  S("235 ok\r\n")]
    login = [C("AUTH LOGIN\r\n"), S("334 VXNlcm5hbWU6\r\n"), C(B64_USER + "\r\n"),
             S("334 UGFzc3dvcmQ6\r\n"), C(B64_PASS + "\r\n"), S("235 ok\r\n")]
    body = envelope()
    return [
        {"name": "netx1_plain", "client": dict(CREDS),
         "script": [S(NETX_GREETING), C(EHLO), S(NETX_CAPS)] + plain_bare + body
         + [C("QUIT\r\n"), S("221 bye\r\n\0\0\0\0\0\0")], "expect": "SUCCESS"},
        {"name": "netx2_login", "client": dict(CREDS, auth="LOGIN"),
         "script": [S(GREETING), C(EHLO), S(NETX_CAPS)] + login + body + QUIT,
         "expect": "SUCCESS"},
        {"name": "netx3_unknown_mechs_login_falls_back_to_plain",
         "client": dict(CREDS, auth="LOGIN"),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250 AUTH MOGIN CRAM-MD5 QLAIN\r\n"),
                    C("AUTH PLAIN %s\r\n" % PLAIN_IR), S("235 ok\r\n")] + body + QUIT,
         "expect": "SUCCESS"},
        {"name": "netx4_none_no_auth", "client": {"auth": "NONE"},
         "script": session(), "expect": "SUCCESS"},
        {"name": "netx5_ehlo_split", "client": dict(CREDS),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-AUTH PLAIN\r\n250-SIZE\r\n"),
                    S("250 SIZE\r\n")] + PLAIN_OK + body + QUIT, "expect": "SUCCESS"},
        {"name": "netx6_auth_in_second_read", "client": dict(CREDS, auth="LOGIN"),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-SIZE\r\n"),
                    S("250-  AUTH LOGIN\r\n250 8BITMIME\r\n")] + login + body + QUIT,
         "expect": "SUCCESS"},
        {"name": "netx7_ehlo_never_ends", "client": dict(CREDS),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-SIZE\r\n"), ["stall"]],
         "expect": "TIMEOUT_ERROR", "step": "EHLO"},
        {"name": "netx8_nine_digit_greeting", "client": dict(CREDS),
         "script": [S("222222220-mail.test\r\n")] + QUIT, "expect": "SERVER_ERROR_REPLY",
         "step": "GREETING"},
        {"name": "netx9_greeting_without_crlf_then_close", "client": dict(CREDS),
         "script": [S("2200"), ["close"]], "expect": "CONNECTION_CLOSED", "step": "GREETING"},
    ]


# --- further behaviour -------------------------------------------------------------------
def more():
    ehlo_then = [S(GREETING), C(EHLO)]
    login = [C("AUTH LOGIN\r\n"), S("334 VXNlcm5hbWU6\r\n"), C(B64_USER + "\r\n"),
             S("334 UGFzc3dvcmQ6\r\n"), C(B64_PASS + "\r\n"), S("235 ok\r\n")]
    two = ("a@example.org", "b@example.org")
    return [
        {"name": "helo_fallback", "script": ehlo_then + [
            S("502 5.5.2 what\r\n"), C("HELO dev.example.org\r\n"), S("250 hi\r\n")]
            + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "helo_fallback_fails", "script": ehlo_then + [
            S("500 what\r\n"), C("HELO dev.example.org\r\n"), S("550 no\r\n")] + QUIT,
         "expect": "HELLO_REPLY_ERROR", "step": "HELO", "reply_code": 550},
        {"name": "ehlo_5xx_caps_never_parsed", "client": dict(CREDS, auth="NONE"),
         "script": ehlo_then + [S("550-AUTH PLAIN\r\n550 8BITMIME\r\n")] + QUIT,
         "expect": "HELLO_REPLY_ERROR", "reply_code": 550},
        {"name": "auth_old_style_equals", "client": dict(CREDS, auth="LOGIN"),
         "script": ehlo_then + [S("250-mail.test\r\n250 AUTH=LOGIN\r\n")] + login
         + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_plain_configured_only_login_offered", "client": dict(CREDS),
         "script": ehlo_then + [S("250-mail.test\r\n250 AUTH LOGIN\r\n")] + login
         + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_login_configured_only_plain_offered", "client": dict(CREDS, auth="LOGIN"),
         "script": ehlo_then + [S("250-mail.test\r\n250 AUTH PLAIN\r\n")] + PLAIN_OK
         + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_none_configured_server_offers_auth", "client": dict(CREDS, auth="NONE"),
         "script": ehlo_then + [S(CAPS)] + PLAIN_OK + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_none_without_credentials_skips", "client": {"auth": "NONE"},
         "script": ehlo_then + [S(CAPS)] + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_plain_no_auth_listed_still_plain", "client": dict(CREDS),
         "script": ehlo_then + [S(CAPS_NOAUTH)] + PLAIN_OK + envelope() + QUIT,
         "expect": "SUCCESS"},
        {"name": "auth_login_unknown_prompt_cancelled", "client": dict(CREDS, auth="LOGIN"),
         "script": ehlo_then + [S(CAPS), C("AUTH LOGIN\r\n"), S("334 SGVsbG8/\r\n"),
                                C("*\r\n"), S("501 cancelled\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "step": "AUTH"},
        {"name": "auth_endless_334_cancelled", "client": dict(CREDS),
         "script": ehlo_then + [S(CAPS), C("AUTH PLAIN %s\r\n" % PLAIN_IR)]
         + [S("334 \r\n"), C(PLAIN_IR + "\r\n")] * 3
         + [S("334 \r\n"), C("*\r\n"), S("501 cancelled\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "step": "AUTH"},
        {"name": "auth_reply_echoing_credentials_is_scrubbed", "client": dict(CREDS),
         "script": ehlo_then + [S(CAPS), C("AUTH PLAIN %s\r\n" % PLAIN_IR),
                                S("500 unknown: AUTH PLAIN %s s3cret\r\n" % PLAIN_IR)] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 500},
        {"name": "rcpt_251_accepted", "script": ehlo_then + [S(CAPS_NOAUTH)] + [
            C("MAIL FROM:<dev@example.org>\r\n"), S("250 ok\r\n"),
            C("RCPT TO:<ops@example.org>\r\n"), S("251 will forward\r\n"), C("DATA\r\n"),
            S("354 go\r\n"), ["C*", END], S("250 ok\r\n")] + QUIT, "expect": "SUCCESS"},
        {"name": "rcpt_partial_refusal_still_delivers", "send": {"to": list(two)},
         "script": ehlo_then + [S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"),
                                S("250 ok\r\n"), C("RCPT TO:<a@example.org>\r\n"),
                                S("550 5.1.1 unknown\r\n"), C("RCPT TO:<b@example.org>\r\n"),
                                S("250 ok\r\n"), C("DATA\r\n"), S("354 go\r\n"), ["C*", END],
                                S("250 ok\r\n")] + QUIT,
         "expect": "RCPT_REPLY_ERROR", "refused": [["a@example.org", 550]]},
        {"name": "rcpt_all_refused_rset_no_data", "send": {"to": list(two)},
         "script": ehlo_then + [S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"),
                                S("250 ok\r\n"), C("RCPT TO:<a@example.org>\r\n"),
                                S("550 5.1.1 unknown\r\n"), C("RCPT TO:<b@example.org>\r\n"),
                                S("452 4.5.3 too many\r\n"), C("RSET\r\n"), S("250 ok\r\n")]
         + QUIT, "expect": "RCPT_REPLY_ERROR",
         "refused": [["a@example.org", 550], ["b@example.org", 452]]},
        {"name": "rcpt_421_no_rset_no_quit", "script": ehlo_then + [
            S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"), S("250 ok\r\n"),
            C("RCPT TO:<ops@example.org>\r\n"), S("421 4.3.2 shutting down\r\n")],
         "expect": "RCPT_REPLY_ERROR", "reply_code": 421, "temporary": True},
        {"name": "mail_421_no_quit", "script": ehlo_then + [
            S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"), S("421 closing\r\n")],
         "expect": "MAIL_REPLY_ERROR", "reply_code": 421},
        {"name": "greeting_554_no_ehlo", "script": [S("554 no service\r\n")] + QUIT,
         "expect": "GREET_REPLY_ERROR", "reply_code": 554},
        {"name": "greeting_199_invalid_code", "script": [S("199 odd\r\n")] + QUIT,
         "expect": "SERVER_ERROR_REPLY"},
        {"name": "greeting_one_byte_at_a_time",
         "script": [["S1", GREETING], C(EHLO), ["S1", CAPS_NOAUTH]]
         + envelope() + QUIT, "expect": "SUCCESS"},
        # The client reads at most 512 bytes of a line, fails, and never reads the rest.
        {"name": "reply_line_over_512_bytes",
         "script": [S("220 " + "x" * 508), S("x" * 90 + "\r\n")],
         "expect": "OVERSIZE_SERVER_REPLY", "leftover": ["S " + "x" * 90 + "\r\n"]},
        {"name": "endless_continuation_lines",
         "script": ehlo_then + [S("250-x\r\n" * 41)], "expect": "OVERSIZE_SERVER_REPLY"},
        {"name": "mixed_codes_in_one_reply",
         "script": ehlo_then + [S("250-mail.test\r\n251 ok\r\n")] + QUIT,
         "expect": "INVALID_SERVER_REPLY"},
        {"name": "unsolicited_line_after_greeting",
         "script": [S(GREETING + "250 surprise\r\n")], "expect": "INVALID_SERVER_REPLY"},
        {"name": "bare_code_without_text_accepted",
         "script": [S("220\r\n"), C(EHLO), S("250\r\n")] + envelope() + QUIT,
         "expect": "SUCCESS"},
        {"name": "non_utf8_reply_text_tolerated",
         "script": [S("554 caf\u00e9 \u00ff\r\n")] + QUIT, "expect": "GREET_REPLY_ERROR"},
        {"name": "connect_refused", "connect": "refused", "script": [],
         "expect": "CONNECT_ERROR", "step": "CONNECT"},
        {"name": "connect_timeout", "connect": "timeout", "script": [],
         "expect": "CONNECT_ERROR", "step": "CONNECT"},
        {"name": "resolve_fails", "connect": "resolve", "script": [],
         "expect": "RESOLVE_ERROR", "step": "CONNECT"},
        {"name": "reset_mid_body", "send": {"body": "x" * 3000},
         "script": ehlo_then + [S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"),
                                S("250 ok\r\n"), C("RCPT TO:<ops@example.org>\r\n"),
                                S("250 ok\r\n"), C("DATA\r\n"), S("354 go\r\n"), ["wfail"]],
         "expect": "CONNECTION_CLOSED", "step": "MESSAGE"},
        {"name": "reset_at_rcpt", "script": ehlo_then + [
            S(CAPS_NOAUTH), C("MAIL FROM:<dev@example.org>\r\n"), S("250 ok\r\n"),
            C("RCPT TO:<ops@example.org>\r\n"), ["reset"]],
         "expect": "CONNECTION_CLOSED", "step": "RCPT"},
        {"name": "pool_too_small", "client": {"pool_count": 2}, "script": [],
         "expect": "PACKET_ALLOCATE_ERROR", "reusable": False},
        {"name": "bad_recipient_crlf_nothing_sent",
         "send": {"to": "ops@example.org\r\nRCPT TO:<evil@example.org>"}, "script": [],
         "expect": "ValueError"},
        {"name": "bad_subject_newline_nothing_sent",
         "send": {"subject": "hi\r\nBcc: evil@example.org"}, "script": [], "expect": "ValueError"},
        {"name": "mail_send_zero_length_invalid_param",
         "send": {"api": "mail_send", "body": ""}, "script": [], "expect": "INVALID_PARAM"},
        {"name": "mail_send_bad_address_invalid_param",
         "send": {"api": "mail_send", "to": "no-at-sign"}, "script": [],
         "expect": "INVALID_PARAM"},
        {"name": "mail_send_body_length",
         "send": {"api": "mail_send", "body": "HELLO WORLD", "body_length": 5,
                  "priority": 9}, "script": session(), "expect": "SUCCESS",
         "wire_contains": ["\r\n\r\nHELLO\r\n.\r\n"], "wire_excludes": ["WORLD", "X-Priority"]},
        {"name": "mail_send_server_error_is_status",
         "send": {"api": "mail_send"}, "script": [S("554 no\r\n")] + QUIT,
         "expect": "GREET_REPLY_ERROR"},
        # Message content on the wire.
        {"name": "dot_stuffing_and_line_endings",
         "send": {"body": ".\n..\n.x\nmid\r\n.\rbare cr\rlf\n\n.\r\nend"},
         "script": session(), "expect": "SUCCESS",
         "wire_contains": ["\r\n\r\n..\r\n...\r\n..x\r\nmid\r\n..\r\nbare cr\r\nlf\r\n\r\n"
                           "..\r\nend\r\n.\r\n"]},
        {"name": "smuggling_sequences_normalised",
         "send": {"body": "a\n.\r\nMAIL FROM:<x@y>\r\n\r\r\n.\n\nb\r\n.\nc"},
         "script": session(), "expect": "SUCCESS",
         "wire_contains": ["a\r\n..\r\nMAIL FROM:<x@y>\r\n\r\n\r\n..\r\n\r\nb\r\n..\r\nc\r\n"
                           ".\r\nQUIT"]},
        {"name": "headers_and_priority_high",
         "send": {"priority": 4, "subject": "Door opened"}, "script": session(),
         "expect": "SUCCESS",
         "wire_contains": ["From: dev@example.org\r\n", "To: ops@example.org\r\n",
                           "Subject: Door opened\r\n", "Message-ID: <", "@example.org>\r\n",
                           "MIME-Version: 1.0\r\n",
                           "Content-Type: text/plain; charset=utf-8\r\n",
                           "Content-Transfer-Encoding: 7bit\r\n", "X-Priority: 1 (Highest)\r\n",
                           "Importance: high\r\n"]},
        {"name": "priority_low", "send": {"priority": 1}, "script": session(),
         "expect": "SUCCESS", "wire_contains": ["X-Priority: 5 (Lowest)\r\nImportance: low"]},
        {"name": "non_ascii_subject_encoded_word",
         "send": {"subject": "Boiler at 92 \u00b0C"}, "script": session(),
         "expect": "SUCCESS", "wire_contains": ["Subject: =?utf-8?B?Qm9pbGVyIGF0IDkyIMKwQw==?="]},
        {"name": "eight_bit_body_with_8bitmime",
         "send": {"body": "92 \u00b0C\n"}, "script": session(
             mail="MAIL FROM:<dev@example.org> BODY=8BITMIME\r\n"), "expect": "SUCCESS",
         "wire_contains": ["Content-Transfer-Encoding: 8bit\r\n", "\r\n92 \u00b0C\r\n.\r\n"]},
        {"name": "eight_bit_body_without_8bitmime_is_qp",
         "send": {"body": "92 \u00b0C = hot \n"},
         "script": session(caps="250-mail.test\r\n250 SIZE 1000\r\n"), "expect": "SUCCESS",
         "wire_contains": ["Content-Transfer-Encoding: quoted-printable\r\n",
                           "\r\n92 =C2=B0C =3D hot=20\r\n.\r\n"]},
        {"name": "long_line_is_qp", "send": {"body": "y" * 1500},
         "script": session(), "expect": "SUCCESS",
         "wire_contains": ["Content-Transfer-Encoding: quoted-printable\r\n",
                           "y" * 72 + "=\r\n"], "max_line": 1000},
        # An iterator of chunks streams through the pool: 7.7 KB over many buffers. It
        # cannot be scanned ahead, so with 8BITMIME it is declared 8bit.
        {"name": "body_spanning_many_buffers", "send": {"body_repeat": ["0123456789\n", 700]},
         "script": session(mail="MAIL FROM:<dev@example.org> BODY=8BITMIME\r\n"),
         "expect": "SUCCESS",
         "wire_contains": ["Content-Transfer-Encoding: 8bit\r\n",
                           "\r\n\r\n" + "0123456789\r\n" * 700 + ".\r\nQUIT"]},
        {"name": "empty_body", "send": {"body": ""}, "script": session(),
         "expect": "SUCCESS", "wire_contains": ["\r\n\r\n.\r\nQUIT"]},
        {"name": "body_final_crlf_not_doubled", "send": {"body": "last\r\n"},
         "script": session(), "expect": "SUCCESS", "wire_contains": ["\r\n\r\nlast\r\n.\r\n"]},
    ]


def all_scenarios():
    return matrix() + netx() + more()
