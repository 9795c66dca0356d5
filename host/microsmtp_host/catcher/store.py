"""The catcher's Maildir: every mail stored as received, one file each, and read back from there.

The Maildir is the source of truth: a file deleted there (by a mail client, by hand, from the
web page) is gone from the page too. Memory holds a bounded summary per mail (parse_message);
bodies, headers, raw source and attachments are read from the file when asked for. A key is
looked up among the Maildir's own file names, never joined into a path, so any string a web
client sends is safe to pass in."""

import os
import threading
import time

PREVIEW_CHARS = 4096  # characters of a body kept in memory, in the list and its JSON
VIEW_CHARS = 65536  # characters of a body, and bytes of raw source, in one message's view
HEADER_CHARS = 1000  # of a subject, an address, a file name, a header value
MAX_LISTED = 100  # recipients, attachments and headers listed per mail
QUERY_CHARS = 200  # of a search


def clean(text):
    """One printable line: control characters (CR, LF, ESC, ...) become spaces."""
    return "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text).strip()


# --------------------------------------------------------------------------- parsing

def _parse(raw):
    import email
    import email.policy

    return email.message_from_bytes(raw, policy=email.policy.default)


def _text_of(part):
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken encoding: show what can be shown
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return content if isinstance(content, str) else str(content)


def _header(msg, name):
    try:
        value = msg.get(name)
    except Exception:  # a header the parser cannot make sense of
        value = None
    return "" if value is None else str(value)


def _headers(msg):
    """[(name, decoded value)] of the first MAX_LISTED headers, each value one line cut at
    HEADER_CHARS; and how many headers there are."""
    out = []
    items = list(msg.raw_items())
    for name, raw_value in items[:MAX_LISTED]:
        try:
            value = str(msg.policy.header_fetch_parse(name, raw_value))
        except Exception:  # undecodable: the value as it came
            value = str(raw_value)
        out.append((clean(name)[:HEADER_CHARS], clean(value)[:HEADER_CHARS]))
    return out, len(items)


def _priority(msg):
    """'high', 'normal' or 'low' from X-Priority (1-2 high, 4-5 low, as microsmtp and most
    clients send it), else Importance (RFC 2156's high/low), else Priority (urgent)."""
    x_priority = _header(msg, "X-Priority").strip()[:1]
    if x_priority in ("1", "2"):
        return "high"
    if x_priority in ("4", "5"):
        return "low"
    importance = _header(msg, "Importance").strip().lower()
    if importance in ("high", "low"):
        return importance
    priority = _header(msg, "Priority").strip().lower()
    return {"urgent": "high", "non-urgent": "low"}.get(priority, "normal")


def _body_part(msg):
    try:
        return msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        return None


def _attachment_parts(msg, body):
    """Every leaf part that is not the body shown: attachments, inline images, ... ."""
    parts = []
    for part in msg.walk():
        if part.is_multipart() or part is body:
            continue
        if (part.get_content_maintype() == "text" and not part.is_attachment()
                and not part.get_filename()):
            continue  # another rendering of the body (the HTML alternative)
        parts.append(part)
    return parts


def _filename(part, index):
    try:
        name = part.get_filename()
    except Exception:
        name = None
    name = clean(name or "")[:HEADER_CHARS].replace("/", "_").replace("\\", "_")
    return name or "attachment-%d" % (index + 1)


def _addresses(text):
    return [a.strip() for a in text.split(",") if a.strip()]


def _header_addresses(msg, name):
    """[(shown, addr-spec)] of every address in every `name` header (To, Cc), as parsed by
    the email package (a display name may hold a comma); [] if there is none or it is
    beyond parsing."""
    found = []
    try:
        for value in msg.get_all(name) or ():
            for addr in getattr(value, "addresses", ()):
                found.append((str(addr), addr.addr_spec or ""))
    except Exception:  # a header the parser cannot make sense of: shown among the headers
        return []
    return found


