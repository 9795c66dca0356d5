# microsmtp: a durable outbox on flash — an alert raised while Wi-Fi or the server is down
# goes out when they return, and survives a reboot. Imported only by apps that use it.
# MIT licence.
#
# A message is one file: a JSON line (recipients, subject, priority) and then the body.
# A rich mail (put() with send()'s cc=, bcc=, reply_to=, headers=, html=, attachments=)
# has its fields under "rich" in that line, and its HTML and copied attachments after the
# body, each found by [offset, length] from the byte after the line; an attachment given
# as Path(name) is read from that file at flush time instead. put() writes it to tmp/,
# flushes and syncs, then renames it into place, so a power cut leaves either the whole
# message or none. flush() sends every due message over one SMTP
# session: 250 deletes the file; 4xx or a lost connection keeps it and waits (exponential
# backoff with jitter, in RAM: after a reboot everything is due at once); 5xx moves it to
# dead/ with the server's reply. Refusals at RCPT are judged per recipient: 4xx ones stay
# queued, 5xx ones go to dead/, the ones that took the mail are not sent it again. At
# least once: a connection lost after "." keeps the message, so it may arrive twice.
import binascii
import json
import os
import random
import time

from micropython import const

from . import message
from .status import SMTPError

OUTBOX_FULL = const(0xC6)  # the package's OUTBOX_FULL
REFUSE_NEW = const(0)  # when full: put() raises SMTPError(OUTBOX_FULL)
DROP_OLDEST = const(1)  # when full: the oldest queued messages go to make room

_BACKOFF_MAX_MS = const(3600000)  # retries at most an hour apart
_PACKET_ALLOCATE_ERROR = const(0xA6)  # the package's status for memory that ran out
_MESSAGE_FORMAT_ERROR = const(0xC5)
_LAST = const(99999999)  # names have 8 digits


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Path:
    """An attachment's data to read from this file when the mail is sent, not copied into
    the outbox: put(..., attachments=[("cam.jpg", "image/jpeg", Path("/flash/cam.jpg"))]).
    Gone or unreadable by then: the mail goes to dead/ with the reason, the rest goes on."""

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


def _is_file(path):
    return os.stat(path)[0] & 0xF000 == 0x8000  # S_IFREG


def _bytes(body):
    if isinstance(body, str):
        return body.encode()
    if not (isinstance(body, bytes) or isinstance(body, bytearray)):
        raise TypeError("an outbox body is str or bytes")
    return body


def _too_big():
    return SMTPError(OUTBOX_FULL, "The message is bigger than the outbox (OUTBOX).", "OUTBOX")


def _slice(f, base, size, place):
    """[offset, length] of the data after the head line, checked to lie within it."""
    if not isinstance(place, list) or len(place) != 2:
        raise TypeError("a part's place is [offset, length]")
    off, n = place
    if not (isinstance(off, int) and isinstance(n, int) and 0 <= off and 0 <= n and
            off + n <= size):
        raise ValueError("a part's place %r is outside the file" % (place,))
    return _Part(f, base + off, n)


def _close(mail):
    for h in mail[9]:
        h.close()


def _sync(f):
    f.flush()
    if hasattr(os, "fsync"):  # CPython
        os.fsync(f.fileno())
    elif hasattr(os, "sync"):  # MicroPython ports with a VFS
        os.sync()


