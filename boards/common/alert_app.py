# microsmtp's alert app, shared by every board (boards/<board>/main.py runs it): mail an
# alert when a temperature crosses a threshold. What differs per board (the sensor, Wi-Fi
# quirks) is in boards/<board>/board.py. Settings in config.json (docs/CONFIG.md). MIT licence.
#
# An asyncio app of three tasks: the sensor reads at its period (and says when to mail),
# the alerts go into the outbox and out through microsmtp.aio, and a supervisor keeps
# Wi-Fi up. A mail awaits its server's replies, so a slow or dead server never holds up
# the readings.
import asyncio
import gc
import json
import time

import microsmtp
from micropython import const
from microsmtp import aio, message, outbox
from microsmtp.outbox import DROP_OLDEST, REFUSE_NEW

try:
    import network
except ImportError:  # the virtual board (unix port) has no Wi-Fi: the host's network is up
    network = None

_WIFI_TRIES = const(3)
_WIFI_DEADLINE_MS = const(20000)  # per try: association, then DHCP
_WIFI_SETTLE_MS = const(1000)  # a link that drops at once is no link (Peter Hinch, mqtt_as)
_WIFI_POLL_MS = const(250)  # how often a try looks whether the link is up
_WIFI_CHECK_MS = const(1000)  # how often the supervisor looks at a link that is up
_WIFI_REST_MS = const(30000)  # after _WIFI_TRIES failed tries: the radio rests, then again
# ticks_ms wraps at 2**30 ms: a time is at most 2**29 - 1 ms ago, so a longer min_interval
# would never end.
_MAX_INTERVAL = const(536870)  # seconds
_TLS = {"starttls": microsmtp.TLS_STARTTLS, "implicit": microsmtp.TLS_IMPLICIT,
        "none": microsmtp.TLS_NONE, None: None}
_WHEN_FULL = {"drop_oldest": DROP_OLDEST, "refuse_new": REFUSE_NEW}
# The board's module (boards/<board>/board.py): sensor() and wifi(wlan). main() sets it;
# it is a module rather than arguments so the board's quirks stay out of every signature.
board = None

try:
    sleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython (the tests): no sleep_ms
    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


class Alarm:
    """When to mail: once the value reaches `threshold`, then not again until it has fallen
    below threshold - hysteresis (re-armed) and risen again, and never two mails less than
    min_interval seconds apart: a crossing inside that time is mailed when it ends, if the
    value is still high then. update() each reading; done() once the alert is dealt with."""

    def __init__(self, threshold, hysteresis, min_interval):
        self.threshold = threshold
        self.rearm = threshold - hysteresis
        self.min_interval = int(min_interval * 1000)  # ms
        self.high = False  # crossed, not yet back below the re-arm level
        self.pending = False  # a crossing not yet mailed
        self.last = None  # ticks_ms of the last mail, kept only while min_interval runs

    def update(self, value, now):
        """True when this reading (taken at ticks_ms `now`) should be mailed."""
        if not self.high and value >= self.threshold:
            self.high = self.pending = True
        elif self.high and value < self.rearm:
            self.high = self.pending = False  # back to normal before a mail could go
        # Forgotten once min_interval is over: ticks_ms wraps (2**30 ms, 12.4 days), so a
        # timestamp kept longer could read as a recent one.
        if self.last is not None and time.ticks_diff(now, self.last) >= self.min_interval:
            self.last = None
        return self.pending and self.last is None

    def done(self, now):
        self.pending = False
        self.last = now


def simulated(threshold, hysteresis):
    """The virtual board's sensor: up from below the threshold across it, down past the
    re-arm level, and up again, one degree per reading."""
    span = max(10, 2 * hysteresis)
    value, step = threshold - span, 1
    while True:
        yield value
        if abs(value + step - threshold) > span:
            step = -step
        value += step


def sensor(alert):
    """A function that returns a reading in °C: the board's own sensor (board.sensor()),
    or the simulated one."""
    if alert.get("sensor") == "simulated":
        values = simulated(alert.get("threshold", 85), alert.get("hysteresis", 0))
        return lambda: next(values)
    return board.sensor()