def _content_id(part):
    """A part's Content-ID without its <>, or ''."""
    return clean(_header(part, "Content-ID")).strip().strip("<>").strip()


def _is_inline_image(part):
    """An image part the HTML can show by its Content-ID (cid: URL, RFC 2392). Only images:
    anything else a cid: may name is not inlined (and stays a download)."""
    return part.get_content_maintype() == "image" and bool(_content_id(part))


def _html_part(msg):
    try:
        return msg.get_body(preferencelist=("html",))
    except Exception:
        return None


def parse_message(raw, delivered, body_chars=PREVIEW_CHARS):
    """A summary of one stored mail (bytes): the fields of MaildirStore.messages() but the key.

    Bounded whatever the mail holds: the body as a preview of `body_chars` characters (and
    its full length), headers cut at HEADER_CHARS, at most MAX_LISTED recipients and
    attachments, so that the catcher's memory does not grow with the mail."""
    return _summarise(_parse(raw), delivered, body_chars)


def _summarise(msg, delivered, body_chars):
    body = _body_part(msg)
    attachments, inline = [], []
    for i, part in enumerate(_attachment_parts(msg, body)[:MAX_LISTED]):
        payload = part.get_payload(decode=True) or b""
        ctype = part.get_content_type()[:HEADER_CHARS]
        attachments.append((_filename(part, i), ctype, len(payload)))
        if _is_inline_image(part):
            inline.append((i, _content_id(part)[:HEADER_CHARS], ctype, len(payload)))
    envelope = _addresses(_header(msg, "X-microsmtp-Rcpt-To"))
    to = envelope or _addresses(_header(msg, "To"))
    header_to = _header_addresses(msg, "To")
    cc = _header_addresses(msg, "Cc")
    # Bcc: whoever the mail was delivered to (RCPT TO, kept in the catcher's own
    # X-microsmtp-Rcpt-To) and named in neither To nor Cc. Compared case-insensitively: a
    # local part may be case-sensitive in theory, never in an alert's recipients.
    named = {spec.casefold() for _, spec in header_to + cc}
    bcc = [r for r in envelope if r.strip("<>").casefold() not in named]
    text = _text_of(body) if body is not None else ""

    def listed(addresses):
        return [clean(a)[:HEADER_CHARS] for a in addresses[:MAX_LISTED]]
    return {
        "time": delivered,
        "from": (_header(msg, "From") or _header(msg, "X-microsmtp-Mail-From"))[:HEADER_CHARS],
        "to": [a[:HEADER_CHARS] for a in to[:MAX_LISTED]],
        "envelope_from": _header(msg, "X-microsmtp-Mail-From")[:HEADER_CHARS],
        "subject": _header(msg, "Subject")[:HEADER_CHARS],
        "priority": _priority(msg),
        "body": text[:body_chars],
        "body_chars": len(text),
        "attachments": attachments,
        "header_to": listed([shown for shown, _ in header_to]),
        "cc": listed([shown for shown, _ in cc]),
        "bcc": listed(bcc),
        "has_html": _html_part(msg) is not None,
        "inline_images": inline,
    }


def _matches(summary, words):
    """Every word of the search (casefolded) is in the subject, the sender or a recipient."""
    text = " ".join([summary["subject"], summary["from"], summary["envelope_from"],
                     *summary["to"], *summary["header_to"], *summary["cc"]]).casefold()
    return all(word in text for word in words)


# --------------------------------------------------------------------------- the store

