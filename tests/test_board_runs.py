"""The board app end to end against aiosmtpd on loopback: the whole app on the unix port as
the virtual board (sensor "simulated"): a mail for each crossing, an alert kept through an
outage and a reboot, a refused one moved to dead/, no usable outbox, and the readings'
cadence kept through an outage and a slow server; main() on CPython's asyncio with the link
down for a while (the Wi-Fi supervisor); and a bad config said once while the readings go
on."""

import json
import os
import re
import time

import microsmtp
import pytest
import servers
from microsmtp import aio
from microsmtp_host.shim import net

from boards import APPS, DELETE, FakeTime, load_app, queued, run_virtual_board, watch_virtual_board


@pytest.fixture(scope="module")
def catcher():
    """(handler, port): a servers.Recorder behind aiosmtpd, no AUTH, that refuses a
    message whose subject holds "Refuse" (550) and takes the rest."""
    for srv in servers.serving(servers.Recorder(
            data_replies={"Refuse": "550 5.1.1 no such mailbox"}), auth=False):
        yield srv.handler, srv.port


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("readings, min_interval, alerts", [
    (30, 600, 1),  # up across 85 and down past 80: one crossing
    (60, 0, 2),  # two crossings, no hold-off
    (60, 600, 1),  # the second crossing falls inside min_interval
])
def test_virtual_board_mails_each_crossing(board, readings, min_interval, alerts, catcher,
                                           tmp_path):
    handler, port = catcher
    handler.reset()
    # A reading every 20 ms: a mail goes out long before the next crossing, 40 readings
    # on. (Crossings raised while the alert task is still busy with one are one alert.)
    res = run_virtual_board(board, tmp_path, port, readings, min_interval,
                            changes={"alert.period": 0.02})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("alert queued: Boiler at 85.0 °C") == alerts, res.stdout
    assert res.stdout.count("outbox: 1 sent, 0 waiting") == alerts, res.stdout
    assert "free heap: " in res.stdout and "last error" not in res.stdout
    assert len(handler.messages) == alerts
    for msg in handler.emails():
        assert msg["Subject"] == "Boiler at 85.0 °C"
        assert msg["To"] == "oncall@example.com"
        assert msg["X-Priority"].startswith("1")
        assert msg.get_content().splitlines() == ["Reading 85.0 °C, threshold 85.0 °C."]
    assert queued(tmp_path) == []


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
def test_virtual_board_keeps_an_alert_through_an_outage_and_a_reboot(board, catcher,
                                                                     tmp_path):
    with servers.refused_port() as down:  # every connect is refused
        res = run_virtual_board(board, tmp_path, down, 30, 600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert len([line for line in lines if re.fullmatch(r"\d+\.\d °C", line)]) == 30
    assert res.stdout.count("alert queued: Boiler at 85.0 °C") == 1, res.stdout
    # Tried at once, then not again within the run: the first retry is 30 s later.
    failures = [line for line in lines if line.startswith("outbox: 1 waiting, 0 refused; ")]
    assert len(failures) == 1, res.stdout
    assert "(status 0x%02X)" % microsmtp.CONNECT_ERROR in failures[0]
    assert queued(tmp_path) == ["00000001.msg"]
    # Power off and on, the server is back: the alert goes out at the first reading.
    handler, port = catcher
    handler.reset()
    res = run_virtual_board(board, tmp_path, port, 1, 600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 alerts queued" in res.stdout and "outbox: 1 sent, 0 waiting" in res.stdout
    assert [m["Subject"] for m in handler.emails()] == ["Boiler at 85.0 °C"]
    assert queued(tmp_path) == []


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
def test_virtual_board_moves_a_refused_alert_to_dead(board, catcher, tmp_path):
    handler, port = catcher
    res = run_virtual_board(board, tmp_path, port, 12, 600, subject="Refuse {value:.0f}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outbox: 0 waiting, 1 refused; last error: " in res.stdout, res.stdout
    assert queued(tmp_path) == []
    reply = (tmp_path / "outbox" / "dead" / "00000001.reply").read_text()
    assert "550" in reply and "no such mailbox" in reply


class SwitchedWLAN:
    """A station link that is up or down as the test says (connect() changes nothing)."""

    def __init__(self):
        self.up = True
        self.connects = 0

    def isconnected(self):
        return self.up

    def active(self, on):
        pass

    def config(self, **kw):
        pass

    def connect(self, *args):
        self.connects += 1

    def disconnect(self):
        pass

    def status(self):
        return -2

    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")


class HostClient(aio.Client):
    """The app's aio.Client on CPython's sockets through the shim (a board's are
    MicroPython's)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, net=net, **kwargs)


@pytest.mark.parametrize("board", APPS)
def test_an_alert_raised_while_wifi_is_down_goes_out_when_it_is_back(board, catcher,
                                                                      monkeypatch, tmp_path,
                                                                      capsys):
    # The whole app on CPython's asyncio, in real time: a real aiosmtpd server and outbox
    # folder; only the radio (down from reading 8 to reading 20) is a fake, and the Wi-Fi
    # waits are shortened (a try 100 ms, a rest 50 ms) to fit in 50 ms readings.
    handler, port = catcher
    handler.reset()
    app = load_app(board)
    for name, ms in (("_WIFI_DEADLINE_MS", 100), ("_WIFI_POLL_MS", 10),
                     ("_WIFI_SETTLE_MS", 10), ("_WIFI_CHECK_MS", 10), ("_WIFI_REST_MS", 50)):
        monkeypatch.setattr(app, name, ms)
    wlan = SwitchedWLAN()
    monkeypatch.setattr(app, "network", type("network", (), {
        "STA_IF": 0, "WLAN": staticmethod(lambda interface: wlan)}))
    values = app.sensor({"sensor": "simulated", "threshold": 85.0, "hysteresis": 5.0})
    readings = []

    def read():
        readings.append(len(readings))
        wlan.up = not 8 <= len(readings) <= 20
        if len(readings) == 21:
            assert handler.messages == []  # nothing could go while the link was down
        return values()

    monkeypatch.setattr(app, "sensor", lambda alert: read)
    monkeypatch.setattr(app.aio, "Client", HostClient)
    monkeypatch.setattr(app, "gc", type("gc", (), {  # CPython's gc has no mem_free
        "collect": staticmethod(lambda: None), "mem_free": staticmethod(lambda: 0)}))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "wifi": {"ssid": "home", "password": "pw"},
        "smtp": {"server": "127.0.0.1", "port": port, "tls": "none",
                 "from": "boiler@example.com", "to": ["oncall@example.com"]},
        "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                  "subject": "Boiler at {value:.1f} °C", "period": 0.05, "max_readings": 25},
        "outbox": {"path": str(tmp_path / "outbox")}}))
    app.main(app.board, str(config))
    out = capsys.readouterr().out
    assert [m["Subject"] for m in handler.emails()] == ["Boiler at 85.0 °C"]
    queued, sent = out.index("alert queued: Boiler at 85.0 °C"), out.index("outbox: 1 sent")
    # The supervisor tried while the link was down (3 tries, a rest, 3 more...), and the
    # alert went out once it was back.
    assert out.count("wifi: no link") >= 3, out
    back = out.rindex("wifi: up as")
    assert queued < out.rindex("wifi: no link") < back < sent, out
    assert sorted(os.listdir(tmp_path / "outbox")) == ["dead", "tmp"]  # nothing left


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
def test_virtual_board_without_a_usable_outbox_sends_directly(board, catcher, tmp_path):
    # The outbox folder cannot be made (its path is a file): the app says so and mails
    # each alert directly instead of stopping.
    handler, port = catcher
    handler.reset()
    res = run_virtual_board(board, tmp_path, port, 30, 600, outbox={"path": "config.json"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outbox: not usable (OSError(" in res.stdout, res.stdout
    assert res.stdout.count("alert sent: Boiler at 85.0 °C") == 1
    assert [m["Subject"] for m in handler.emails()] == ["Boiler at 85.0 °C"]


# --- a bad config: one line at start, then the readings go on --------------------------------

BAD_CONFIGS = [
    # Client(...) refuses these at start: before, the app stopped there with a traceback.
    ({"smtp.username": "boiler", "smtp.password": "p" * 256},
     "password is longer than 255 bytes"),
    ({"smtp.username": "u" * 256}, "username is longer than 255 bytes"),
    ({"smtp.from": "boiler"}, "from_address 'boiler' is not of the form name@domain"),
    ({"smtp.tls": "maybe"}, "smtp.tls 'maybe' is unknown"),
    ({"smtp.to": DELETE}, "'to' is missing"),
    ({"smtp.to": ["no-at-sign"]}, "smtp.to 'no-at-sign' is not of the form name@domain"),
    ({"smtp.to": []}, "smtp.to '' is empty"),
    ({"alert.subject": "Boiler at {temp}"}, "alert.subject cannot be formatted"),
    ({"alert.threshold": "85"}, "alert.threshold '85': not a number, or out of range"),
    ({"alert.min_interval": 7 * 86400}, "alert.min_interval 604800: not a number, or out"),
]


@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("changes, words", BAD_CONFIGS,
                         ids=[re.sub(r"\W+", "-", words)[:32] for _, words in BAD_CONFIGS])
def test_virtual_board_with_a_bad_config_says_so_once_and_reads_on(board, changes, words,
                                                                    catcher, tmp_path):
    handler, port = catcher
    handler.reset()
    res = run_virtual_board(board, tmp_path, port, 30, 600, changes=changes)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    said = [line for line in lines if line.startswith("config: ")]
    assert len(said) == 1 and lines[0] == said[0], res.stdout
    assert said[0].startswith("config: config.json: ") and words in said[0], said
    assert said[0].endswith("; readings go on, no alert is mailed (docs/CONFIG.md)")
    # All 30 readings, across the threshold (85.0 is among them), and not a mail.
    readings = [line for line in lines if re.fullmatch(r"-?\d+\.\d °C", line)]
    assert len(readings) == 30 and "85.0 °C" in readings, res.stdout
    assert not [line for line in lines if line.startswith(("alert ", "outbox:"))]
    assert handler.messages == []
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("board", APPS)
@pytest.mark.parametrize("text", ["{", "[]", None], ids=["not-json", "not-an-object", "none"])
def test_app_without_a_usable_config_reads_on(board, text, monkeypatch, tmp_path, capsys):
    # main() on CPython, for what the unix port cannot bound: with no usable config there
    # is no alert.max_readings, so the loop runs for ever; the fake clock's sleep ends it.
    app = load_app(board)
    clock = FakeTime()
    sleeps = []

    class Enough(Exception):
        pass

    async def sleep_ms(ms):
        sleeps.append(ms)
        clock.sleep_ms(ms)
        if len(sleeps) == 5:
            raise Enough  # out of the endless loop, after 5 readings
    monkeypatch.setattr(app, "time", clock)
    monkeypatch.setattr(app, "sleep_ms", sleep_ms)
    monkeypatch.setattr(app, "gc", type("gc", (), {  # CPython's gc has no mem_free
        "collect": staticmethod(lambda: None), "mem_free": staticmethod(lambda: 0)}))
    values = iter(range(80, 90))
    monkeypatch.setattr(app, "sensor", lambda alert: lambda: next(values))
    config = tmp_path / "config.json"
    if text is not None:
        config.write_text(text)
    with pytest.raises(Enough):
        app.main(app.board, str(config))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("config: %s: " % config) and len(lines) == 1 + 1 + 5, lines
    assert lines[2:] == ["80.0 °C", "81.0 °C", "82.0 °C", "83.0 °C", "84.0 °C"]
    assert sleeps == [10000] * 5  # the default period


# --- the asyncio app: the readings keep their cadence while a mail waits on its server -------

@pytest.mark.unixport
@pytest.mark.parametrize("board", APPS)
def test_readings_keep_their_cadence_through_an_outage_and_a_slow_server(board, tmp_path):
    """As `make demo` shows it, on the unix port: the server is down when the alert is
    raised, and comes back (on the same port) once the board says the alert waits; then it
    answers each command 500 ms late. A reading every 200 ms throughout: never a gap above
    400 ms, though one blocked reply alone would make one; readings go on while the alert
    waits for the server and while it goes through."""
    period = 200
    srv = servers.Server(handler=servers.SlowRecorder(0.5), auth=False)
    back = []

    def on_line(line):
        if line.startswith("outbox: 1 waiting") and not back:
            srv.start()  # the same port, as the demo's catcher
            back.append(time.monotonic())

    try:
        lines = watch_virtual_board(board, tmp_path, srv.port, 40, 600, on_line=on_line,
                                    changes={"alert.period": period / 1000,
                                             "outbox.retry": 0.5})
    finally:
        if back:
            srv.stop()
    out = "\n".join(line for _, line in lines)
    assert "Traceback" not in out, out
    times = [t for t, line in lines if re.fullmatch(r"\d+\.\d °C", line)]
    assert len(times) == 40, out
    gaps = [round((b - a) * 1000) for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 2 * period, (gaps, out)
    # In this order: queued, the try that found no server, back, sent.
    at = [next(i for i, (_, line) in enumerate(lines) if line.startswith(step)) for step in (
        "alert queued: Boiler at 85.0 °C",
        "outbox: 1 waiting, 0 refused; last error: Cannot connect",
        "outbox: 1 sent, 0 waiting")]
    assert at == sorted(at), out
    # The mail took its four late replies (EHLO, MAIL, RCPT, the end of DATA: 2 s), and
    # the readings went on meanwhile.
    sent = lines[at[2]][0]
    assert sent - back[0] >= 2.0, out
    assert len([t for t in times if back[0] < t < sent]) >= 8, out
    assert [m["Subject"] for m in srv.handler.emails()] == ["Boiler at 85.0 °C"]
    assert queued(tmp_path) == []