async def wifi_up(wlan, wifi):
    """Bring the station link up: bounded tries, each with a deadline. True once up.
    wlan.connect() returns at once; the waits are awaited, so the readings go on."""
    if wlan.isconnected():
        return True
    wlan.active(True)
    board.wifi(wlan)  # the board's quirks, before connecting
    args = (wifi["ssid"], wifi["password"]) if wifi.get("password") else (wifi["ssid"],)
    for attempt in range(1, _WIFI_TRIES + 1):
        wlan.connect(*args)
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < _WIFI_DEADLINE_MS:
            await sleep_ms(_WIFI_POLL_MS)
            if wlan.isconnected():
                await sleep_ms(_WIFI_SETTLE_MS)
                if wlan.isconnected():
                    print("wifi: up as %s" % wlan.ifconfig()[0])
                    return True
        print("wifi: no link to %r (status %r), try %d of %d"
              % (wifi["ssid"], wlan.status(), attempt, _WIFI_TRIES))
        wlan.disconnect()
    return False


def set_clock():
    """UTC from NTP, for the mail's Date header (a reset sets it back to 2000 or 2021).
    Blocking, once a boot: ntptime has no asyncio form; at most 3 tries of 2 s."""
    try:
        import ntptime
    except ImportError:
        return
    ntptime.timeout = 2  # seconds per try
    for _ in range(3):
        try:
            ntptime.settime()
            print("clock: %04d-%02d-%02d %02d:%02d:%02d UTC" % time.gmtime()[:6])
            return
        except Exception as e:  # OSError (timeout), OverflowError (odd reply): no clock
            error = e
    print("clock: not set (%r); the Date header will be wrong" % error)


def make_client(smtp):
    if smtp.get("tls") not in _TLS:
        raise ValueError("smtp.tls %r is unknown" % smtp.get("tls"))
    return aio.Client(
        smtp["server"], smtp.get("port", 25), from_address=smtp["from"],
        username=smtp.get("username"), password=smtp.get("password"),
        oauth_token=smtp.get("oauth_token"), client_domain=smtp.get("client_domain"),
        tls=_TLS[smtp.get("tls")], cadata=smtp.get("cadata"),
        allow_plaintext_auth=bool(smtp.get("allow_plaintext_auth")))


def number(alert, key, default=None, high=1e9):
    """alert[key] (or the default): a number from 0 to high; the threshold, any number."""
    value = alert.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            key != "threshold" and not 0 <= value <= high):
        raise ValueError("alert.%s %r: not a number, or out of range" % (key, value))
    return value


def pace(alert):
    """(ms between readings, how many readings or None: for ever) from the alert section."""
    if not isinstance(alert, dict):
        raise TypeError('"alert" must be an object')
    readings = alert.get("max_readings")
    if readings is not None and (not isinstance(readings, int) or readings < 0):
        raise ValueError("alert.max_readings must be a whole number >= 0, or null")
    return int(number(alert, "period", 10) * 1000), readings


def configure(cfg):
    """The Client and the Alarm, checked at start as the alerts will use them: the
    firmware's own checks (microsmtp.Client, the recipients), the subject formatted once.
    KeyError, TypeError or ValueError says what is wrong."""
    smtp, alert, wifi = cfg["smtp"], cfg["alert"], cfg.get("wifi") or {"ssid": ""}
    if not (isinstance(smtp, dict) and isinstance(wifi, dict) and
            isinstance(wifi.get("ssid"), str)):
        raise TypeError('"smtp" must be an object, "wifi" one with an "ssid"')
    client = make_client(smtp)
    to = smtp["to"]
    for rcpt in [to] if isinstance(to, str) else to or [""]:  # []: "is empty"
        message.check(rcpt, "smtp.to", message.ADDRESS)
    alarm = Alarm(number(alert, "threshold"), number(alert, "hysteresis", 0),
                  number(alert, "min_interval", 600, _MAX_INTERVAL))
    try:
        alert_text(alert, alarm.threshold)
    except (AttributeError, KeyError, IndexError, ValueError):
        raise ValueError("alert.subject cannot be formatted: {value} is the reading")
    return client, alarm


