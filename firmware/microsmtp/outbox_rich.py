# microsmtp: the outbox's rich mails — put() with send()'s cc=, bcc=, reply_to=, headers=,
# html=, attachments= (or a display name), and their files read back at flush. MIT licence.
# Loaded at the first such put() or file: an outbox of plain alerts never holds this
# bytecode, nor its names (a board's heap interns them at import: outbox.py alone went up
# 2.2 KB with this code in it, measured on the unix port).
#
# The file: the JSON line, its fields under "rich" (cc, bcc, reply_to, headers as given;
# "body": the body's length; html and each copied attachment's data as [offset, length]
# from the byte after the line, an attachment read at flush as {"path": name}); then the
# body, the HTML and the copied attachments, one after the other. A retry for some of the
# recipients adds "rcpt" beside "rich" (outbox.py's _done): the headers stay as they were.
import binascii
import json
import os
import time

from . import message, mime
from .outbox import _sync
from .status import SMTPError

_OUTBOX_FULL = 0xC6  # the package's OUTBOX_FULL


class Path:
    """outbox.Path(name): an attachment's data read from this file when the mail is sent."""

    def __init__(self, name):
        message.check(name, "Path", message.TEXT)  # a str, no control character
        if not name:
            raise ValueError("Path needs a file name")
        self.name = name

    def __repr__(self):
        return "Path(%r)" % self.name


class _Part:
    """Bytes [start, start + size) of an open outbox file as a file of their own
    (readinto, tell, seek), for mime.py to stream: a copied attachment is never read
    into RAM whole. Parts of one file share its handle: each seeks to its place."""

    def __init__(self, f, start, size):
        self.f = f
        self.start = start
        self.size = size
        self.pos = 0

    def tell(self):
        return self.pos

    def seek(self, pos, whence=0):
        pos += self.pos if whence == 1 else self.size if whence == 2 else 0
        self.pos = 0 if pos < 0 else self.size if pos > self.size else pos
        return self.pos

    def readinto(self, buf):
        n = self.size - self.pos
        if n <= 0:
            return 0
        self.f.seek(self.start + self.pos)
        # (A view only for the last, short chunk: 16 B, once a part.)
        n = self.f.readinto(buf if n >= len(buf) else memoryview(buf)[:n]) or 0
        self.pos += n
        return n

    def close(self):  # the file is the outbox's to close
        pass


def _is_file(name):
    try:
        return os.stat(name)[0] & 0xF000 == 0x8000  # S_IFREG
    except OSError:
        return False


def _too_big():
    return SMTPError(_OUTBOX_FULL, "The message is bigger than the outbox (OUTBOX).", "OUTBOX")


def _is_path(a):
    return isinstance(a, tuple) and len(a) > 2 and isinstance(a[2], Path)


def put(box, to, subject, body, priority, rich):
    """Outbox.put of a rich mail: checked by mime.py as send() checks it (a Path's data
    as an empty attachment), then written to tmp/ whole (the parts copied: an iterator's
    length is known only then), made room for, and renamed into place; its name."""
    files = rich.get("attachments")
    checked = rich
    if (isinstance(files, list) or isinstance(files, tuple)) and files:
        checked = dict(rich)
        checked["attachments"] = [a[:2] + (b"",) + a[3:] if _is_path(a) else a for a in files]
        for a in files:
            if _is_path(a) and not _is_file(a[2].name):
                raise ValueError("attachment %r: %s is not a file" % (a[0], a[2].name))
    envelope = mime.envelope(to, checked)
    message.check_mail(envelope, subject, priority)  # as ClientSession.send
    if isinstance(body, str):
        body = body.encode()
    elif not (isinstance(body, bytes) or isinstance(body, bytearray)):
        raise TypeError("an outbox body is str or bytes")
    # outbox.py's head line (put() of a plain mail) and "rich".
    head = {"to": [to] if isinstance(to, str) else list(to), "subject": subject,
            "priority": priority, "time": int(time.time()),
            "id": binascii.hexlify(os.urandom(12)).decode()}
    fields = {"body": len(body)}
    head["rich"] = fields
    copies = [(body, None)]
    for key in ("cc", "bcc", "reply_to"):  # (None, as send() takes it: none)
        if rich.get(key) is not None:
            fields[key] = rich[key]
    h = rich.get("headers")
    if h is not None:
        fields["headers"] = list(h.items() if isinstance(h, dict) else h)
    if rich.get("html") is not None:
        fields["html"] = _place(box, rich["html"], copies)
    if files:
        fields["attachments"] = [list(a[:2]) + [{"path": a[2].name} if _is_path(a) else
                                                _place(box, a[2], copies)] + list(a[3:])
                                 for a in files]
    name = box._name()
    tmp = box.path + "/tmp/" + name
    try:
        with open(tmp, "wb") as f:
            # The line first with each place at its widest (no part is longer than
            # max_bytes), the parts after it, then the line again over it with their
            # places, padded with spaces (JSON allows them): one file, one rename.
            line = json.dumps(head).encode()
            width = len(line)
            f.write(line)
            f.write(b"\n")
            line = None
            at = 0
            room = box.max_bytes - width - 1
            for data, place in copies:
                n = _copy(data, f, room - at)
                if place is not None:
                    place[0] = at
                    place[1] = n
                at += n
            line = json.dumps(head).encode()
            f.seek(0)
            f.write(line)
            f.write(b" " * (width - len(line)))
            _sync(f)
        box._room(width + 1 + at)
    except BaseException:  # refused, or the copy failed: nothing queued
        if _is_file(tmp):
            os.remove(tmp)
        raise
    os.rename(tmp, box.path + "/" + name)
    return name


