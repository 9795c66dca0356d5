"""SMTP session scenarios, written once as data and run by two runners: pytest on CPython
(test_scenarios.py) and the MicroPython unix port (mp_scenarios.py). Each scenario is a
script of server bytes ("S"; "S1" hands them over one byte per read), the exact client
bytes expected ("C", or "C*" = anything up to and including the given end; "W" and "W*"
the same for one whole write), and faults ("stall", "close", "reset", "wfail"). With
send["mails"] the scenario is one client.session() and "statuses" lists each mail's."""

import base64

from microsmtp import protocol  # CPython only (the shim): the runners get JSON

GREETING = "220 mail.test ESMTP ready\r\n"
EHLO = "EHLO dev.example.org\r\n"
# Without PIPELINING and SIZE: one command, one reply, as the step matrix below is written
# (pipelining() and sizes() below have theirs).
CAPS = ("250-mail.test greets you\r\n250-DSN\r\n250-8BITMIME\r\n"
        "250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n")
CAPS_NOAUTH = "250-mail.test\r\n250-8BITMIME\r\n250 DSN\r\n"
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
    ("MESSAGE", END, "MESSAGE_REPLY_ERROR", "452 4.3.1 full\r\n", "554 5.6.0 rejected\r\n"),
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
        out += more_faults(step, line, status, head, after_fail)
    return out


SUCCESS_CODE = {"GREETING": 220, "EHLO": 250, "AUTH": 235, "MAIL": 250, "RCPT": 250,
                "DATA": 354, "MESSAGE": 250, "QUIT": 221}


def more_faults(step, line, status, head, after_fail):
    """The rest of issue 5's table for one step: 421, reset, a line over the cap, endless
    continuation lines, one byte per read, and unsolicited lines after the reply."""
    name = step.lower()
    full = _full_auth_session()
    i = len(head)  # the server's reply to `line` in the full session
    reply = full[i][1]
    code = SUCCESS_CODE[step]
    lost = "DELIVERY_UNKNOWN" if step == "MESSAGE" else "CONNECTION_CLOSED"
    quit_ok = step == "QUIT"
    big = "%d-%s" % (code, "x" * 508)  # 512 bytes, no line end yet
    out = [
        {"name": name + "_421", "script": head + [S("421 4.3.2 closing\r\n")],
         "expect": "SUCCESS" if quit_ok else status},
        {"name": name + "_reset", "script": head + [["reset"]],
         "expect": "SUCCESS" if quit_ok else lost},
        # The client reads 512 bytes of the line, gives up, and never reads the rest.
        {"name": name + "_line_over_cap", "script": head + [S(big), S("x" * 40 + "\r\n")],
         "expect": "SUCCESS" if quit_ok else "OVERSIZE_SERVER_REPLY",
         "leftover": ["S " + "x" * 40 + "\r\n"]},
        {"name": name + "_endless_continuation",
         "script": head + [S(("%d-more\r\n" % code) * 41)],
         "expect": "SUCCESS" if quit_ok else "OVERSIZE_SERVER_REPLY"},
        {"name": name + "_one_byte_per_read",
         "script": full[:i] + [["S1", reply]] + full[i + 1:], "expect": "SUCCESS"},
    ]
    extra = S(reply + "250 unasked\r\n")
    if step == "MESSAGE":  # accepted is accepted: the extra line goes with QUIT's reply
        out.append({"name": name + "_unsolicited_line", "script": full[:i] + [extra]
                    + full[i + 1:], "expect": "SUCCESS"})
    elif quit_ok:
        out.append({"name": name + "_unsolicited_line", "script": full[:i] + [extra],
                    "expect": "SUCCESS"})
    else:  # bytes that answer nothing would be read as the next reply: end the session
        out.append({"name": name + "_unsolicited_line", "script": full[:i] + [extra],
                    "expect": "INVALID_SERVER_REPLY"})
    for sc in out:
        sc["client"] = dict(CREDS)
        if sc["expect"] not in ("SUCCESS",):
            sc["step"] = step
        if sc["name"].endswith("_421") and not quit_ok:
            sc.update(reply_code=421, temporary=True)
    return out