class MaildirStore:
    """One Maildir with a summary cache. Thread-safe: the SMTP thread delivers while the web
    server's threads list, read and delete."""

    def __init__(self, path, max_messages, max_bytes):
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._cache = {}  # Maildir key -> summary (bounded: parse_message)
        self._mailbox = None

    def open(self):
        """Create new/, cur/ and tmp/ if needed; ValueError for a folder that is no Maildir."""
        import mailbox

        path = self.path
        if path.exists() and not path.is_dir():
            raise ValueError("%s is not a folder" % path)
        if path.is_dir() and any(path.iterdir()) and not (path / "new").is_dir():
            raise ValueError("%s is a folder with files but not a Maildir (no new/)" % path)
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._mailbox = mailbox.Maildir(str(path), factory=None, create=False)

    # -- writing

    def deliver(self, raw, mail_from, rcpt_tos, peer=None, helo=None, protocol="ESMTP"):
        """Store one mail (bytes as received) with a Received trace and the envelope in
        X-microsmtp-* headers; then delete the oldest beyond the caps. Its key and summary."""
        from email.header import Header
        from email.utils import formatdate

        def value(text):
            text = clean(text)
            return text if text.isascii() else Header(text, "utf-8").encode(linesep="\r\n")

        now = time.time()
        peer_ip = peer[0] if isinstance(peer, (tuple, list)) and peer else "unknown"
        trace = ("Received: from %s ([%s])\r\n\tby microsmtp-catcher with %s;\r\n\t%s\r\n"
                 "X-microsmtp-Mail-From: %s\r\nX-microsmtp-Rcpt-To: %s\r\n"
                 % (value(helo or "unknown"), value(peer_ip), protocol,
                    formatdate(now, localtime=True), value(mail_from or ""),
                    value(", ".join(rcpt_tos))))
        with self._lock:
            key = self._mailbox.add(trace.encode("ascii") + raw)
            files = self._files()
            self._evict(files, keep=key)
        path, _size, mtime = files[key]
        return key, self._summary(key, path, mtime)

    def delete(self, key):
        """Delete one mail's file; False if there is no such key."""
        with self._lock:
            found = self._files().get(key)
            if found is None:
                return False
            self._unlink(key, found[0])
            return True

    def clear(self):
        """Delete every mail in new/ and cur/ (tmp/ holds deliveries under way); how many."""
        with self._lock:
            files = self._files()
            for key, (path, _size, _mtime) in files.items():
                self._unlink(key, path)
            return len(files)

    def _unlink(self, key, path):
        try:
            os.unlink(path)
        except FileNotFoundError:  # deleted meanwhile, by hand or by another request
            pass
        self._cache.pop(key, None)

    def _files(self):
        """{key: (path, size, mtime)} for every regular file in new/ and cur/, keyed as
        mailbox.Maildir keys them (the name up to its ':2,flags'); mtime is the delivery
        time. Symbolic links and folders are left out: nothing outside is read or deleted."""
        found = {}
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self.path / sub)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # moved or deleted meanwhile
                        continue
                    found[entry.name.split(":")[0]] = (entry.path, st.st_size, st.st_mtime)
        return found

    def _evict(self, files, keep):
        """Delete the oldest mails (never `keep`) until the caps hold; updates files."""
        count, total = len(files), sum(size for _, size, _ in files.values())
        for key in sorted(files, key=lambda k: (files[k][2], k)):
            if count <= self.max_messages and total <= self.max_bytes:
                break
            if key == keep:
                continue
            path, size, _ = files.pop(key)
            self._unlink(key, path)
            count, total = count - 1, total - size

    # -- reading

    def read(self, key, limit=None):
        """The bytes of a stored mail (the first `limit` of them), or None if there is no
        such key."""
        found = self._files().get(key)
        if found is None:
            return None
        try:
            with open(found[0], "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            return None

    def count(self):
        return len(self._files())

    def size(self, key):
        found = self._files().get(key)
        return None if found is None else found[1]

    def _summary(self, key, path, mtime):
        with self._lock:
            summary = self._cache.get(key)
            if summary is None:
                with open(path, "rb") as f:
                    raw = f.read()
                try:
                    summary = parse_message(raw, mtime)
                except Exception as e:  # keep listing the rest; the file stays as it is
                    summary = {"time": mtime, "from": "", "to": [], "envelope_from": "",
                               "priority": "normal", "attachments": [], "body": "",
                               "body_chars": 0, "header_to": [], "cc": [], "bcc": [],
                               "has_html": False, "inline_images": [],
                               "subject": "(unreadable message: %s)" % clean(str(e))[:200]}
                summary["key"] = key
                self._cache[key] = summary
            return summary

    def messages(self, query=None):
        """Every mail in the Maildir, newest first: dicts with key, time (epoch seconds),
        from, to (list), envelope_from, subject (decoded), priority ('high', 'normal',
        'low'), body (the first PREVIEW_CHARS characters of the text; body() reads all of
        it), body_chars (its full length), attachments [(filename, content_type, size)],
        header_to and cc (the To and Cc headers' addresses), bcc (envelope recipients in
        neither), has_html (a text/html part: html() reads it), inline_images
        [(attachment index, content_id, content_type, size)] (image parts with a Content-ID).
        With a query, only the mails whose subject, sender or recipients hold every one of
        its words (case-insensitive)."""
        files = self._files()
        with self._lock:
            for gone in set(self._cache) - set(files):
                del self._cache[gone]
        words = (query or "")[:QUERY_CHARS].casefold().split()
        found = []
        for key, (path, _size, mtime) in files.items():
            try:
                summary = self._summary(key, path, mtime)
            except FileNotFoundError:  # removed meanwhile
                continue
            if _matches(summary, words):
                found.append(summary)
        return sorted(found, key=lambda m: (m["time"], m["key"]), reverse=True)

    def message(self, key):
        """One mail in full, read from the Maildir now, or None: the fields of messages()
        with the body up to VIEW_CHARS, headers [(name, value)] (the first MAX_LISTED),
        headers_total, raw (the first VIEW_CHARS bytes of the file as text) and raw_size."""
        found = self._files().get(key)
        if found is None:
            return None
        path, size, mtime = found
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        summary = dict(self._summary(key, path, mtime))
        try:
            msg = _parse(raw)
            full = _summarise(msg, mtime, VIEW_CHARS)
            headers, total = _headers(msg)
        except Exception:  # unreadable: the summary says so; the raw source still shows
            full, headers, total = {}, [], 0
        summary.update(full)
        summary.update(headers=headers, headers_total=total, raw_size=size,
                       raw=raw[:VIEW_CHARS].decode("utf-8", "replace"))
        return summary

    def body(self, key):
        """The whole text body of a stored mail, read from the Maildir now; None if gone."""
        raw = self.read(key)
        if raw is None:
            return None
        part = _body_part(_parse(raw))
        return _text_of(part) if part is not None else ""

    def attachment(self, key, index):
        """(filename, content_type, bytes) of a message's attachment, or None."""
        raw = self.read(key)
        if raw is None:
            return None
        msg = _parse(raw)
        parts = _attachment_parts(msg, _body_part(msg))
        if not 0 <= index < len(parts):
            return None
        part = parts[index]
        return (_filename(part, index), part.get_content_type(),
                part.get_payload(decode=True) or b"")

    def html(self, key):
        """(html, {content_id: attachment index}) of a stored mail with a text/html part:
        the HTML as text (not yet made safe: web.py serves it sandboxed) and its inline
        images; None if there is no such mail or it has no HTML."""
        raw = self.read(key)
        if raw is None:
            return None
        msg = _parse(raw)
        part = _html_part(msg)
        if part is None:
            return None
        images = {}
        for i, p in enumerate(_attachment_parts(msg, _body_part(msg))):
            if _is_inline_image(p):
                images.setdefault(_content_id(p), i)
        return _text_of(part), images

    def inline_image(self, key, index):
        """(content_type, bytes) of attachment `index` if it is an image with a Content-ID
        (what an HTML part may show inline), else None."""
        raw = self.read(key)
        if raw is None:
            return None
        msg = _parse(raw)
        parts = _attachment_parts(msg, _body_part(msg))
        if not 0 <= index < len(parts) or not _is_inline_image(parts[index]):
            return None
        part = parts[index]
        return part.get_content_type(), part.get_payload(decode=True) or b""