def _place(box, data, copies):
    """A part to copy after the body: its [offset, length], filled in as it is."""
    place = [box.max_bytes, box.max_bytes]
    copies.append((data, place))
    return place


def _copy(data, f, room):
    """data (str, bytes, a file from where it stands, an iterator of str or bytes chunks)
    written to f; its length. More than room: SMTPError(OUTBOX_FULL)."""
    n = 0
    if hasattr(data, "readinto"):  # through one buffer: a file is never read whole
        buf = bytearray(256)
        while True:
            k = data.readinto(buf) or 0
            if not k:
                return n
            n += k
            if n > room:
                raise _too_big()
            f.write(buf if k == 256 else memoryview(buf)[:k])  # (a view: the last only)
    if not (isinstance(data, str) or isinstance(data, bytes) or
            isinstance(data, bytearray) or isinstance(data, memoryview)):
        for chunk in data:  # an iterator: consumed now
            n += _copy(chunk, f, room - n)
        return n
    if isinstance(data, str):
        data = data.encode()
    if len(data) > room:
        raise _too_big()
    f.write(data)
    return len(data)


def read(f, head, files):
    """A rich mail read back from f (just after its line): (its keywords for send(), its
    body, its envelope), held to mime.py's checks as put() held it (a tampered file must
    not inject): ValueError, TypeError or KeyError if it is not. Copied parts are _Parts
    of f, checked to lie within it; a Path's file is opened (onto files), OSError with
    the attachment's name if it cannot be."""
    fields = head["rich"]
    base = f.tell()
    size = f.seek(0, 2) - base
    rich = {}
    for key in fields:
        value = fields[key]
        if key == "cc" or key == "bcc" or key == "reply_to":
            rich[key] = value
        elif key == "headers":
            if not isinstance(value, list):
                raise TypeError("headers is a list of (name, value)")
            rich[key] = [tuple(h) if isinstance(h, list) else h for h in value]
        elif key == "html":
            rich[key] = _slice(f, base, size, value)
        elif key == "attachments":
            if not isinstance(value, list):
                raise TypeError("attachments is a list")
            rich[key] = [_file(f, base, size, a, files) for a in value]
        elif key != "body":
            raise ValueError("unknown rich field %r" % key)
    body = _slice(f, base, size, [0, fields["body"]])
    envelope = mime.envelope(head["to"], rich)
    message.check_mail(envelope, head["subject"], head.get("priority",
                                                           message.PRIORITY_NORMAL))
    rcpt = head.get("rcpt")  # the recipients still owed it
    if rcpt is not None:
        envelope = rich["envelope"] = mime.only(envelope, rcpt)
    return rich, body, envelope


def _slice(f, base, size, place):
    """[offset, length] of the data after the head line, checked to lie within it."""
    if not isinstance(place, list) or len(place) != 2:
        raise TypeError("a part's place is [offset, length]")
    off, n = place
    if not (isinstance(off, int) and isinstance(n, int) and 0 <= off and 0 <= n and
            off + n <= size):
        raise ValueError("a part's place %r is outside the file" % (place,))
    return _Part(f, base + off, n)


def _file(f, base, size, a, files):
    """An attachment: (filename, type, data[, content ID]), its data a _Part of f or its
    Path's file, open."""
    if not isinstance(a, list) or not 3 <= len(a) <= 4:
        raise TypeError("an attachment is [filename, type, data(, content ID)]")
    data = a[2]
    if isinstance(data, dict):
        name = data["path"]
        message.check(name, "Path", message.TEXT)
        try:
            if os.stat(name)[0] & 0xF000 != 0x8000:  # a folder, a device
                raise OSError("not a regular file")
            data = open(name, "rb")
        except OSError as e:
            raise OSError("attachment %s: its file %s cannot be read (%s)" % (
                a[0], name, e)) from None
        files.append(data)
    else:
        data = _slice(f, base, size, data)
    return (a[0], a[1], data) + tuple(a[3:])
