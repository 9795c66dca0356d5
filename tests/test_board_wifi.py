"""The board app's Wi-Fi bring-up (boards/common/alert_app.py wifi_up,
with each board's board.wifi quirks) on a virtual clock, with a
fake WLAN: up, bounded tries, and no trust in a link that drops at once."""

import asyncio

import pytest

from boards import APPS, wifi_app


class FakeWLAN:
    """Links up `up_after` ms after connect() (None: never), and down again `drops_after`
    ms after that (None: stays up)."""

    def __init__(self, clock, up_after=None, drops_after=None):
        self.clock = clock
        self.up_after = up_after
        self.drops_after = drops_after
        self.calls = []
        self.since = None

    def isconnected(self):
        if self.since is None or self.up_after is None:
            return False
        t = self.clock.now - self.since - self.up_after
        return t >= 0 and (self.drops_after is None or t < self.drops_after)

    def active(self, on):
        self.calls.append(("active", on))

    def config(self, **kw):
        self.calls.append(("config", kw))

    def connect(self, *args):
        self.calls.append(("connect",) + args)
        self.since = self.clock.now

    def disconnect(self):
        self.calls.append(("disconnect",))
        self.since = None

    def status(self):
        return -2

    def ifconfig(self):
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")


@pytest.mark.parametrize("board", APPS)
def test_wifi_up(board, monkeypatch, capsys):
    app, clock = wifi_app(board, monkeypatch)
    wlan = FakeWLAN(clock, up_after=3000)
    assert asyncio.run(app.wifi_up(wlan, {"ssid": "home", "password": "pw"})) is True
    assert ("connect", "home", "pw") in wlan.calls
    assert "wifi: up as 192.168.1.50" in capsys.readouterr().out
    if board == "rp2-pico-w":  # power saving off before connecting
        assert wlan.calls.index(("config", {"pm": 0xA11140})) < wlan.calls.index(
            ("connect", "home", "pw"))
    assert asyncio.run(app.wifi_up(wlan, {"ssid": "home"})) is True  # already up: nothing more
    assert len([c for c in wlan.calls if c[0] == "connect"]) == 1


@pytest.mark.parametrize("board", APPS)
def test_wifi_gives_up_after_bounded_tries(board, monkeypatch, capsys):
    app, clock = wifi_app(board, monkeypatch)
    wlan = FakeWLAN(clock)  # never links
    assert asyncio.run(app.wifi_up(wlan, {"ssid": "home", "password": None})) is False
    connects = [c for c in wlan.calls if c[0] == "connect"]
    assert connects == [("connect", "home")] * 3  # open network: no password argument
    assert 3 * 20000 <= clock.now <= 3 * 21000, clock.now
    assert capsys.readouterr().out.count("wifi: no link to 'home' (status -2)") == 3


@pytest.mark.parametrize("board", APPS)
def test_wifi_does_not_trust_a_link_that_drops_at_once(board, monkeypatch):
    app, clock = wifi_app(board, monkeypatch)
    wlan = FakeWLAN(clock, up_after=1000, drops_after=300)
    assert asyncio.run(app.wifi_up(wlan, {"ssid": "home", "password": "pw"})) is False
