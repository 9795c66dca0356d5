"""The board apps as the tests of tests/test_board_*.py load and run them: the shared app
(boards/common/alert_app.py) with a board's module (boards/<board>/board.py), on CPython as
modules (microsmtp through the shim), or whole on the unix port as the virtual board with
the board's main.py; and the virtual clock of their Wi-Fi waits."""

import importlib.util
import json
import subprocess
import threading
import time
from pathlib import Path

from microsmtp_host import unixport

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "boards"
SHARED = BOARDS / "common" / "alert_app.py"
BOARD_DIRS = sorted(p.parent for p in BOARDS.glob("*/board.json"))
APPS = [d.name for d in BOARD_DIRS]
# The smallest -X heapsize the app's whole run takes on the 64-bit unix port, code in
# emulated flash as when frozen (an outage, the alert kept through a reboot, two crossings
# mailed): 56K for the asyncio app on microsmtp.aio (55K fails), measured 2026-11-30
# (46.75K for the blocking app as three modules, 43K as one main.py). A 32-bit board needs
# about 57-74 % of it. 2K more for slack: near its edge the heap's layout, not only its
# size, decides (45056 bytes once failed where 44544 passed).
APP_HEAP = "58K"


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

    def ticks_add(self, a, delta):
        return (a + delta) & (P - 1)

    def sleep_ms(self, ms):
        self.now += ms


def wifi_app(board, monkeypatch):
    """The app on the virtual clock: its ticks, and its sleep_ms, which moves the clock on."""
    app = load_app(board)
    clock = FakeTime()
    monkeypatch.setattr(app, "time", clock)

    async def sleep_ms(ms):
        clock.sleep_ms(ms)

    monkeypatch.setattr(app, "sleep_ms", sleep_ms)
    return app, clock


DELETE = object()


def board_folder(board, tmp_path, port, readings, min_interval,
                 subject="Boiler at {value:.1f} °C", outbox=None, changes=None):
    """tmp_path as the virtual board's folder: config.json (alert.max_readings bounds the
    loop; changes: {"section.key": value}, DELETE: leave the key out) and the app compiled
    (app/), in emulated flash as when frozen."""
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
    return [unixport.firmware_mpy(), unixport.compile_mpy(app_files(board), tmp_path / "app")]


def run_virtual_board(board, tmp_path, port, readings, min_interval, **config):
    """The app as the virtual board runs it (`import main`, config.json in its folder: see
    board_folder), to its end."""
    rom = board_folder(board, tmp_path, port, readings, min_interval, **config)
    return unixport.run("main", heap=APP_HEAP, rom=rom, cwd=tmp_path, timeout=60)


def watch_virtual_board(board, tmp_path, port, readings, min_interval, on_line=None,
                        timeout=60, **config):
    """As run_virtual_board, each line of output timed as it comes: [(monotonic s, line)].
    on_line(line) for each (to act on what the board says while it runs)."""
    rom = board_folder(board, tmp_path, port, readings, min_interval, **config)
    cmd, env = unixport.command("main", heap=APP_HEAP, rom=rom, work=tmp_path / "work")
    lines = []
    with subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append((time.monotonic(), line.rstrip("\n")))
                if on_line is not None:
                    on_line(line)
            proc.wait(10)
        finally:
            timer.cancel()
            if proc.returncode is None:
                proc.kill()
    assert proc.returncode == 0, "\n".join(line for _, line in lines)
    return lines


def queued(folder):
    return sorted(p.name for p in (folder / "outbox").iterdir() if p.is_file())