# --- the nine NetX Duo regression scenarios (docs/NETX.md, numbered as there) ---------------
# NetX's transcripts list SIZE; DSN stands in for it here (with SIZE this client declares
# SIZE= on MAIL: sizes() tests that).
NETX_CAPS = ("250-mail.test\r\n250-ETRN\r\n250-AUTH LOGIN CRAM-MD5 PLAIN\r\n250-8BITMIME\r\n"
             "250 DSN\r\n")
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
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-AUTH PLAIN\r\n250-DSN\r\n"),
                    S("250 DSN\r\n")] + PLAIN_OK + body + QUIT, "expect": "SUCCESS"},
        {"name": "netx6_auth_in_second_read", "client": dict(CREDS, auth="LOGIN"),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-DSN\r\n"),
                    S("250-  AUTH LOGIN\r\n250 8BITMIME\r\n")] + login + body + QUIT,
         "expect": "SUCCESS"},
        {"name": "netx7_ehlo_never_ends", "client": dict(CREDS),
         "script": [S(GREETING), C(EHLO), S("250-mail.test\r\n250-DSN\r\n"), ["stall"]],
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
        # MicroPython's readinto() reads on after a whole reply and meets the reset right
        # behind it (a server that hangs up as it refuses: smtp-sink -A): the refusal still
        # counts, permanent, not a lost connection (DELIVERY_UNKNOWN, sent again by an
        # outbox). The QUIT after it meets the reset.
        {"name": "refusal_and_reset_in_one_read", "script": ehlo_then + [
            S(CAPS_NOAUTH)] + envelope()[:-1] + [S("550 5.7.1 refused\r\n"), ["reset"]],
         "expect": "MESSAGE_REPLY_ERROR", "step": "MESSAGE", "reply_code": 550,
         "temporary": False},
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
         "script": session(caps="250-mail.test\r\n250 DSN\r\n"), "expect": "SUCCESS",
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


# --- TLS (RFC 3207) and the AUTH mechanisms of issue 3 ---------------------------------------
CAPS_TLS = ("250-mail.test\r\n250-8BITMIME\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
            "250 DSN\r\n")
TLS = dict(CREDS, tls=1, insecure=True, allow_plaintext_auth=False)
TOKEN = "ya29.test-token"
XOAUTH2_IR = base64.b64encode(b"user=alice\x01auth=Bearer %s\x01\x01" % TOKEN.encode()).decode()
CRAM_CHALLENGE = "<1896.697170952@postoffice.example.net>"


def cram_answer():
    import hashlib
    import hmac

    digest = hmac.new(PASSWORD.encode(), CRAM_CHALLENGE.encode(), hashlib.md5).hexdigest()
    return base64.b64encode(("%s %s" % (USER, digest)).encode()).decode()


def tls_scenarios():
    start = [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"), S("220 go ahead\r\n"),
             ["tls"], C(EHLO)]
    b64 = base64.b64encode
    long_token = "t" * 600
    long_ir = b64(b"user=alice\x01auth=Bearer %s\x01\x01" % long_token.encode()).decode()
    json_err = b64(b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}')
    return [
        {"name": "starttls_then_auth", "client": dict(TLS),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN\r\n")] + PLAIN_OK + envelope()
         + QUIT, "expect": "SUCCESS", "secure": True},
        # RFC 3207 §4.2: capabilities from before TLS are forgotten: only LOGIN now.
        {"name": "starttls_capabilities_replaced", "client": dict(TLS, auth="AUTO"),
         "script": start + [S("250-mail.test\r\n250 AUTH LOGIN\r\n"), C("AUTH LOGIN\r\n"),
                            S("334 VXNlcm5hbWU6\r\n"), C(B64_USER + "\r\n"),
                            S("334 UGFzc3dvcmQ6\r\n"), C(B64_PASS + "\r\n"), S("235 ok\r\n")]
         + envelope() + QUIT, "expect": "SUCCESS"},
        # Never STARTTLS twice, even when it is listed again.
        {"name": "starttls_never_twice", "client": dict(TLS),
         "script": start + [S(CAPS_TLS)] + PLAIN_OK + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "starttls_required_not_offered", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS)] + QUIT, "expect": "TLS_NOT_OFFERED",
         "step": "EHLO"},
        {"name": "starttls_454", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"),
                    S("454 4.7.0 TLS not available\r\n")] + QUIT,
         "expect": "TLS_REFUSED", "reply_code": 454, "temporary": True},
        {"name": "starttls_garbage", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"),
                    S("garbage\r\n")] + QUIT, "expect": "SERVER_ERROR_REPLY"},
        # Response injection (CVE-2021-22947 shape): bytes after the 220 in the same read.
        {"name": "starttls_injection", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"),
                    S("220 go ahead\r\n250-mail.test\r\n250 AUTH PLAIN\r\n")],
         "expect": "TLS_INJECTION", "step": "STARTTLS"},
        {"name": "starttls_bad_certificate", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"),
                    S("220 go ahead\r\n"), ["tls", "cert"]],
         "expect": "TLS_CERT_ERROR", "error_contains": "expired"},
        {"name": "starttls_handshake_fails", "client": dict(TLS),
         "script": [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"),
                    S("220 go ahead\r\n"), ["tls", "fail"]],
         "expect": "TLS_HANDSHAKE_ERROR"},
        {"name": "implicit_tls", "client": dict(TLS, tls=2),
         "script": [["tls"], S(GREETING), C(EHLO), S(CAPS)] + PLAIN_OK + envelope() + QUIT,
         "expect": "SUCCESS", "secure": True},
        {"name": "implicit_tls_bad_certificate", "client": dict(TLS, tls=2),
         # The handshake runs in the greeting's read (transport.py) but is the connection's.
         "script": [["tls", "cert"]], "expect": "TLS_CERT_ERROR", "step": "CONNECT"},
        {"name": "tls_without_ca_refused_before_connecting",
         "client": dict(CREDS, tls=1), "script": [], "expect": "TLS_NO_CA",
         "reusable": False},
        # This client never sends its password in clear: no plaintext follow-up either.
        {"name": "plaintext_auth_refused", "client": dict(CREDS, allow_plaintext_auth=False),
         "script": [S(GREETING), C(EHLO), S(CAPS)] + QUIT,
         "expect": "PLAINTEXT_AUTH_REFUSED", "error_contains": "allow_plaintext_auth",
         "reusable": False},
        {"name": "cram_md5", "client": dict(TLS, auth="AUTO"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN CRAM-MD5 LOGIN\r\n"),
                            C("AUTH CRAM-MD5\r\n"),
                            S("334 %s\r\n" % b64(CRAM_CHALLENGE.encode()).decode()),
                            C(cram_answer() + "\r\n"), S("235 ok\r\n")]
         + envelope() + QUIT, "expect": "SUCCESS"},
        {"name": "auth_534_tries_the_next_mechanism", "client": dict(TLS, auth="AUTO"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN CRAM-MD5\r\n"),
                            C("AUTH CRAM-MD5\r\n"),
                            S("534 5.7.9 mechanism too weak\r\n")] + PLAIN_OK + envelope()
         + QUIT, "expect": "SUCCESS"},
        {"name": "auth_535_not_retried", "client": dict(TLS, auth="AUTO"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN CRAM-MD5\r\n"),
                            C("AUTH CRAM-MD5\r\n"),
                            S("334 %s\r\n" % b64(CRAM_CHALLENGE.encode()).decode()),
                            C(cram_answer() + "\r\n"), S("535 5.7.8 bad\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 535, "temporary": False,
         "reply": "5.7.8"},
        # Of AUTH's reply text only an RFC 3463 code at its start is kept: without one,
        # or with words glued to it, nothing (issue 12; issue 9, defect 4).
        {"name": "auth_535_without_enhanced_code_keeps_no_text",
         "client": dict(TLS, auth="PLAIN"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN\r\n"),
                            C("AUTH PLAIN %s\r\n" % PLAIN_IR),
                            S("535 Authentication failed for alice\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 535, "reply": ""},
        {"name": "auth_535_code_glued_to_words_keeps_no_text",
         "client": dict(TLS, auth="PLAIN"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN\r\n"),
                            C("AUTH PLAIN %s\r\n" % PLAIN_IR),
                            S("535 5.7.8alice failed\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 535, "reply": ""},
        {"name": "auth_454_keeps_its_code_and_is_temporary",
         "client": dict(TLS, auth="PLAIN"),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN\r\n"),
                            C("AUTH PLAIN %s\r\n" % PLAIN_IR),
                            S("454 4.7.0 Temporary authentication failure\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 454, "temporary": True,
         "reply": "4.7.0", "error_contains": "(AUTH): 454 4.7.0."},
        {"name": "auth_undecodable_challenge_cancelled", "client": dict(TLS, auth="LOGIN"),
         "script": start + [S("250-mail.test\r\n250 AUTH LOGIN\r\n"), C("AUTH LOGIN\r\n"),
                            S("334 !!!not-base64!!!\r\n"), C("*\r\n"),
                            S("501 cancelled\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR"},
        {"name": "xoauth2", "client": dict(TLS, auth="AUTO", password=None, oauth_token=TOKEN),
         "script": start + [S("250-mail.test\r\n250 AUTH PLAIN XOAUTH2\r\n"),
                            C("AUTH XOAUTH2 %s\r\n" % XOAUTH2_IR), S("235 ok\r\n")]
         + envelope() + QUIT, "expect": "SUCCESS", "reusable": False},
        {"name": "xoauth2_refused_with_json", "client": dict(TLS, auth="XOAUTH2", password=None,
                                                             oauth_token=TOKEN),
         "script": start + [S("250-mail.test\r\n250 AUTH XOAUTH2\r\n"),
                            C("AUTH XOAUTH2 %s\r\n" % XOAUTH2_IR),
                            S("334 %s\r\n" % json_err.decode()), C("\r\n"),
                            S("535 5.7.8 Username and Password not accepted\r\n")] + QUIT,
         "expect": "AUTH_REPLY_ERROR", "reply_code": 535, "error_contains": "token is expired",
         "reusable": False},
        # A token too long for the AUTH line goes on its own line after the 334.
        {"name": "xoauth2_long_token_on_continuation_line",
         "client": dict(TLS, auth="XOAUTH2", password=None, oauth_token=long_token),
         "script": start + [S("250-mail.test\r\n250 AUTH XOAUTH2\r\n"),
                            C("AUTH XOAUTH2\r\n"), S("334 \r\n"), C(long_ir + "\r\n"),
                            S("235 ok\r\n")] + envelope() + QUIT,
         "expect": "SUCCESS", "reusable": False},
    ]


# --- issue 12: a pinned CRAM-MD5 or XOAUTH2 the server does not offer ----------------------
# Refused before any AUTH line (no blind "AUTH CRAM-MD5" -> 504): AUTHENTICATION_ERROR, the
# session QUITs, and the same client then sends through a server that offers it ("next").
XOAUTH2_CREDS = dict(CREDS, password=None, oauth_token=TOKEN)
CRAM_CAPS = "250-mail.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n"


def cram_ok():
    return [C("AUTH CRAM-MD5\r\n"),
            S("334 %s\r\n" % base64.b64encode(CRAM_CHALLENGE.encode()).decode()),
            C(cram_answer() + "\r\n"), S("235 2.7.0 ok\r\n")]


XOAUTH2_OK = [C("AUTH XOAUTH2 %s\r\n" % XOAUTH2_IR), S("235 2.7.0 ok\r\n")]
OK_SCRIPTS["cram_md5"] = session(caps=CRAM_CAPS, auth=cram_ok())
OK_SCRIPTS["xoauth2"] = session(caps="250-mail.test\r\n250 AUTH PLAIN XOAUTH2\r\n",
                                auth=XOAUTH2_OK)


def pinned_scenarios():
    refused = [S(GREETING), C(EHLO)]
    tls_start = [S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"), S("220 go ahead\r\n"),
                 ["tls"], C(EHLO)]
    fix = "; set auth=AUTH_AUTO or a mechanism it offers (AUTH)."
    return [
        {"name": "pinned_cram_md5_not_offered", "client": dict(CREDS, auth="CRAM_MD5"),
         "script": refused + [S(CAPS)] + QUIT, "expect": "AUTHENTICATION_ERROR",
         "step": "AUTH", "reply_code": None, "temporary": False, "next": "cram_md5",
         "error_contains": "The server does not offer AUTH CRAM-MD5 (it offers PLAIN LOGIN)"
         + fix, "wire_excludes": ["AUTH"]},
        {"name": "pinned_xoauth2_not_offered", "client": dict(XOAUTH2_CREDS, auth="XOAUTH2"),
         "script": refused + [S(CRAM_CAPS)] + QUIT, "expect": "AUTHENTICATION_ERROR",
         "step": "AUTH", "temporary": False, "next": "xoauth2",
         "error_contains": "does not offer AUTH XOAUTH2 (it offers CRAM-MD5 PLAIN LOGIN)",
         "wire_excludes": ["AUTH"]},
        # No AUTH at all: not offered (PLAIN and LOGIN keep guide rule 1 and try PLAIN).
        {"name": "pinned_cram_md5_no_auth_listed", "client": dict(CREDS, auth="CRAM_MD5"),
         "script": refused + [S(CAPS_NOAUTH)] + QUIT, "expect": "AUTHENTICATION_ERROR",
         "next": "cram_md5", "wire_excludes": ["AUTH"],
         "error_contains": "(its EHLO reply lists no AUTH; some servers offer it only over "
         "TLS)"},
        # A bare "AUTH" (RFC 4954 wants a mechanism after it) or only unknown names.
        {"name": "pinned_xoauth2_bare_auth", "client": dict(XOAUTH2_CREDS, auth="XOAUTH2"),
         "script": refused + [S("250-mail.test\r\n250-AUTH\r\n250 DSN\r\n")] + QUIT,
         "expect": "AUTHENTICATION_ERROR", "next": "xoauth2", "wire_excludes": ["AUTH"],
         "error_contains": "(its AUTH line names no mechanism microsmtp knows)"},
        {"name": "pinned_cram_md5_unknown_names", "client": dict(CREDS, auth="CRAM_MD5"),
         "script": refused + [S("250-mail.test\r\n250 AUTH GSSAPI NTLM\r\n")] + QUIT,
         "expect": "AUTHENTICATION_ERROR", "next": "cram_md5", "wire_excludes": ["AUTH"],
         "error_contains": "(its AUTH line names no mechanism microsmtp knows)"},
        # After STARTTLS only the new EHLO counts (RFC 3207 §4.2); no TLS hint then.
        {"name": "starttls_pinned_cram_md5_not_offered", "client": dict(TLS, auth="CRAM_MD5"),
         "script": tls_start + [S("250-mail.test\r\n250 AUTH PLAIN\r\n")] + QUIT,
         "expect": "AUTHENTICATION_ERROR", "secure": True, "reusable": False,
         "error_contains": "(it offers PLAIN)" + fix, "error_excludes": ["only over TLS"]},
        {"name": "starttls_pinned_xoauth2_no_auth", "client": dict(TLS, auth="XOAUTH2",
                                                                   password=None,
                                                                   oauth_token=TOKEN),
         "script": tls_start + [S("250-mail.test\r\n250 DSN\r\n")] + QUIT,
         "expect": "AUTHENTICATION_ERROR", "reusable": False,
         "error_contains": "(its EHLO reply lists no AUTH)" + fix},
        # Pinned and offered: used as before, whatever else is listed.
        {"name": "pinned_cram_md5_offered", "client": dict(CREDS, auth="CRAM_MD5"),
         "script": OK_SCRIPTS["cram_md5"], "expect": "SUCCESS", "next": "cram_md5"},
        {"name": "pinned_xoauth2_offered", "client": dict(XOAUTH2_CREDS, auth="XOAUTH2"),
         "script": OK_SCRIPTS["xoauth2"], "expect": "SUCCESS", "next": "xoauth2"},
        # PLAIN pinned against the same server keeps the guide's rules: it is offered.
        {"name": "pinned_plain_with_cram_listed", "client": dict(CREDS, auth="PLAIN"),
         "script": session(caps=CRAM_CAPS, auth=PLAIN_OK), "expect": "SUCCESS"},
    ]


OK_SCRIPTS["starttls"] = [
    S(GREETING), C(EHLO), S(CAPS_TLS), C("STARTTLS\r\n"), S("220 go ahead\r\n"), ["tls"],
    C(EHLO), S("250-mail.test\r\n250 AUTH PLAIN\r\n")] + PLAIN_OK + envelope() + QUIT
OK_SCRIPTS["implicit"] = [["tls"], S(GREETING), C(EHLO), S(CAPS)] + PLAIN_OK + envelope() + QUIT


# --- issue 9: what an adversarial review found --------------------------------------------
NON_ASCII_PASSWORD = "p\u00e4ssw\u00f6rt-geheim"
# Any PEM-framed bytes do for the scripted ssl, which verifies nothing itself.
CA_PEM = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n"


def secret_forms(user=USER, password=PASSWORD, token=None):
    """Everything the client sends in AUTH that must never reach an error, a reply or a
    repr, in any 8-character piece (issue 9, defect 4)."""
    b64 = base64.b64encode
    pw = password.encode()
    forms = [password, b64(pw).decode(),
             b64(b"%s\0%s\0%s" % (user.encode(), user.encode(), pw)).decode()]
    if token:
        forms += [token, b64(b"user=%s\x01auth=Bearer %s\x01\x01" % (
            user.encode(), token.encode())).decode()]
    return forms


def _echoes(ir, password):
    """A server echoing the AUTH exchange back in the four ways the review found, as reply
    lines: cut by the client's 300-character text limit, split over two reply lines, a
    non-ASCII password as raw UTF-8 and base64, and a truncated copy."""
    pw64 = base64.b64encode(password.encode()).decode()
    return {
        "cut_at_300": ["5.7.8 " + "y" * 272 + " AUTH PLAIN " + ir],
        "split_over_two_lines": ["5.7.8 AUTH PLAIN " + ir[:12], ir[12:]],
        "raw_and_base64": ["5.7.8 bad password %s (%s)" % (password, pw64)],
        "truncated": ["5.7.8 " + ir[:-5]],
    }


def reply(code, lines):
    """A multi-line reply (RFC 5321 §4.2.1): "code-" on every line but the last."""
    return "".join("%d%s%s\r\n" % (code, "-" if i < len(lines) - 1 else " ", line)
                   for i, line in enumerate(lines))


def hardening():
    out = []
    ehlo = [S(GREETING), C(EHLO), S(CAPS)]
    for password in (PASSWORD, NON_ASCII_PASSWORD):
        ir = base64.b64encode(("alice\0alice\0" + password).encode()).decode()
        tag = "" if password == PASSWORD else "_non_ascii"
        common = {"client": dict(CREDS, password=password), "reply": "",
                  "secrets": secret_forms(password=password),
                  "reusable": password == PASSWORD}  # the follow-up script has s3cret
        for way, lines in _echoes(ir, password).items():
            # The echo in AUTH's own reply: of its text only the enhanced code is kept.
            out.append(dict(common, name="auth_echo_%s%s" % (way, tag), script=ehlo + [
                C("AUTH PLAIN %s\r\n" % ir), S(reply(535, lines))] + QUIT,
                expect="AUTH_REPLY_ERROR", reply_code=535, temporary=False, reply="5.7.8"))
            # The same echo in a later reply (MAIL's): withheld, as it holds a piece.
            out.append(dict(common, name="later_echo_%s%s" % (way, tag), script=ehlo + [
                C("AUTH PLAIN %s\r\n" % ir), S("235 ok\r\n"),
                C("MAIL FROM:<dev@example.org>\r\n"), S(reply(550, lines))] + QUIT,
                expect="MAIL_REPLY_ERROR", reply_code=550))
    # XOAUTH2: the token in the 334's JSON and in the 535: only the codes are kept.
    json_echo = base64.b64encode(b'{"status":"401","scope":"%s","echo":"%s"}' % (
        TOKEN.encode(), XOAUTH2_IR.encode())).decode()
    out.append({"name": "xoauth2_echo_in_json_and_reply",
                "client": dict(CREDS, auth="XOAUTH2", password=None, oauth_token=TOKEN),
                "script": ehlo[:2] + [S("250-mail.test\r\n250 AUTH PLAIN XOAUTH2\r\n"),
                                      C("AUTH XOAUTH2 %s\r\n" % XOAUTH2_IR),
                                      S("334 %s\r\n" % json_echo), C("\r\n"),
                                      S(reply(535, ["5.7.8 " + XOAUTH2_IR[:20],
                                                    XOAUTH2_IR[20:]]))]
                + QUIT, "expect": "AUTH_REPLY_ERROR", "reply_code": 535,
                "error_contains": "token is expired", "secrets": secret_forms(token=TOKEN),
                "reply": "5.7.8", "reusable": False})
    # Defect 8: a streamed body that cannot go as 8bit fails mid-DATA; the error names what
    # the client did and carries no reply code (the 354 before it was the go-ahead).
    for name, chunk, why in (("long_line", "x" * 1000 + "\n", "998"),
                             ("nul", "a\0b\n", "NUL")):
        out.append({"name": "streamed_%s_cut_mid_data" % name,
                    "send": {"body_repeat": [chunk, 3]},
                    "script": [S(GREETING), C(EHLO), S(CAPS_NOAUTH),
                               C("MAIL FROM:<dev@example.org> BODY=8BITMIME\r\n"),
                               S("250 ok\r\n"), C("RCPT TO:<ops@example.org>\r\n"),
                               S("250 ok\r\n"), C("DATA\r\n"), S("354 go ahead\r\n"),
                               ["C*", END]],
                    "leftover": ["C* " + END], "expect": "MESSAGE_FORMAT_ERROR",
                    "step": "MESSAGE", "reply_code": None, "temporary": False,
                    "error_contains": why, "error_excludes": ["354"]})
    # Defect 6: NUL in memory goes quoted-printable, never raw under 7bit/8bit.
    for caps, mail in ((CAPS_NOAUTH, "MAIL FROM:<dev@example.org>\r\n"),
                       ("250-mail.test\r\n250 DSN\r\n",
                        "MAIL FROM:<dev@example.org>\r\n")):
        out.append({"name": "nul_in_memory_is_qp_%s" % ("8bitmime" if "8BIT" in caps
                                                        else "7bit"),
                    "send": {"body": "code\x007 \u00b0C\n"},
                    "script": session(caps=caps, mail=mail), "expect": "SUCCESS",
                    "wire_contains": ["Content-Transfer-Encoding: quoted-printable\r\n",
                                      "\r\n\r\ncode=007 =C2=B0C\r\n.\r\n"],
                    "wire_excludes": ["\x00"]})
    # Defect 9: with a CA given, port 25's STARTTLS is required: stripped, nothing is sent.
    out.append({"name": "cadata_on_port_25_starttls_stripped",
                "client": dict(CREDS, tls=None, cadata=CA_PEM, allow_plaintext_auth=True),
                "script": [S(GREETING), C(EHLO), S(CAPS)] + QUIT,
                "expect": "TLS_NOT_OFFERED", "step": "EHLO", "reusable": False,
                "wire_excludes": ["AUTH", "MAIL"]})
    out.append({"name": "insecure_on_port_25_starttls_stripped",
                "client": dict(CREDS, insecure=True, allow_plaintext_auth=True),
                "script": [S(GREETING), C(EHLO), S(CAPS)] + QUIT,
                "expect": "TLS_NOT_OFFERED", "step": "EHLO", "reusable": False,
                "wire_excludes": ["AUTH", "MAIL"]})
    return out


# --- PIPELINING (RFC 2920): the envelope as one group -----------------------------------
# "W" events (tests/scripted.py) are whole writes: a group is one write, its replies are
# read in order, and the commands RFC 2920 §3.1 puts last in a group (EHLO, AUTH, DATA,
# QUIT, RSET here) leave nothing behind them in their write. Scripted, not a real server:
# smtp-sink pipelines but refuses every command of a name (-f MAIL) and only with -p (no
# PIPELINING); a group refused at one exact command comes only from a script.
# (tests/test_smtp_sink.py's test_pipelined_session has the accepted case for real.)
CAPS_PIPE = "250-mail.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 DSN\r\n"
MAIL = "MAIL FROM:<dev@example.org>\r\n"
TWO = ("a@example.org", "b@example.org")


def W(text):
    return ["W", text]


def group(to=("ops@example.org",), mail=MAIL):
    """MAIL, every RCPT and DATA: one write (RFC 2920 §3.1)."""
    return W(mail + "".join("RCPT TO:<%s>\r\n" % r for r in to) + "DATA\r\n")


def replies(*lines):
    """One S event a reply: the client must read each before it writes again."""
    return [S(line + "\r\n") for line in lines]


# The whole message in one write (a short body fits a pool buffer), its "." last...
DOT_ALONE = ["W*", END]
# ...or with QUIT after it: Client.send's one mail ends the session (RFC 2920 §3.1).
DOT_QUIT = ["W*", END + "QUIT\r\n"]
W_QUIT = [W("QUIT\r\n"), S("221 bye\r\n")]
# What a server says to the commands of a group after a refused MAIL (Postfix's words).
NEED_MAIL = "503 5.5.1 Error: need MAIL command"
NEED_RCPT = "503 5.5.1 Error: need RCPT command"
NO_RCPT = "554 5.5.1 Error: no valid recipients"


def pipelining():
    start = [S(GREETING), W(EHLO), S(CAPS_PIPE)]  # EHLO alone: PIPELINING is not known yet
    rset = [W("RSET\r\n"), S("250 2.0.0 Ok\r\n")]
    sent = [DOT_ALONE, S("250 queued\r\n")]
    out = [
        {"name": "pipelined_envelope_one_write",
         "script": start + [group(), S("250 ok\r\n250 ok\r\n354 go ahead\r\n"), DOT_QUIT,
                            S("250 queued\r\n221 bye\r\n")], "expect": "SUCCESS"},
        {"name": "pipelined_replies_one_byte_per_read", "send": {"to": list(TWO)},
         "script": start + [group(TWO), ["S1", "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"],
                            DOT_QUIT, ["S1", "250 queued\r\n221 bye\r\n"]],
         "expect": "SUCCESS"},
        # In order: the 550 is the third reply, so the second recipient's; the mail still
        # goes to the first (and e.refused names the one refused).
        {"name": "pipelined_second_rcpt_refused_still_delivers", "send": {"to": list(TWO)},
         "script": start + [group(TWO)]
         + replies("250 ok", "250 ok", "550 5.1.1 <b@example.org>: unknown", "354 go")
         + [DOT_QUIT] + replies("250 queued", "221 bye"),
         "expect": "RCPT_REPLY_ERROR", "step": "RCPT", "reply_code": 550,
         "refused": [["b@example.org", 550]]},
        # MAIL refused: the RCPT and DATA replies are read all the same (one S event each,
        # so a QUIT written before them breaks the script), then QUIT: one mail, no RSET.
        {"name": "pipelined_mail_refused_rest_heard_out",
         "script": start + [group()] + replies("550 5.7.1 sender denied", NEED_MAIL, NEED_RCPT)
         + W_QUIT, "expect": "MAIL_REPLY_ERROR", "step": "MAIL", "reply_code": 550,
         "temporary": False},
        # DATA said 354 though MAIL was refused: a lone "." ends the data (RFC 2920 §3.1).
        {"name": "pipelined_mail_refused_data_354_lone_dot",
         "script": start + [group()] + replies("451 4.3.0 later", NEED_MAIL, "354 go")
         + [W(".\r\n"), S(NO_RCPT + "\r\n")] + W_QUIT,
         "expect": "MAIL_REPLY_ERROR", "step": "MAIL", "reply_code": 451, "temporary": True},
        # RFC 5321 §3.8: 421 closes the session: no more replies waited for, no QUIT.
        {"name": "pipelined_mail_421_closes",
         "script": start + [group(), S("421 4.3.2 shutting down\r\n")],
         "expect": "MAIL_REPLY_ERROR", "reply_code": 421, "temporary": True},
        # Every RCPT refused, DATA said 354 all the same: a lone "." (no header, no QUIT with
        # it), then the refusal is reported.
        {"name": "pipelined_every_rcpt_refused_data_354_lone_dot", "send": {"to": list(TWO)},
         "script": start + [group(TWO)]
         + replies("250 ok", "550 5.1.1 unknown", "450 4.2.1 busy", "354 go")
         + [W(".\r\n"), S(NO_RCPT + "\r\n")] + W_QUIT,
         "expect": "RCPT_REPLY_ERROR", "step": "RCPT",
         "refused": [["a@example.org", 550], ["b@example.org", 450]],
         "wire_excludes": ["Subject:"]},
    ]
    for code, text in (("503", NEED_RCPT), ("554", NO_RCPT)):
        out.append({"name": "pipelined_every_rcpt_refused_data_" + code,
                    "send": {"to": list(TWO)}, "script": start + [group(TWO)]
                    + replies("250 ok", "550 5.1.1 unknown", "550 5.1.1 unknown", text)
                    + W_QUIT, "expect": "RCPT_REPLY_ERROR", "step": "RCPT",
                    "refused": [["a@example.org", 550], ["b@example.org", 550]],
                    "wire_excludes": ["Subject:"]})
    # More recipients than a pool buffer (536 bytes) holds: the group goes in the writes
    # that fill it, the next one written as soon as the first reply is in (not after all
    # of them: the script has the rest only after it), the replies in order.
    many = ["rcpt%02d@example.org" % i for i in range(20)]
    head = MAIL
    k = 0
    while len(head) + len("RCPT TO:<%s>\r\n" % many[k]) <= 536:
        head += "RCPT TO:<%s>\r\n" % many[k]
        k += 1
    out.append({"name": "pipelined_group_over_one_buffer", "send": {"to": many},
                "script": start + [W(head), S("250 ok\r\n"), group(many[k:], mail=""),
                                   S("250 ok\r\n" * len(many) + "354 go\r\n"),
                                   ["C*", END + "QUIT\r\n"],  # 20 To: lines: two writes
                                   S("250 queued\r\n221 bye\r\n")], "expect": "SUCCESS"})
    out += [
        # AUTH is never in a group (RFC 2920 §3.1 puts it last; RFC 4954 answers it alone).
        {"name": "pipelined_auth_line_alone", "client": dict(CREDS),
         "script": [S(GREETING), W(EHLO),
                    S("250-mail.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
                    W("AUTH PLAIN %s\r\n" % PLAIN_IR), S("235 2.7.0 ok\r\n"), group(),
                    S("250 ok\r\n250 ok\r\n354 go\r\n"), DOT_QUIT,
                    S("250 queued\r\n221 bye\r\n")], "expect": "SUCCESS"},
        # RFC 3207 §4.2: what EHLO said before TLS is forgotten; without PIPELINING after
        # it, one command a write.
        {"name": "pipelining_forgotten_after_starttls", "client": dict(TLS),
         "script": [S(GREETING), W(EHLO), S(CAPS_PIPE.replace("250 DSN", "250 STARTTLS")),
                    W("STARTTLS\r\n"), S("220 go ahead\r\n"), ["tls"], W(EHLO),
                    S("250-mail.test\r\n250 AUTH PLAIN\r\n"),
                    W("AUTH PLAIN %s\r\n" % PLAIN_IR), S("235 2.7.0 ok\r\n"), W(MAIL),
                    S("250 ok\r\n"),
                    W("RCPT TO:<ops@example.org>\r\n"), S("250 ok\r\n"), W("DATA\r\n"),
                    S("354 go\r\n")] + sent + W_QUIT, "expect": "SUCCESS", "secure": True},
        # Without the keyword nothing is grouped: one command a write, QUIT after the 250.
        {"name": "no_pipelining_one_command_a_write",
         "script": [S(GREETING), W(EHLO), S(CAPS_NOAUTH), W(MAIL), S("250 ok\r\n"),
                    W("RCPT TO:<ops@example.org>\r\n"), S("250 ok\r\n"), W("DATA\r\n"),
                    S("354 go\r\n")] + sent + W_QUIT, "expect": "SUCCESS"},
        # Sessions (client.session()): "." goes alone (another mail may follow); a mail
        # refused in its group is heard out, RSET, and the next group goes.
        {"name": "pipelined_session_mail_refused_rset_next",
         "send": {"mails": [{}, {}]}, "statuses": ["MAIL_REPLY_ERROR", "SUCCESS"],
         "script": start + [group()] + replies("550 5.7.1 sender denied", NEED_MAIL, NEED_RCPT)
         + rset + [group(), S("250 ok\r\n250 ok\r\n354 go\r\n")] + sent + W_QUIT,
         "expect": "MAIL_REPLY_ERROR", "step": "MAIL", "reply_code": 550},
        {"name": "pipelined_session_lone_dot_rset_next",
         "send": {"mails": [{"to": ["a@example.org"]}, {}]},
         "statuses": ["RCPT_REPLY_ERROR", "SUCCESS"],
         "script": start + [group(["a@example.org"])]
         + replies("250 ok", "550 5.1.1 unknown", "354 go") + [W(".\r\n"), S(NO_RCPT + "\r\n")]
         + rset + [group(), S("250 ok\r\n250 ok\r\n354 go\r\n")] + sent + W_QUIT,
         "expect": "RCPT_REPLY_ERROR", "refused": [["a@example.org", 550]]},
        {"name": "pipelined_session_two_mails",
         "send": {"mails": [{}, {"to": list(TWO)}]}, "statuses": ["SUCCESS", "SUCCESS"],
         "script": start + [group(), S("250 ok\r\n250 ok\r\n354 go\r\n")] + sent
         + [group(TWO), S("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")] + sent + W_QUIT,
         "expect": "SUCCESS"},
    ]
    return out


# --- SIZE (RFC 1870) ---------------------------------------------------------------------
# The client declares SIZE= on MAIL when it knows the body's length: its bytes (UTF-8, before
# any encoding) plus protocol.py's _HEAD_ROOM, the most a header block takes, so the estimate
# is not under the real size (tests/test_engine.py checks that against what a server got).
# It refuses a mail over the server's limit before MAIL. Scripted here for the exact lines
# and replies; a real server's limit: tests/test_engine.py (aiosmtpd).
HEAD_ROOM = protocol._HEAD_ROOM  # 600 at the engine's landing


def caps_size(limit):
    return "250-mail.test\r\n250-SIZE%s\r\n250-8BITMIME\r\n250 DSN\r\n" % limit


def size_mail(body, extra=""):
    return "MAIL FROM:<dev@example.org> SIZE=%d%s\r\n" % (
        len(body.encode()) + HEAD_ROOM, extra)


def sizes():
    body = "Temperature 92 C\n"
    hot = "92 \u00b0C\n"  # 6 characters, 7 bytes: SIZE counts bytes
    limit = 1000  # a body of limit - HEAD_ROOM bytes fits exactly; one byte more does not
    fits, over = "x" * (limit - HEAD_ROOM), "x" * (limit - HEAD_ROOM + 1)
    big = "0123456789\n" * 100  # over 1000 - HEAD_ROOM bytes, under no limit here
    start = [S(GREETING), C(EHLO)]
    out = [
        {"name": "size_declared", "script": session(
            caps=caps_size(" 1000000"), mail=size_mail(body)), "expect": "SUCCESS"},
        {"name": "size_declared_in_bytes_with_8bitmime", "send": {"body": hot},
         "script": session(caps=caps_size(" 1000000"), mail=size_mail(hot, " BODY=8BITMIME")),
         "expect": "SUCCESS"},
        {"name": "size_at_the_limit_sent", "send": {"body": fits},
         "script": session(caps=caps_size(" %d" % limit), mail=size_mail(fits)),
         "expect": "SUCCESS"},
        # Nothing of the mail goes: no MAIL line (then QUIT, as after any refusal).
        {"name": "size_over_the_limit_refused_before_mail", "send": {"body": over},
         "script": start + [S(caps_size(" %d" % limit))] + QUIT,
         "expect": "OVERSIZE_MAIL_DATA", "step": "MAIL", "reply_code": None,
         "temporary": False, "error_contains": str(limit), "wire_excludes": ["MAIL"]},
        {"name": "size_552_at_mail", "script": start + [
            S(caps_size(" 1000000")), C(size_mail(body)),
            S("552 5.3.4 Message size exceeds fixed limit\r\n")] + QUIT,
         "expect": "OVERSIZE_MAIL_DATA", "step": "MAIL", "reply_code": 552},
        {"name": "size_552_after_dot", "script": start + [
            S(caps_size(" 1000000")), C(size_mail(body)), S("250 ok\r\n"),
            C("RCPT TO:<ops@example.org>\r\n"), S("250 ok\r\n"), C("DATA\r\n"),
            S("354 go\r\n"), ["C*", END], S("552 5.3.4 Message too big\r\n")] + QUIT,
         "expect": "OVERSIZE_MAIL_DATA", "step": "MESSAGE", "reply_code": 552},
    ]
    # RFC 3463's "too big" codes under another reply code (OpenSMTPD: 554 5.3.4) are
    # OVERSIZE_MAIL_DATA too; a longer code or another subject is not.
    for code, text, expect in (("554", "5.3.4 Message too big for system", "OVERSIZE_MAIL_DATA"),
                               ("550", "5.2.3 Message length exceeds limit",
                                "OVERSIZE_MAIL_DATA"),
                               ("554", "5.3.40 unknown", "MESSAGE_REPLY_ERROR"),
                               ("554", "5.7.1 Rejected by policy", "MESSAGE_REPLY_ERROR")):
        name = "too_big_after_dot_%s_%s" % (code, text.split()[0])
        out.append({"name": name, "script": start + [
            S(caps_size(" 1000000")), C(size_mail(body)), S("250 ok\r\n"),
            C("RCPT TO:<ops@example.org>\r\n"), S("250 ok\r\n"), C("DATA\r\n"),
            S("354 go\r\n"), ["C*", END], S("%s %s\r\n" % (code, text))] + QUIT,
            "expect": expect, "step": "MESSAGE", "reply_code": int(code),
            "reply": text})
    out += [
        # §6: 552 to every RCPT means too big for all of them.
        {"name": "size_552_to_every_rcpt", "send": {"to": list(TWO)}, "script": start + [
            S(caps_size(" 1000000")), C(size_mail(body)), S("250 ok\r\n"),
            C("RCPT TO:<a@example.org>\r\n"), S("552 5.2.2 over quota\r\n"),
            C("RCPT TO:<b@example.org>\r\n"), S("552 5.2.2 over quota\r\n"),
            C("RSET\r\n"), S("250 ok\r\n")] + QUIT,
         "expect": "OVERSIZE_MAIL_DATA", "step": "RCPT"},
        # "SIZE" alone, or SIZE 0: no limit (§4); the size is declared all the same.
        {"name": "size_without_a_number_no_limit", "send": {"body": big},
         "script": session(caps=caps_size(""), mail=size_mail(big)), "expect": "SUCCESS"},
        {"name": "size_zero_no_limit", "send": {"body": big},
         "script": session(caps=caps_size(" 0"), mail=size_mail(big)), "expect": "SUCCESS"},
        # A stream read once has no known length: no SIZE=, and no limit to check.
        {"name": "size_unknown_for_a_stream", "send": {"body_repeat": ["0123456789\n", 100]},
         "script": session(caps=caps_size(" 1000"),
                           mail="MAIL FROM:<dev@example.org> BODY=8BITMIME\r\n"),
         "expect": "SUCCESS"},
        {"name": "size_not_declared_without_the_keyword", "script": start + [
            S(CAPS_NOAUTH), W(MAIL), S("250 ok\r\n"), C("RCPT TO:<ops@example.org>\r\n"),
            S("250 ok\r\n"), C("DATA\r\n"), S("354 go\r\n"), ["C*", END],
            S("250 ok\r\n")] + QUIT, "expect": "SUCCESS", "wire_excludes": ["SIZE="]},
        # With PIPELINING too: SIZE= is on the group's MAIL.
        {"name": "size_declared_in_a_pipelined_group",
         "script": start + [S(CAPS_PIPE.replace("250 DSN", "250 SIZE 1000000")),
                            group(mail=size_mail(body)),
                            S("250 ok\r\n250 ok\r\n354 go\r\n"), DOT_QUIT,
                            S("250 queued\r\n221 bye\r\n")], "expect": "SUCCESS"},
    ]
    return out


def all_scenarios():
    return (matrix() + netx() + more() + tls_scenarios() + pinned_scenarios() + hardening()
            + pipelining() + sizes())
