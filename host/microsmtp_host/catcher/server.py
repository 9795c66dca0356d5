"""Catcher: the SMTP server and the web server on loopback over one MaildirStore."""

import threading
from pathlib import Path

from .store import MaildirStore

DEFAULT_SMTP_PORT = 2525
DEFAULT_HTTP_PORT = 8025
DEFAULT_MAX_MESSAGES = 1000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
LOCAL_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def loopback_host(host):
    """The loopback address to listen on for `host`; ValueError if it is not loopback."""
    import ipaddress

    if host.lower() in LOCAL_NAMES:
        return "::1" if host.lower().startswith("ip6") else "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError("--host %r is not an IP address or localhost" % host) from None
    if not addr.is_loopback:
        raise ValueError("--host %s is not a loopback address: the catcher is a local tool "
                         "(use 127.0.0.1 or ::1)" % host)
    return str(addr)


def _family(host):
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Catcher:
    """An SMTP server and a web page on loopback over one Maildir.

    Port 0 means any free port; after start(), smtp_port and http_port are the bound ones.
    auth: None (AUTH optional, any credentials accepted) or (user, password) (AUTH PLAIN or
    LOGIN with exactly these, required before MAIL). tls_context: an ssl server context to
    offer STARTTLS with; AUTH is then accepted only after STARTTLS. on_message(summary) is
    called from the SMTP thread after each mail is stored. After each mail, the oldest mails
    are deleted from the Maildir until at most max_messages files and max_bytes bytes remain
    (a mail bigger than max_bytes is refused with 552 before it is stored)."""

    def __init__(self, maildir, host="127.0.0.1", smtp_port=DEFAULT_SMTP_PORT,
                 http_port=DEFAULT_HTTP_PORT, auth=None, tls_context=None, on_message=None,
                 lan=False, max_messages=DEFAULT_MAX_MESSAGES, max_bytes=DEFAULT_MAX_BYTES):
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be at least 1")
        self.maildir = Path(maildir)
        self.store = MaildirStore(self.maildir, max_messages, max_bytes)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        # lan=True: `make hwtest`, where a real board on the LAN must reach the catcher.
        self.host = host if lan else loopback_host(host)
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.auth = auth
        self.tls_context = tls_context
        self.on_message = on_message
        self._controller = None
        self._smtp_sock = None
        self._http = None
        self._http_thread = None

    @property
    def url_host(self):
        return "[%s]" % self.host if ":" in self.host else self.host

    @property
    def smtp_address(self):
        return "%s:%d" % (self.url_host, self.smtp_port)

    @property
    def web_url(self):
        return "http://%s:%d/" % (self.url_host, self.http_port)

    # -- lifecycle

    def start(self):
        """Open the Maildir, bind both ports, serve. OSError if a port is taken."""
        import socket
        from http.server import ThreadingHTTPServer

        from .smtp import install_log_filters, make_controller
        from .web import handler_class

        install_log_filters()
        self.store.open()
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.smtp_port))
            self.smtp_port = sock.getsockname()[1]

            catcher = self

            class WebServer(ThreadingHTTPServer):
                address_family = _family(self.host)
                daemon_threads = True

                def server_bind(self):
                    # HTTPServer's own server_bind asks DNS for the host's name: not needed.
                    import socketserver

                    socketserver.TCPServer.server_bind(self)
                    self.server_name, self.server_port = catcher.host, self.server_address[1]

            self._http = WebServer((self.host, self.http_port), None, bind_and_activate=True)
            self.http_port = self._http.server_address[1]
            self._http.RequestHandlerClass = handler_class(self)
            self._smtp_sock = sock
            self._controller = make_controller(self, sock)
            self._controller.start()
        except BaseException:
            sock.close()
            if self._http is not None:
                self._http.server_close()
                self._http = None
            self._controller = self._smtp_sock = None
            raise
        self._http_thread = threading.Thread(target=self._http.serve_forever,
                                             kwargs={"poll_interval": 0.1},
                                             name="microsmtp-catcher-http", daemon=True)
        self._http_thread.start()
        return self

    def stop(self):
        """Stop both servers; safe to call twice or after a failed start."""
        if self._controller is not None:
            try:
                self._controller.stop()
            finally:
                self._controller = None
        if self._smtp_sock is not None:
            self._smtp_sock.close()
            self._smtp_sock = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the Maildir (MaildirStore's methods, for the tools and tests that use a Catcher)

    def deliver(self, raw, mail_from, rcpt_tos, peer=None, helo=None, protocol="ESMTP"):
        """Store one mail (bytes as received) in the Maildir; its key and summary."""
        return self.store.deliver(raw, mail_from, rcpt_tos, peer, helo, protocol)

    def messages(self, query=None):
        """MaildirStore.messages(): every mail, newest first (only matches of `query`)."""
        return self.store.messages(query)

    def message(self, key):
        """MaildirStore.message(): one mail with its headers and raw source, or None."""
        return self.store.message(key)

    def body(self, key):
        """The whole text body of a stored mail, read from the Maildir now; None if gone."""
        return self.store.body(key)

    def attachment(self, key, index):
        """(filename, content_type, bytes) of a message's attachment, or None."""
        return self.store.attachment(key, index)

    def delete(self, key):
        """Delete one mail from the Maildir; False if there is no such key."""
        return self.store.delete(key)

    def clear(self):
        """Delete every mail from the Maildir; how many were deleted."""
        return self.store.clear()

    def status(self):
        """What /status.json says: addresses, the Maildir, the caps, the mail count."""
        return {"smtp": self.smtp_address, "web": self.web_url, "maildir": str(self.maildir),
                "messages": self.store.count(), "max_messages": self.max_messages,
                "max_bytes": self.max_bytes, "auth_required": self.auth is not None,
                "starttls": self.tls_context is not None}
