"""The board apps as the tests of tests/test_board_*.py load and run them: the shared app
(boards/common/alert_app.py) with a board's module (boards/<board>/board.py), on CPython as
modules (microsmtp through the shim), or whole on the unix port as the virtual board with
the board's main.py; and the virtual clock of their Wi-Fi waits."""

import importlib.util
import json
from pathlib import Path

from microsmtp_host import unixport

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "boards"
SHARED = BOARDS / "common" / "alert_app.py"
BOARD_DIRS = sorted(p.parent for p in BOARDS.glob("*/board.json"))
APPS = [d.name for d in BOARD_DIRS]
# The smallest -X heapsize the app's whole run takes on the 64-bit unix port, code in
# emulated flash as when frozen, is about 46.75K with its outbox since the app is three
# modules (main, board, alert_app), measured 2026-11-30; 43K as one main.py, which starts
# its loop with 320 bytes less free: the peak, in a send, meets a heap laid out otherwise.
# A 32-bit board needs less. 1.5K more for slack: near its edge the heap's layout,
# not only its size, decides (45056 bytes failed where 44544 passed).
APP_HEAP = "49K"


def app_files(board):
    """The files of a board's app, as `microsmtp deploy --app` puts them on the board."""
    return [BOARDS / board / "main.py", BOARDS / board / "board.py", SHARED]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_app(board):
    """A fresh alert_app module on CPython (microsmtp through the shim), its `board` the
    board's module, as main() sets it: app.main(app.board, path) runs the app."""
    name = board.replace("-", "_")
    app = _load("alert_app_" + name, SHARED)
    app.board = _load("board_" + name, BOARDS / board / "board.py")
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
    app = unixport.compile_mpy(app_files(board), tmp_path / "app")
    return unixport.run("main", heap=APP_HEAP, rom=[unixport.firmware_mpy(), app],
                        cwd=tmp_path, timeout=60)


def queued(folder):
    return sorted(p.name for p in (folder / "outbox").iterdir() if p.is_file())
