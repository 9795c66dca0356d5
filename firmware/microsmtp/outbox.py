# microsmtp: a durable outbox on flash — an alert raised while Wi-Fi or the server is down
# goes out when they return, and survives a reboot. Imported only by apps that use it.
# MIT licence.
#
# A message is one file: a JSON line (recipients, subject, priority) and then the body.
# put() writes it to tmp/, flushes and syncs, then renames it into place, so a power cut
# leaves either the whole message or none. flush() sends every due message over one SMTP
# session: 250 deletes the file; 4xx or a lost connection keeps it and waits (exponential
# backoff with jitter, in RAM: after a reboot everything is due at once); 5xx moves it to
# dead/ with the server's reply. At least once: a connection lost after "." keeps the
# message, so it may arrive twice.
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


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync(f):
    f.flush()
    if hasattr(os, "fsync"):  # CPython
        os.fsync(f.fileno())
    elif hasattr(os, "sync"):  # MicroPython ports with a VFS
        os.sync()


def _check(recipients, subject):
    """What put() accepts, also checked again on what flush() reads back from flash."""
    if not recipients or isinstance(recipients, str):
        raise ValueError("an outbox mail needs a list of recipients")
    for rcpt in recipients:
        message.check(rcpt, "recipient", message.ADDRESS)
    message.check(subject, "subject", message.TEXT, 4096)


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
        for sub in ("", "/tmp", "/dead"):
            if not _exists(self.path + sub):
                os.mkdir(self.path + sub)
        for name in os.listdir(self.path + "/tmp"):  # a put() cut short by a power cut
            os.remove(self.path + "/tmp/" + name)

    def pending(self):
        """Names of the queued messages, oldest first."""
        return sorted(n for n in os.listdir(self.path) if n.endswith(".msg"))

    def due(self):
        """Names of the queued messages flush() would send now, oldest first."""
        now = time.ticks_ms()
        return [n for n in self.pending()
                if n not in self._retry or time.ticks_diff(now, self._retry[n][1]) >= 0]

    def dead(self):
        """Names of the messages a server refused for good (see their .reply files)."""
        return sorted(n for n in os.listdir(self.path + "/dead") if n.endswith(".msg"))

    def put(self, recipients, subject, body, priority=message.PRIORITY_NORMAL):
        """Queue one mail durably; the same arguments as Client.send. Returns its name.
        The mail keeps the time of put() as its Date (RFC 5322 §3.6.1: when it was ready
        to go) and one Message-ID for every try, so a duplicate can be recognised."""
        if isinstance(recipients, str):
            recipients = [recipients]
        _check(recipients, subject)
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, (bytes, bytearray)):
            raise TypeError("an outbox body is str or bytes")
        head = json.dumps({"to": list(recipients), "subject": subject, "priority": priority,
                           "time": int(time.time()),
                           "id": binascii.hexlify(os.urandom(12)).decode()}).encode()
        size = len(head) + 1 + len(body)
        names = self.pending()
        used = sum(os.stat(self.path + "/" + n)[6] for n in names)
        while names and (len(names) >= self.max_messages or used + size > self.max_bytes):
            if self.policy != DROP_OLDEST:
                raise SMTPError(OUTBOX_FULL, "The outbox is full (%d messages, %d bytes); the "
                                "alert was not queued (OUTBOX)." % (len(names), used), "OUTBOX")
            used -= os.stat(self.path + "/" + names[0])[6]
            os.remove(self.path + "/" + names.pop(0))
        if size > self.max_bytes:
            raise SMTPError(OUTBOX_FULL, "The message is bigger than the outbox (OUTBOX).",
                            "OUTBOX")
        # Numbered after every name in use, dead/ included: a refused message moved there
        # must not land on an older one of the same name.
        last = max(names[-1:] + self.dead()[-1:] + ["00000000.msg"])
        name = "%08d.msg" % (int(last[:8]) + 1)
        tmp = self.path + "/tmp/" + name
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(b"\n")
            f.write(body)
            _sync(f)
        os.rename(tmp, self.path + "/" + name)  # atomic: the whole message or nothing
        return name

    def flush(self):
        """Send every due message over one session; the number delivered. Failures stay
        queued (temporary) or go to dead/ (permanent); nothing raises for them."""
        due = self.due()
        self.last_error = None
        state = {"i": 0, "file": None, "sent": 0}

        def opened(i):
            # The next readable message from due[i] on, as Session.load() arguments; one
            # that cannot be read (flash damage, a file copied in by hand) goes to dead/.
            while i < len(due):
                state["i"] = i
                f = open(self.path + "/" + due[i], "rb")
                try:
                    head = json.loads(f.readline())
                    to, subject = head["to"], head["subject"]
                    _check(to, subject)  # a tampered file must not inject either
                    msgid = head.get("id")
                    if msgid is not None:
                        message.check(msgid, "id", message.DOMAIN, 64)
                    when = head.get("time")
                    # The Date and Message-ID of this mail, for the session (see on_result).
                    state["now"] = time.gmtime(when) if isinstance(when, int) else time.gmtime()
                    state["id"] = msgid
                    state["file"] = f
                    return to, subject, f, head.get("priority", 2)
                except (ValueError, KeyError, TypeError, OverflowError) as e:
                    f.close()
                    self._bury(due[i], "Unreadable outbox file: %s" % e)
                i += 1
            return None

        def on_result(error):
            self._done(due[state["i"]], state, error)
            following = opened(state["i"] + 1)
            if following is not None:
                session = self.client._session
                session.now = state["now"]
                session.id = state["id"]
            return following

        first = opened(0)
        if first is None:
            return 0
        try:
            # on_result runs after each mail, the last included; it hands over the next.
            self.client._run(first[0], first[1], first[2], None, first[3], on_result,
                             state["now"], state["id"])
        except SMTPError as e:
            self.last_error = e
            # The session ended (no connection, AUTH refused, lost after "." ...): this mail
            # and the rest stay queued and wait. At least once: it may have been delivered.
            for name in due[state["i"]:]:
                self._later(name)
        finally:
            if state["file"] is not None:
                state["file"].close()
                state["file"] = None
        return state["sent"]

    def _done(self, name, state, error):
        state["file"].close()
        state["file"] = None
        path = self.path + "/" + name
        if error is None or error.step == "RCPT" and error.refused and \
                len(error.refused) < len(self._recipients_of(path)):
            os.remove(path)  # accepted (partial refusals are logged by the server's bounce)
            self._retry.pop(name, None)
            state["sent"] += 1
        elif error.temporary:
            self.last_error = error
            self._later(name)
        else:
            self.last_error = error
            self._bury(name, str(error))

    def _bury(self, name, why):
        """Move a message the server refused for good to dead/, its reason beside it.
        dead/ keeps the newest max_messages: a board refused for months must not fill its
        flash with them."""
        dead = self.path + "/dead/"
        os.rename(self.path + "/" + name, dead + name)
        with open(dead + name[:-4] + ".reply", "w") as f:
            f.write(why)
        self._retry.pop(name, None)
        for old in self.dead()[:-self.max_messages]:
            os.remove(dead + old)
            if _exists(dead + old[:-4] + ".reply"):
                os.remove(dead + old[:-4] + ".reply")

    def _recipients_of(self, path):
        try:
            with open(path, "rb") as f:
                return json.loads(f.readline())["to"]
        except OSError:
            return ()

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
