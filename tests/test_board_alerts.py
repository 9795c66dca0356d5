"""The board app's alert logic (boards/common/alert_app.py): Alarm gives the same answers on
CPython and on the MicroPython unix port; the simulated sensor; send_alert, queue_alert and
deliver never raise, whatever the client or the outbox does."""

import asyncio
import inspect
import json
import time

import microsmtp
import pytest
from microsmtp_host import unixport

from boards import APP_HEAP, APPS, app_files, load_app

# (name, threshold, hysteresis, min_interval s, [(value, time, mail delivered)], indices of
# the readings Alarm.update() says to mail). A time is ms from a ticks_ms of 0, negative
# before it; ("half", ms): half a ticks period, then ms. The period is each runtime's own:
# 2**30 on a board and the CPython shim, 2**62 on the 64-bit unix port.
CASES = [
    ("one crossing, one alert", 85, 5, 600,
     [(80, 0, 1), (84, 1000, 1), (85, 2000, 1), (90, 3000, 1), (95, 4000, 1)], [2]),
    ("above the threshold at start", 85, 5, 600, [(90, 0, 1), (91, 1000, 1)], [0]),
    ("a dip not below threshold - hysteresis does not re-arm", 85, 5, 0,
     [(86, 0, 1), (82, 10000, 1), (86, 20000, 1), (80, 30000, 1), (86, 40000, 1)], [0]),
    ("below threshold - hysteresis re-arms", 85, 5, 0,
     [(86, 0, 1), (79.9, 10000, 1), (86, 20000, 1)], [0, 2]),
    ("at the threshold counts; hysteresis 0 re-arms just below", 85, 0, 0,
     [(85, 0, 1), (84.9, 1, 1), (85, 2, 1)], [0, 2]),
    ("a crossing inside min_interval is mailed when it ends", 85, 5, 60,
     [(86, 0, 1), (79, 10000, 1), (86, 20000, 1), (87, 59999, 1), (88, 60000, 1)], [0, 4]),
    ("a crossing over before min_interval ends is not mailed", 85, 5, 60,
     [(86, 0, 1), (79, 10000, 1), (86, 20000, 1), (79, 30000, 1), (70, 90000, 1)], [0]),
    ("a failed mail is tried again at the next reading", 85, 5, 600,
     [(86, 0, 0), (87, 10000, 1), (88, 20000, 1)], [0, 1]),
    ("min_interval holds across the ticks wrap", 85, 5, 600,
     [(86, -1000, 1), (79, 200, 1), (86, 500, 1), (86, 598999, 1), (86, 599000, 1)],
     [0, 4]),
    ("an old mail does not look recent after half a ticks period", 85, 5, 600,
     [(86, 0, 1), (70, 700000, 1), (86, ("half", 1000), 1)], [0, 2]),
]


def replay(app, cases):
    # Runs on both Pythons: inspect.getsource() of this function is the unix port's driver.
    half = (time.ticks_add(0, -1) + 1) // 2
    results = []
    for _name, threshold, hysteresis, min_interval, steps, _expected in cases:
        alarm = app.Alarm(threshold, hysteresis, min_interval)
        alerts = []
        for i, (value, t, delivered) in enumerate(steps):
            # ticks_add takes deltas up to half a period less one
            now = time.ticks_add(0, t) if isinstance(t, int) else \
                time.ticks_add(time.ticks_add(0, half - 1), t[1] + 1)
            if alarm.update(value, now):
                alerts.append(i)
                if delivered:
                    alarm.done(now)
        results.append(alerts)
    return results


DRIVER = inspect.getsource(replay) + """
import json
import os
import time

import alert_app

with open("cases.json") as f:
    print(json.dumps(replay(alert_app, json.load(f))))
"""


def compile_app(board, out):
    """The board's app compiled (main.py too, which only an `import main` runs)."""
    return unixport.compile_mpy(app_files(board), out / "app")


def expected():
    return [case[-1] for case in CASES]


def test_cases_are_what_they_say():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    wrap = [c for c in CASES if "wrap" in c[0]][0]
    assert wrap[4][0][1] < 0 < wrap[4][1][1], "the wrap case does not wrap"


