"""The board apps (boards/*/main.py) as the tests of tests/test_board_*.py load and run
them: on CPython as a module (microsmtp through the shim), or whole on the unix port as the
virtual board; and the virtual clock of their Wi-Fi waits."""

import importlib.util
import json
from pathlib import Path

from microsmtp_host import unixport

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "boards"
BOARD_DIRS = sorted(p.parent for p in BOARDS.glob("*/board.json"))
APPS = [d.name for d in BOARD_DIRS]
# The smallest -X heapsize the app's whole run takes on the 64-bit unix port, code in
# emulated flash as when frozen, is about 44.5K with its outbox, after the hardening of
# issue 9 (42K before; a 32-bit board needs less); 1.5K more for slack: near its edge the
# heap's layout, not only its size, decides (45056 bytes failed where 44544 passed).
APP_HEAP = "46K"


def load_app(board):
    """boards/<board>/main.py as a module on CPython (microsmtp through the shim)."""
    spec = importlib.util.spec_from_file_location("app_" + board.replace("-", "_"),
                                                  BOARDS / board / "main.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


P = 1 << 30  # a board's ticks_ms period


class FakeTime:
    """time.ticks_* and sleep_ms on a virtual clock (sleep advances it)."""

    def __init__(self):
        self.now = 0

    def ticks_ms(self):
        return self.now & (P - 1)

    def ticks_diff(self, a, b):
        return ((a - b + (P >> 1)) & (P - 1)) - (P >> 1)

    def sleep_ms(self, ms):
        self.now += ms


def wifi_app(board, monkeypatch):
    app = load_app(board)
    clock = FakeTime()
    monkeypatch.setattr(app, "time", clock)
    return app, clock


DELETE = object()


def run_virtual_board(board, tmp_path, port, readings, min_interval,
                      subject="Boiler at {value:.1f} °C", outbox=None, changes=None):
    """The app as the virtual board runs it (`import main`, config.json in its folder),
    compiled and in emulated flash as when frozen; alert.max_readings bounds its loop.
    changes: {"section.key": value} for the config (DELETE: leave the key out)."""
    cfg = {
        "smtp": {"server": "127.0.0.1", "port": port, "tls": "none",
                 "from": "boiler@example.com", "to": ["oncall@example.com"]},
        "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": min_interval,
                  "subject": subject, "sensor": "simulated",
                  "period": 0, "max_readings": readings},
        "outbox": outbox or {}}
    for name, value in (changes or {}).items():
        section, key = name.split(".")
        if value is DELETE:
            del cfg[section][key]
        else:
            cfg[section][key] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg, ensure_ascii=False),
                                          encoding="utf-8")
    app = unixport.compile_mpy([BOARDS / board / "main.py"], tmp_path / "app")
    return unixport.run("main", heap=APP_HEAP, rom=[unixport.firmware_mpy(), app],
                        cwd=tmp_path, timeout=60)


def queued(folder):
    return sorted(p.name for p in (folder / "outbox").iterdir() if p.is_file())
