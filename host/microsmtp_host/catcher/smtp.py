"""The catcher's SMTP side: an aiosmtpd controller on a socket bound beforehand, AUTH, and
aiosmtpd's log lines made one escaped line each. aiosmtpd is imported when a catcher starts."""

from .store import clean

SMTP_SIZE_LIMIT = 32 * 1024 * 1024  # aiosmtpd's own default DATA limit


def escape(text):
    """Text for a terminal or a log line: control, format and separator characters (ESC, CR,
    LF, C1, bidi overrides, undecodable bytes) as \\xNN or \\uNNNN, the rest as it is."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(
        ("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c))
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)


def quiet_aiosmtpd_deprecation(record):
    # aiosmtpd 1.4 itself sets the deprecated Session.login_data on every successful AUTH
    # and logs a warning about it each time: noise for the catcher's user.
    return "login_data is deprecated" not in record.getMessage()


def one_escaped_line(record):
    # A filter on aiosmtpd's logger ("mail.log"): its records carry client bytes (an
    # unrecognised command is logged as sent, ESC and all), and an exception would add a
    # traceback; each record becomes one line with everything escaped.
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        text += ": %s: %s" % (type(error).__name__, error)
        record.exc_info = record.exc_text = None
    record.msg, record.args = escape(text), None
    return True


def install_log_filters():
    import logging

    mail_log = logging.getLogger("mail.log")  # aiosmtpd's logger
    for log_filter in (quiet_aiosmtpd_deprecation, one_escaped_line):
        if log_filter not in mail_log.filters:
            mail_log.addFilter(log_filter)


def bound_controller(handler, sock, smtp_class=None, **kwargs):
    """An aiosmtpd Controller for `handler` serving `sock`, bound and not yet listening.
    kwargs: the Controller's and aiosmtpd SMTP's (hostname: the socket's address unless
    given); smtp_class: an aiosmtpd SMTP subclass to serve each connection with.

    aiosmtpd 1.4's Controller binds host:port itself and then connects to that port to
    check it is up, so it cannot take port 0; serving a socket bound beforehand gives any
    free port with no window for another process to take it. The tests' servers are made
    here too (tests/servers.py)."""
    from aiosmtpd.controller import Controller

    class BoundController(Controller):
        def _create_server(self):
            return self.loop.create_server(self._factory_invoker, sock=sock,
                                           ssl=self.ssl_context)

        def factory(self):
            if smtp_class is None:
                return super().factory()
            return smtp_class(self.handler, **self.SMTP_kwargs)

    kwargs.setdefault("hostname", sock.getsockname()[0])
    return BoundController(handler, port=sock.getsockname()[1], **kwargs)


def make_controller(catcher, sock):
    """An aiosmtpd Controller for `catcher` serving `sock` (bound, not yet listening)."""
    tls = catcher.tls_context
    return bound_controller(
        SMTPHandler(catcher), sock, hostname=catcher.host,
        server_hostname="localhost", ident="microsmtp catcher",
        authenticator=Authenticator(catcher.auth), auth_require_tls=tls is not None,
        tls_context=tls, require_starttls=False, enable_SMTPUTF8=True,
        data_size_limit=min(SMTP_SIZE_LIMIT, catcher.max_bytes))


class Authenticator:
    """auth None: any AUTH PLAIN/LOGIN credentials are accepted (a board configured for the
    real server works unchanged); (user, password): exactly these."""

    def __init__(self, auth):
        self.auth = auth

    def __call__(self, server, session, envelope, mechanism, auth_data):
        import secrets

        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if self.auth is None:
            return AuthResult(success=True, auth_data=auth_data)
        user, password = (s.encode() for s in self.auth)
        ok = (secrets.compare_digest(auth_data.login, user)
              & secrets.compare_digest(auth_data.password, password))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class SMTPHandler:
    def __init__(self, catcher):
        self.catcher = catcher

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Checked here rather than with aiosmtpd's auth_required=True, which warns when
        # there is no TLS; the effect is the same: with --auth, no AUTH, no mail.
        if self.catcher.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if getattr(server, "_tls_protocol", None) is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            key, summary = self.catcher.deliver(raw, envelope.mail_from, envelope.rcpt_tos,
                                                session.peer, session.host_name, protocol)
        except Exception as e:  # disk full, permissions: tell the client, keep serving
            return "451 4.3.0 Could not store the message: %s" % clean(str(e))[:200]
        if self.catcher.on_message is not None:
            try:
                self.catcher.on_message(summary)
            except Exception:
                pass
        return "250 2.0.0 OK stored as %s" % key

    async def handle_exception(self, error):
        # Without this hook aiosmtpd logs every exception with a 20-line traceback. A client
        # that aborts the TLS handshake (a board given the wrong CA) is an everyday event and
        # gets one line; anything else one line too, with the reply aiosmtpd would send.
        import logging

        from aiosmtpd.smtp import TLSSetupException

        log = logging.getLogger("mail.log")
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            reason = (getattr(cause, "reason", None) or str(cause or "")
                      or "the client closed the connection")
            hint = (" (does the client trust this certificate? a board needs the catcher's CA "
                    "as cadata)") if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason else ""
            log.warning("STARTTLS failed, TLS handshake aborted: %s%s", reason, hint)
            return "454 4.7.0 TLS handshake failed"  # aiosmtpd closes the connection anyway
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return "500 Error: (%s) %s" % (type(error).__name__, clean(str(error))[:200])