@pytest.mark.parametrize("board", APPS)
def test_alert_logic_on_cpython(board):
    results = replay(load_app(board), CASES)
    for case, got in zip(CASES, results, strict=True):
        assert got == case[-1], case[0]


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
def test_alert_logic_on_micropython(board, tmp_path):
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    (tmp_path / "alarm_cases.py").write_text(DRIVER)
    app = compile_app(board, tmp_path)
    unixport.compile_mpy([tmp_path / "alarm_cases.py"], app)
    res = unixport.run("alarm_cases", heap=APP_HEAP, rom=[unixport.firmware_mpy(), app],
                       cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.loads(res.stdout.strip().splitlines()[-1])
    for case, got in zip(CASES, results, strict=True):
        assert got == case[-1], case[0]


@pytest.mark.parametrize("board", APPS)
def test_simulated_sensor_rises_across_and_falls_past_rearm(board):
    app = load_app(board)
    read = app.sensor({"sensor": "simulated", "threshold": 85.0, "hysteresis": 5.0})
    values = [read() for _ in range(61)]
    assert values[:3] == [75.0, 76.0, 77.0]
    assert max(values) == 95.0 and min(values) == 75.0
    assert values[10] == 85.0 and values[30] == 85.0 and values[50] == 85.0
    # Up through 85 at readings 10 and 50, down through it at 30 (re-armed at 36: 79).
    alarm = app.Alarm(85.0, 5.0, 0)
    alerts = []
    for i, value in enumerate(values):
        if alarm.update(value, i):
            alarm.done(i)
            alerts.append(i)
    assert alerts == [10, 50]


class FakeClient:
    def __init__(self, error=None):
        self.error = error
        self.sent = []

    async def send(self, to, subject, body, priority):  # as aio.Client's
        if self.error:
            raise self.error
        self.sent.append((to, subject, body, priority))


SMTP = {"to": ["ops@example.org"]}
ALERT = {"threshold": 85.0, "subject": "Boiler at {value:.1f} °C"}
# What send()/put() get for a reading of 86.25 with SMTP and ALERT.
MAIL_AT_86_25 = (["ops@example.org"], "Boiler at 86.2 °C",
                 "Reading 86.2 °C, threshold 85.0 °C.\n", microsmtp.PRIORITY_HIGH)


@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("error, done", [
    (None, True),
    (microsmtp.SMTPError(microsmtp.SERVER_ERROR_CODE_RECEIVED, "Busy.", "RCPT", 451), False),
    (microsmtp.SMTPError(microsmtp.CONNECT_ERROR, "Refused.", "CONNECT"), False),
    (microsmtp.SMTPError(microsmtp.AUTHENTICATION_ERROR, "Bad login.", "AUTH", 535), True),
    (OSError(113, "EHOSTUNREACH"), False),
    (MemoryError("memory allocation failed, allocating 16384 bytes"), False),
    (ValueError("subject is longer than 4096 bytes"), True),  # never sendable: no retry
], ids=["sent", "451", "connect", "535", "oserror", "memory", "refused-input"])
def test_send_alert_never_raises(board, error, done, capsys):
    app = load_app(board)
    client = FakeClient(error)
    assert asyncio.run(app.send_alert(client, SMTP, ALERT, 86.25)) is done
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    if error is None:
        assert client.sent == [MAIL_AT_86_25]
        assert out == "alert sent: Boiler at 86.2 °C\n"
    else:
        assert out.startswith("alert not sent: ")


class FakeOutbox:
    """An outbox whose put() raises `error`; aflush() reports `sent` and `last_error`."""

    def __init__(self, error=None, sent=0, last_error=None, waiting=0):
        self.error, self.sent, self.last_error, self.waiting = error, sent, last_error, waiting
        self.queued = []

    def put(self, to, subject, body, priority):
        if self.error:
            raise self.error
        self.queued.append((to, subject, body, priority))

    async def aflush(self):
        if isinstance(self.sent, Exception):
            raise self.sent
        return self.sent

    def pending(self):
        return ["%08d.msg" % i for i in range(self.waiting)]

    def due(self):
        return ["due.msg"]  # something due: deliver() flushes

    def dead(self):
        return []


@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("error, done, mailed", [
    (None, True, False),
    (microsmtp.SMTPError(microsmtp.OUTBOX_FULL, "The outbox is full.", "OUTBOX"), False,
     False),
    (OSError(28, "ENOSPC"), True, True),  # flash full: sent directly instead
    (MemoryError(), False, False),
    (ValueError("subject is longer than 4096 bytes"), True, False),  # never sendable
], ids=["queued", "full", "flash-error", "memory", "refused-input"])
def test_queue_alert_never_raises(board, error, done, mailed, capsys):
    app = load_app(board)
    box, client = FakeOutbox(error), FakeClient()
    assert asyncio.run(app.queue_alert(box, client, SMTP, ALERT, 86.25)) is done
    out = capsys.readouterr().out
    if error is None:
        assert box.queued == [MAIL_AT_86_25]
        assert out == "alert queued: Boiler at 86.2 °C\n"
    else:
        assert out.startswith("alert not queued: ")
    assert bool(client.sent) is mailed
    if mailed:
        assert out.endswith("alert sent: Boiler at 86.2 °C\n")


@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("box, printed", [
    (FakeOutbox(sent=2, waiting=0), ["outbox: 2 sent, 0 waiting"]),
    (FakeOutbox(sent=1, waiting=1, last_error=microsmtp.SMTPError(
        microsmtp.SERVER_ERROR_CODE_RECEIVED, "Busy.", "RCPT", 451)),
     ["outbox: 1 sent, 1 waiting", "outbox: 1 waiting, 0 refused; last error: Busy. "
      "(status 0x%02X)" % microsmtp.SERVER_ERROR_CODE_RECEIVED]),
    (FakeOutbox(sent=OSError(5, "EIO")), ["outbox: OSError(5, 'EIO')"]),
], ids=["sent", "some-wait", "flash-error"])
def test_deliver_says_what_happened_and_never_raises(board, box, printed, capsys):
    asyncio.run(load_app(board).deliver(box))
    assert capsys.readouterr().out.splitlines() == printed