def make_outbox(client, cfg):
    """The alert queue on flash (config "outbox", docs/CONFIG.md). Relative path: a board
    starts in "/", the virtual board in its own folder. Full: the oldest alert goes, as the
    newest tells the most about now."""
    return outbox.Outbox(client, cfg.get("path", "outbox"), cfg.get("max_messages", 20),
                         cfg.get("max_bytes", 32768),
                         _WHEN_FULL[cfg.get("when_full", "drop_oldest")], cfg.get("retry", 30))


def alert_text(alert, value):
    subject = alert.get("subject", "Temperature at {value:.1f} °C").format(value=value)
    return subject, "Reading %.1f °C, threshold %.1f °C.\n" % (value, alert["threshold"])


async def send_alert(client, smtp, alert, value):
    """Mail one alert now, without the outbox. True when it is dealt with (sent, or refused
    for good); False to try again at the next reading. Never raises."""
    subject, body = alert_text(alert, value)
    try:
        await client.send(smtp["to"], subject, body, microsmtp.PRIORITY_HIGH)
    except microsmtp.SMTPError as e:
        print("alert not sent: %s (status 0x%02X)" % (e, e.status))
        return not e.temporary  # a permanent refusal will not change by retrying
    except (OSError, MemoryError, ValueError) as e:
        # MemoryError: a fragmented heap; may fit next time. ValueError: this subject (the
        # rest was checked at start) is refused, and will be again: done with.
        print("alert not sent: %r" % e)
        return isinstance(e, ValueError)
    print("alert sent: %s" % subject)
    return True


async def queue_alert(box, client, smtp, alert, value):
    """Put one alert in the outbox: on flash it survives an outage and a reboot. True when
    it is dealt with; False to try again at the next reading. Never raises."""
    subject, body = alert_text(alert, value)
    try:
        box.put(smtp["to"], subject, body, microsmtp.PRIORITY_HIGH)
    except microsmtp.SMTPError as e:  # OUTBOX_FULL with "refuse_new": a flush makes room
        print("alert not queued: %s (status 0x%02X)" % (e, e.status))
        return False
    except OSError as e:  # the filesystem failed (full, worn): better sent now than lost
        print("alert not queued: %r; sending it now" % e)
        return await send_alert(client, smtp, alert, value)
    except (MemoryError, ValueError) as e:  # ValueError: as in send_alert
        print("alert not queued: %r" % e)
        return isinstance(e, ValueError)
    print("alert queued: %s" % subject)
    return True


async def deliver(box):
    """Send what is due in the outbox, if anything, over one session and say how it went.
    Never raises: what could not go stays queued (temporary) or goes to dead/ (refused for
    good)."""
    try:
        if not box.due():
            return
        sent = await box.aflush()
        waiting = len(box.pending())
    except (OSError, MemoryError) as e:
        print("outbox: %r" % e)
        return
    if sent:
        print("outbox: %d sent, %d waiting" % (sent, waiting))
    e = box.last_error
    if e is not None:
        print("outbox: %d waiting, %d refused; last error: %s (status 0x%02X)"
              % (waiting, len(box.dead()), e, e.status))


class State:
    """What the tasks share. up: the station link (always, with no Wi-Fi to manage).
    value, when: the reading an alert is raised for and its ticks, until dealt with.
    tick: set by each reading, the alert task's cue. idle: the alert task waits for one."""

    def __init__(self, up):
        self.up = up
        self.value = self.when = None
        self.tick = asyncio.Event()
        self.idle = False


async def read_task(st, read, alarm, period, readings):
    """Read every period ms, for ever or `readings` times, on a fixed schedule: a reading
    late by a blocking step (NTP, a flash write) moves the next ones rather than bunching
    them. An alert is raised for the reading that crossed, and kept until dealt with: a
    crossing while the alert task is still busy with it (a period shorter than a send) is
    the same alert."""
    n = 0
    at = time.ticks_ms()
    while readings is None or n < readings:
        value = read()
        now = time.ticks_ms()
        print("%.1f °C" % value)
        if alarm is not None and alarm.update(value, now) and st.value is None:
            st.value, st.when = value, now
        st.tick.set()
        n += 1
        at = time.ticks_add(at, period)
        wait = time.ticks_diff(at, time.ticks_ms())
        if wait < 0:
            at, wait = time.ticks_ms(), 0
        await sleep_ms(wait)


