"""Lets CPython run firmware/microsmtp unmodified. Never shipped to a board.

install() supplies what MicroPython has built in and CPython lacks: a `micropython` module
(const), time.ticks_* with MicroPython's wrap-around arithmetic, and the path to firmware/.
The network goes in by dependency injection: Client(..., net=microsmtp_host.shim.net).
"""

import sys
import time
import types
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[3] / "firmware"

# MicroPython's ticks wrap at its small-int range: 2**30 on the 32-bit boards (ESP32, RP2040),
# 2**62 on the 64-bit unix port. The shim uses the boards' period, so wrap bugs show here.
_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1


def ticks_ms():
    return int(time.monotonic() * 1000) & _MASK


def ticks_add(ticks, delta):
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


def _micropython_module():
    mod = types.ModuleType("micropython")
    mod.const = lambda value: value
    return mod


def install():
    """Idempotent. After it, `import microsmtp` works on CPython."""
    sys.modules.setdefault("micropython", _micropython_module())
    for name, fn in (("ticks_ms", ticks_ms), ("ticks_add", ticks_add),
                     ("ticks_diff", ticks_diff)):
        if not hasattr(time, name):
            setattr(time, name, fn)
    if FIRMWARE.is_dir() and str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