class Outbox:
    def __init__(self, client, path="/outbox", max_messages=20, max_bytes=65536,
                 policy=REFUSE_NEW, backoff=30):
        if policy not in (REFUSE_NEW, DROP_OLDEST):
            raise ValueError("policy must be REFUSE_NEW or DROP_OLDEST")
        if not 0 < backoff <= 3600:
            raise ValueError("backoff must be more than 0 and at most 3600 seconds")
        self.client = client
        self.path = path.rstrip("/") or "/"
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.policy = policy
        self.backoff = int(backoff * 1000)  # ms before the first retry; doubles each time
        self.last_error = None  # why the last flush() left a message queued or dead
        self._retry = {}  # name -> (tries, ticks when due)
        self._wake = None  # run_forever()'s asyncio.Event while it runs: put() sets it
        for sub in ("", "/tmp", "/dead"):
            if not _exists(self.path + sub):
                os.mkdir(self.path + sub)
        # A put() or a rewrite cut short by a power cut: the old file, if any, is in place.
        for name in os.listdir(self.path + "/tmp"):
            os.remove(self.path + "/tmp/" + name)

    def _list(self, folder, aside=False):
        # Exactly 8 digits, ".msg", a regular file: nothing else is read, counted or
        # numbered. aside: any other *.msg (a stray "notes.msg", a folder) goes to dead/,
        # or stays if it cannot, never read: either way the queue goes on.
        names = []
        for n in os.listdir(folder):
            d = n[:8]
            if len(n) == 12 and n[8:] == ".msg" and "0" <= min(d) and max(d) <= "9" and \
                    os.stat(folder + "/" + n)[0] & 0xF000 == 0x8000:  # S_IFREG
                names.append(n)
            elif aside and n[-4:] == ".msg":
                try:
                    self._bury(n, "Not an outbox message")
                except OSError:
                    pass
        names.sort()
        return names

    def pending(self):
        """Names of the queued messages, oldest first."""
        return self._list(self.path)

    def due(self):
        """Names of the queued messages flush() would send now, oldest first."""
        now = time.ticks_ms()
        return [n for n in self.pending()
                if n not in self._retry or time.ticks_diff(now, self._retry[n][1]) >= 0]

    def dead(self):
        """Names of the messages a server refused for good (see their .reply files)."""
        return self._list(self.path + "/dead")

    def put(self, recipients, subject, body, priority=message.PRIORITY_NORMAL, **rich):
        """Queue one mail durably; the same arguments as Client.send (its rich keywords
        too: an attachment's data, the HTML, copied into the outbox file and counted in
        max_bytes, or an attachment as Path(name), read at flush time). Returns its name.
        The mail keeps the time of put() as its Date (RFC 5322 §3.6.1: when it was ready
        to go) and one Message-ID for every try, so a duplicate can be recognised."""
        if rich or message.named(recipients):  # mime.py's to check: loaded for these only
            name = self._put_rich(recipients, subject, body, priority, rich)
        else:
            recipients = message.check_mail(recipients, subject, priority)  # as Client.send
            body = _bytes(body)
            head = json.dumps(self._head(recipients, subject, priority)).encode()
            self._room(len(head) + 1 + len(body))
            name = self._name()
            self._write(name, head, body)
        if self._wake is not None:
            self._wake.set()
        return name

    def _head(self, to, subject, priority):
        return {"to": to, "subject": subject, "priority": priority, "time": int(time.time()),
                "id": binascii.hexlify(os.urandom(12)).decode()}

    def _room(self, size):
        """Room for a message of size bytes: the oldest dropped for it (DROP_OLDEST), or
        SMTPError(OUTBOX_FULL)."""
        if size > self.max_bytes:  # refused before anything is dropped for it
            raise _too_big()
        names = self.pending()
        used = sum(os.stat(self.path + "/" + n)[6] for n in names)
        while names and (len(names) >= self.max_messages or used + size > self.max_bytes):
            if self.policy != DROP_OLDEST:
                raise SMTPError(OUTBOX_FULL, "The outbox is full (%d messages, %d bytes); the "
                                "alert was not queued (OUTBOX)." % (len(names), used), "OUTBOX")
            name = names.pop(0)
            used -= os.stat(self.path + "/" + name)[6]
            os.remove(self.path + "/" + name)
            self._retry.pop(name, None)

    def _put_rich(self, to, subject, body, priority, rich):
        """put() of a rich mail: checked by mime.py as send() checks it (Path data as an
        empty attachment), then written to tmp/ whole (its parts copied: an iterator's
        length is known only then), made room for, and renamed into place."""
        from . import mime

        files = rich.get("attachments")
        if (isinstance(files, list) or isinstance(files, tuple)) and files:
            checked = dict(rich)
            checked["attachments"] = [a[:2] + (b"",) + a[3:] if isinstance(a, tuple) and
                                      len(a) > 2 and isinstance(a[2], Path) else a
                                      for a in files]
            for a in files:
                if isinstance(a, tuple) and len(a) > 2 and isinstance(a[2], Path) and \
                        not (_exists(a[2].name) and _is_file(a[2].name)):
                    raise ValueError("attachment %r: %s is not a file" % (a[0], a[2].name))
        else:
            checked = rich
        envelope = mime.envelope(to, checked)
        message.check_mail(envelope, subject, priority)  # as ClientSession.send
        body = _bytes(body)
        # The head as it will be, each copied part's [offset, length] at its widest (no
        # part is longer than max_bytes): its line is written that long first, the parts
        # after it, then the line again with their places, padded with spaces (JSON).
        head = self._head([to] if isinstance(to, str) else list(to), subject, priority)
        fields = {"body": len(body)}
        head["rich"] = fields
        copies = [body]
        for key in ("cc", "bcc", "reply_to"):
            if key in rich:
                fields[key] = rich[key]
        if "headers" in rich:
            h = rich["headers"]
            fields["headers"] = list(h.items() if isinstance(h, dict) else h)
        if "html" in rich:
            fields["html"] = self._place(rich["html"], copies)
        if files:
            fields["attachments"] = [list(a[:2]) + [{"path": a[2].name} if isinstance(
                a[2], Path) else self._place(a[2], copies)] + list(a[3:]) for a in files]
        width = len(json.dumps(head).encode())
        name = self._name()
        tmp = self.path + "/tmp/" + name
        try:
            with open(tmp, "wb") as f:
                f.write(b" " * width + b"\n")
                at = 0
                room = self.max_bytes - width - 1
                for i in range(len(copies)):
                    n = self._copy(copies[i], f, room - at)
                    if i:  # (the body's length is known: it is bytes)
                        copies[i][1][0] = at
                        copies[i][1][1] = n
                    at += n
                line = json.dumps(head).encode()
                f.seek(0)
                f.write(line)
                f.write(b" " * (width - len(line)))
                _sync(f)
            self._room(width + 1 + at)
        except BaseException:  # refused, or the copy failed: nothing queued
            if _exists(tmp):
                os.remove(tmp)
            raise
        os.rename(tmp, self.path + "/" + name)
        return name

    def _place(self, data, copies):
        """A part to copy after the body: its [offset, length], filled in as it is."""
        place = [self.max_bytes, self.max_bytes]
        copies.append((data, place))
        return place

    def _copy(self, data, f, room):
        """data (str, bytes, a file from where it stands, an iterator of str or bytes
        chunks) written to f; its length. More than room: SMTPError(OUTBOX_FULL)."""
        if isinstance(data, tuple):
            data = data[0]
        n = 0
        if hasattr(data, "readinto"):
            buf = bytearray(256)
            view = memoryview(buf)
            while True:
                k = data.readinto(buf) or 0
                if not k:
                    return n
                n += k
                if n > room:
                    raise _too_big()
                f.write(view[:k])
        if not (isinstance(data, str) or isinstance(data, bytes) or
                isinstance(data, bytearray) or isinstance(data, memoryview)):
            for chunk in data:  # an iterator: consumed now
                n += self._copy(chunk, f, room - n)
            return n
        if isinstance(data, str):
            data = data.encode()
        if len(data) > room:
            raise _too_big()
        f.write(data)
        return len(data)

    def _name(self):
        # One more than the newest name queued or dead (a message moved to dead/ must not
        # land on an older one of the same name), in 8 digits: after 99999999 the count
        # starts again at 1 and skips names in use. 10**8 alerts outlast a flash chip, so
        # only a file copied in by hand gets there; it must not make two put()s share a name.
        n = int(max(self.pending()[-1:] + self.dead()[-1:] + ["00000000.msg"])[:8])
        while True:
            n = n % _LAST + 1
            name = "%08d.msg" % n
            if not (_exists(self.path + "/" + name) or _exists(self.path + "/dead/" + name)):
                return name

    def _write(self, name, head, body, folder="/"):
        """The head line and the body (bytes, or the name of a queued message whose body is
        copied) into tmp/, synced, then renamed to folder + name in one step: a power cut
        leaves the old file or the new, never neither (os.rename replaces a file on POSIX,
        littlefs and MicroPython's FAT)."""
        tmp = self.path + "/tmp/" + name
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(b"\n")
            if isinstance(body, str):
                with open(self.path + "/" + body, "rb") as src:
                    src.readline()
                    while True:
                        chunk = src.read(256)
                        if not chunk:
                            break
                        f.write(chunk)
            else:
                f.write(body)
            _sync(f)
        os.rename(tmp, self.path + folder + name)

    def flush(self):
        """Send every due message over one session (Client.session(), the public API); the
        number the server took. Failures stay queued (temporary) or go to dead/ (permanent);
        nothing raises for them, nor for a MemoryError (kept for the next try like an
        outage). A microsmtp.aio client's outbox: `await outbox.aflush()`."""
        if hasattr(self.client, "_step"):  # aio.Client's driver: its sends must be awaited
            raise TypeError("this outbox's client is a microsmtp.aio.Client: await aflush()")
        steps = self._flush(False)
        try:  # a blocking client's sends never suspend: the coroutine ends at its first step
            steps.send(None)
        except StopIteration as e:
            return e.value
        raise RuntimeError("flush() was suspended")  # (cannot happen: see above)

    async def aflush(self):
        """flush() for a microsmtp.aio client: other tasks run while it sends. Cancelled,
        the message under way stays queued (at least once, as after a lost connection)."""
        if not hasattr(self.client, "_step"):
            raise TypeError("aflush() needs a microsmtp.aio.Client; use flush()")
        return await self._flush(True)

    async def run_forever(self, interval=60):
        """A task for an asyncio app: flushes whenever a message is due (a put() wakes it;
        a failed try waits out its backoff), at least every `interval` seconds. Stop it
        by cancelling its task; what was queued stays on flash."""
        import asyncio

        self._wake = asyncio.Event()
        try:
            while True:
                self._wake.clear()
                if self.due():
                    await self.aflush()
                wait = interval * 1000
                now = time.ticks_ms()
                for name in self.pending():  # the next retry that falls due, if sooner
                    if name in self._retry:
                        wait = min(wait, max(0, time.ticks_diff(self._retry[name][1], now)))
                    else:  # a put() during the flush: due now
                        wait = 0
                if wait:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait / 1000)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self._wake = None

    async def _flush(self, aio):
        """flush() and aflush(): the same steps, the session's calls awaited with an aio
        client (aio), made at once with a blocking one."""
        self.last_error = None
        sent = 0
        due = ()
        i = 0
        f = None
        try:
            self._list(self.path, True)  # strays aside
            due = self.due()
            while i < len(due):
                s = self.client.session()
                if aio:
                    await s.__aenter__()
                else:
                    s.__enter__()
                try:
                    while i < len(due):
                        mail = self._read(due[i])  # None: unreadable, moved to dead/
                        if mail is None:
                            i += 1
                            continue
                        f = mail
                        error = None
                        try:
                            if mail[7] is None:
                                if aio:
                                    await s.send(mail[0], mail[1], mail[2], mail[3], mail[4],
                                                 mail[5])
                                else:
                                    s.send(mail[0], mail[1], mail[2], mail[3], mail[4], mail[5])
                            elif aio:
                                await s.send(mail[0], mail[1], mail[2], mail[3], mail[4],
                                             mail[5], **mail[7])
                            else:
                                s.send(mail[0], mail[1], mail[2], mail[3], mail[4], mail[5],
                                       **mail[7])
                        except SMTPError as e:
                            error = e
                        except (ValueError, TypeError) as e:  # (checked by _read: cannot be)
                            error = SMTPError(_MESSAGE_FORMAT_ERROR, "Not sent: %s" % e)
                        _close(mail)
                        f = None
                        if error is not None and not s.alive and not self._own(error):
                            # The session ended before this mail was taken or refused (no
                            # connection, AUTH refused, lost after "." ...): it and the
                            # rest stay queued and wait. At least once: it may have arrived.
                            self.last_error = error
                            for name in due[i:]:
                                self._later(name)
                            return sent
                        sent += self._done(due[i], mail[6], error, mail[8])
                        i += 1
                        if not s.alive:
                            break  # this mail's own error ended it: a new session for the rest
                finally:
                    if aio:
                        await s.__aexit__(None, None, None)
                    else:
                        s.__exit__(None, None, None)
        except (SMTPError, MemoryError) as e:
            if not isinstance(e, SMTPError):  # a fragmented heap: may fit next time
                e = SMTPError(_PACKET_ALLOCATE_ERROR, "Out of memory (OUTBOX).", "OUTBOX")
            self.last_error = e
            for name in due[i:]:
                self._later(name)
        finally:
            if f is not None:
                _close(f)
        return sent

    def _own(self, e):
        """A permanent error of the mail itself that ended the session (a body cut off, a
        5xx with a hang-up): the mail goes to dead/, the rest on in a new session."""
        return not e.temporary and (e.step == "MAIL" or e.step == "RCPT" or e.step == "DATA"
                                    or e.step == "MESSAGE") and (
                                        e.reply_code or e.status == _MESSAGE_FORMAT_ERROR)

    def _read(self, name):
        """A queued message as (to, subject, body, priority, time, id, head, rich keywords
        or None, envelope, files to close); one that cannot be read (flash damage, a file
        copied in by hand, an attachment's Path gone) goes to dead/."""
        f = open(self.path + "/" + name, "rb")
        files = [f]
        try:
            head = json.loads(f.readline())
            to, subject = head["to"], head["subject"]
            priority = head.get("priority", message.PRIORITY_NORMAL)
            fields = head.get("rich")
            rich = None
            body = f
            if fields is None:
                # A tampered file must not inject either: held to what send() takes.
                to = envelope = message.check_mail(to, subject, priority)
            else:  # held to what send() takes, by mime.py's checks, as put() was
                rich, body = self._rich(f, fields, files)
                from . import mime

                envelope = mime.envelope(to, rich)
                message.check_mail(envelope, subject, priority)
                rcpt = head.get("rcpt")  # the recipients still owed it (see _done)
                if rcpt is not None:
                    envelope = rich["envelope"] = mime.only(envelope, rcpt)
            msgid = head.get("id")
            if msgid is not None:
                message.check(msgid, "id", message.DOMAIN, 64)
            when = head.get("time")  # the put() time is the mail's Date
            return to, subject, body, priority, when if isinstance(when, int) else None, \
                msgid, head, rich, envelope, files
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as e:
            for h in files:
                h.close()
            self._bury(name, ("Not sent: %s" if isinstance(e, OSError) else
                              "Unreadable outbox file: %s") % e)
            return None

    def _rich(self, f, fields, files):
        """A rich mail's keywords for send() from its fields, and its body: the copied
        parts as _Parts of f (checked to lie within it), Path attachments opened (onto
        files). OSError for a Path that cannot be read."""
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
                rich[key] = [self._file(f, base, size, a, files) for a in value]
            elif key != "body":
                raise ValueError("unknown rich field %r" % key)
        return rich, _slice(f, base, size, [0, fields["body"]])

    def _file(self, f, base, size, a, files):
        """An attachment: (filename, type, data[, content ID]), its data a _Part of f or
        its Path's file, open."""
        if not isinstance(a, list) or not 3 <= len(a) <= 4:
            raise TypeError("an attachment is [filename, type, data(, content ID)]")
        data = a[2]
        if isinstance(data, dict):
            path = data["path"]
            message.check(path, "Path", message.TEXT)
            try:
                if not _is_file(path):
                    raise OSError("not a file")
                data = open(path, "rb")
            except OSError as e:
                raise OSError("attachment %s: its file %s cannot be read (%s)" % (
                    a[0], path, e)) from None
            files.append(data)
        else:
            data = _slice(f, base, size, data)
        return (a[0], a[1], data) + tuple(a[3:])

    def _done(self, name, head, error, to):
        """The mail's result: deleted, kept for some recipients (to: its envelope), or
        buried; 1 when the server took it (for some recipients at least), else 0. A rich
        mail's headers stay as they were: "rcpt" in its head says whom it is still for."""
        key = "to" if head.get("rich") is None else "rcpt"
        later = gone = ()
        if error is not None:
            self.last_error = error
            if error.refused:
                # Per recipient (RCPT): no bounce will tell of these (the server never took
                # the mail for them), so each is retried or buried by its own reply code;
                # the ones that took the mail never get it twice.
                later = [r[0] for r in error.refused  # judged as SMTPError judges a reply
                         if SMTPError(0, "", "RCPT", r[1]).temporary]
                gone = [r[0] for r in error.refused if r[0] not in later]
            elif error.temporary:
                later = to
            else:
                gone = to
        took = 1 if len(later) + len(gone) < len(to) else 0
        if len(gone) == len(to):
            self._bury(name, str(error))
            return took
        if gone:  # a copy for them in dead/, under a new name
            head[key] = gone
            self._bury(self._name(), str(error), head, name)
        if later:
            if len(later) < len(to):  # only they get it next time; Date and id stay
                head[key] = later
                self._write(name, json.dumps(head).encode(), name)
            self._later(name)
        else:
            os.remove(self.path + "/" + name)
            self._retry.pop(name, None)
        return took

    def _bury(self, name, why, head=None, src=None):
        """Move a message refused for good to dead/, its reason beside it (with head: write
        it there as a copy of src's body instead). dead/ keeps the newest max_messages: a
        board refused for months must not fill its flash with them."""
        dead = self.path + "/dead/"
        if head is None:
            os.rename(self.path + "/" + name, dead + name)
            self._retry.pop(name, None)
        else:
            self._write(name, json.dumps(head).encode(), src, "/dead/")
        with open(dead + name[:-4] + ".reply", "w") as f:
            f.write(why)
        for old in self.dead()[:-self.max_messages]:
            os.remove(dead + old)
            if _exists(dead + old[:-4] + ".reply"):
                os.remove(dead + old[:-4] + ".reply")

    def _later(self, name):
        tries = self._retry.get(name, (0, 0))[0] + 1
        wait = self.backoff
        for _ in range(tries - 1):  # doubled per failed try, up to the cap (no big ints)
            if wait >= _BACKOFF_MAX_MS:
                break
            wait *= 2
        wait = min(wait, _BACKOFF_MAX_MS)
        # Jitter, ±12.5 %: boards that lost the server together do not all come back at once.
        # (wait // 4) * 255 stays a small int on a 32-bit board (below 2**30).
        wait += ((wait // 4) * random.getrandbits(8) >> 8) - wait // 8
        self._retry[name] = (tries, time.ticks_add(time.ticks_ms(), wait))