async def alert_task(st, client, box, smtp, alert, alarm):
    """At each reading: an alert raised goes into the outbox (or, with none, straight to
    the server while the link is up), then whatever is due goes out while it is up."""
    while True:
        st.idle = True
        await st.tick.wait()
        st.tick.clear()
        st.idle = False
        if st.value is not None:
            if box is not None:
                done = await queue_alert(box, client, smtp, alert, st.value)
            else:
                done = st.up and await send_alert(client, smtp, alert, st.value)
            if done:
                alarm.done(st.when)
            st.value = None  # not done: the next reading raises it again
        if box is not None and st.up:
            await deliver(box)


async def wifi_task(st, wlan, wifi):
    """Bring the link up, set the clock once, and bring the link back whenever it drops:
    _WIFI_TRIES tries with a deadline each, then a rest, then again."""
    clock = False
    while True:
        if not wlan.isconnected():
            st.up = False
            if not await wifi_up(wlan, wifi):
                await sleep_ms(_WIFI_REST_MS)
                continue
        st.up = True
        if not clock:
            set_clock()
            clock = True
        await sleep_ms(_WIFI_CHECK_MS)


async def run(path):
    """The app: the config, then the three tasks until the readings end (never, on a
    board: alert.max_readings is for tests and demos)."""
    alert, period, readings = {}, 10000, None
    client = alarm = box = wlan = smtp = None
    try:
        # Relative: a board starts in "/", the virtual board in its own folder.
        with open(path) as f:
            cfg = json.load(f)
        alert = cfg["alert"]
        period, readings = pace(alert)
        # The JSON parser's garbage gone first, the Client's buffers find room on a small
        # heap (measured on the unix port: the app then starts in 3K less heap).
        gc.collect()
        client, alarm = configure(cfg)
    except (OSError, KeyError, TypeError, ValueError) as e:
        # Said once, here: a board that stops at start (or in its loop) looks dead, and
        # one that repeats the line every reading buries the readings.
        print("config: %s: %s; readings go on, no alert is mailed (docs/CONFIG.md)"
              % (path, "%r is missing" % e.args[0] if isinstance(e, KeyError) else e))
    tasks = []
    alerts = None
    st = State(True)
    if client is not None:
        smtp, wifi = cfg["smtp"], cfg.get("wifi")
        if network is not None and wifi:
            wlan = network.WLAN(network.STA_IF)
            st.up = wlan.isconnected()
            tasks.append(asyncio.create_task(wifi_task(st, wlan, wifi)))
        try:
            box = make_outbox(client, cfg.get("outbox", {}))
        except (OSError, ValueError, KeyError) as e:  # no writable flash, or a bad "outbox"
            print("outbox: not usable (%r); alerts are sent directly, not kept" % e)
        alerts = asyncio.create_task(alert_task(st, client, box, smtp, alert, alarm))
        tasks.append(alerts)
    # A bad config: the sensor is told only its kind (its numbers may be what is wrong).
    read = sensor(alert if alarm is not None else
                  {"sensor": alert.get("sensor")} if isinstance(alert, dict) else {})
    gc.collect()
    print("free heap: %d bytes, %d alerts queued"
          % (gc.mem_free(), len(box.pending()) if box else 0))
    await read_task(st, read, alarm, period, readings)
    # The readings are over: what the last one started (a send, a flush) ends first.
    while alerts is not None and not alerts.done() and not (st.idle and not st.tick.is_set()):
        await sleep_ms(10)
    for task in tasks:
        task.cancel()


def main(hw, path="config.json"):
    """The app on the board whose module (boards/<board>/board.py) is hw. Read the sensor
    every alert.period seconds, for ever or alert.max_readings times. An alert goes into
    the outbox first, then out whenever the link and server allow. A bad config is one
    line at start; the readings go on, and no alert is mailed."""
    global board
    board = hw
    asyncio.run(run(path))
