"""`microsmtp catch`: a local SMTP catcher for trying alerts without a real mail server.

An aiosmtpd server on loopback takes every mail and stores it, as received, in a Maildir
(the Maildir is the source of truth: delete a file there and it is gone from the page too);
a web page on loopback lists the alerts newest first (a marker on high-priority ones, a
search over subject, sender and recipients), shows one mail with its headers and raw source,
its Cc and Bcc (envelope recipients in neither To nor Cc) and its HTML part (sandboxed, with
its inline images, nothing remote), deletes one or all, and refreshes itself as mail
arrives. docs/CATCHER.md documents the page and its JSON API.

    microsmtp catch                      SMTP on 127.0.0.1:2525, web page on 127.0.0.1:8025
    microsmtp catch --auth alerts:secret AUTH PLAIN/LOGIN required with these credentials
    microsmtp catch --max-messages 50    keep only the 50 newest mails (oldest deleted first)

Without --auth, AUTH is optional and any credentials are accepted, so a board configured for
the real server can be pointed at the catcher unchanged (with allow_plaintext_auth=True, or
with --tls-cert/--tls-key for STARTTLS). `Catcher` is the reusable part (tests, demos).

Whatever a client sends stays bounded here: the Maildir keeps at most --max-messages mails
and --max-bytes bytes (the oldest go first), memory holds a short summary per mail (bodies
and attachments are read from the Maildir when asked for), and every log line shows client
bytes escaped, one line per event.

The package: store.py (the Maildir), smtp.py (aiosmtpd handler, AUTH, log lines), web.py
(HTTP handler, JSON API), static/ (the page: index.html, catcher.css, catcher.js, the one
renderer), server.py (Catcher: both servers over one store), command.py (the CLI).
Only stdlib modules are imported at module level; aiosmtpd, email, mailbox and http.server
are imported when a catcher starts."""

from .command import add_parser, default_maildir, log_line, run
from .server import Catcher, loopback_host
from .store import HEADER_CHARS, MAX_LISTED, PREVIEW_CHARS, VIEW_CHARS, parse_message

__all__ = ["Catcher", "add_parser", "run", "log_line", "default_maildir", "loopback_host",
           "parse_message", "PREVIEW_CHARS", "VIEW_CHARS", "HEADER_CHARS", "MAX_LISTED"]
