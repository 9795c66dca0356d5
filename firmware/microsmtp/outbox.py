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


def Path(name):
    """An attachment's data read from the file `name` when the mail is sent, not copied
    into the outbox: put(..., attachments=[("cam.jpg", "image/jpeg", Path("/cam.jpg"))]).
    Gone or unreadable by then: the mail goes to dead/ with the reason, the rest goes on.
    (outbox_rich.py's class, loaded now: a plain outbox never holds it.)"""
    from .outbox_rich import Path

    return Path(name)


def _close(files, f):
    """A mail's files closed: a rich one's list, or a plain one's f (no tuple made)."""
    if files is None:
        f.close()
        return
    for h in files:
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
        if rich or message.rich(recipients):  # outbox_rich.py, mime.py: for these only
            from .outbox_rich import put

            name = put(self, recipients, subject, body, priority, rich)
        else:
            recipients = message.check_mail(recipients, subject, priority)  # as Client.send
            if isinstance(body, str):
                body = body.encode()
            elif not isinstance(body, (bytes, bytearray)):
                raise TypeError("an outbox body is str or bytes")
            head = json.dumps({"to": recipients, "subject": subject, "priority": priority,
                               "time": int(time.time()),
                               "id": binascii.hexlify(os.urandom(12)).decode()}).encode()
            self._room(len(head) + 1 + len(body))
            name = self._name()
            self._write(name, head, body)
        if self._wake is not None:
            self._wake.set()
        return name

    def _room(self, size):
        """Room for a message of size bytes: the oldest dropped for it (DROP_OLDEST), or
        SMTPError(OUTBOX_FULL)."""
        if size > self.max_bytes:  # refused before anything is dropped for it
            raise SMTPError(OUTBOX_FULL, "The message is bigger than the outbox (OUTBOX).",
                            "OUTBOX")
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
                        except OSError as e:  # a file of the mail failed mid-send (flash,
                            # an SD card pulled): the session is over, the mail stays queued
                            error = SMTPError(_MESSAGE_FORMAT_ERROR, "Not sent: its file could "
                                              "not be read (%s) (OUTBOX)." % e, "OUTBOX")
                        _close(mail[9], mail[2])
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
                _close(f[9], f[2])
        return sent

    def _own(self, e):
        """A permanent error of the mail itself that ended the session (a body cut off, a
        5xx with a hang-up): the mail goes to dead/, the rest on in a new session."""
        return not e.temporary and (e.step == "MAIL" or e.step == "RCPT" or e.step == "DATA"
                                    or e.step == "MESSAGE") and (
                                        e.reply_code or e.status == _MESSAGE_FORMAT_ERROR)

    def _read(self, name):
        """A queued message as (to, subject, body, priority, time, id, head, rich keywords
        or None, envelope, files to close or None: the body's); one that cannot be read
        (flash damage, a file copied in by hand, an attachment's Path gone) goes to dead/."""
        f = open(self.path + "/" + name, "rb")
        files = None  # a rich mail's: f and its Paths' files (a plain one has only f)
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
                from .outbox_rich import read

                files = [f]
                rich, body, envelope = read(f, head, files)
            msgid = head.get("id")
            if msgid is not None:
                message.check(msgid, "id", message.DOMAIN, 64)
            when = head.get("time")  # the put() time is the mail's Date
            return to, subject, body, priority, when if isinstance(when, int) else None, \
                msgid, head, rich, envelope, files
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as e:
            _close(files, f)
            self._bury(name, ("Not sent: %s" if isinstance(e, OSError) else
                              "Unreadable outbox file: %s") % e)
            return None

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
