"""Lets CPython run firmware/microsmtp unmodified. Never shipped to a board.

install() supplies what MicroPython has built in and CPython lacks: a `micropython` module
(const, viper), the viper type names as built-ins, time.ticks_* with MicroPython's
wrap-around arithmetic, and the path to firmware/. The network goes in by dependency
injection: Client(..., net=microsmtp_host.shim.net).

Viper functions (@micropython.viper: native code on a board) run on CPython as the plain
Python they are written in: the casts ptr8/ptr16/ptr32/ptr/uint are built-ins that hand their
argument back, so `src: ptr8` indexes the buffer itself. A byte loop is fast as native code
and slow as CPython bytecode (native.transform for 8bit: 150 MB/s on the unix port, 7.7
MB/s here, where the slice-copying Python before it managed 82), so a viper function may
have a faster CPython twin in twins.py (that one: 59 MB/s 8bit, 7.4 quoted-printable, was
5), giving the same bytes: the decorator hands out the twin and keeps the firmware's own
function in PURE, where the tests that compare the two find it.
"""

import builtins
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


# "module.name" of a viper function -> that function as written in firmware/ (see viper()).
PURE = {}


def viper(fn):
    """@micropython.viper on CPython: fn's twin from twins.py if it has one, else fn."""
    from . import twins

    name = "%s.%s" % (fn.__module__, fn.__name__)
    twin = twins.TWINS.get(name)
    if twin is None:
        return fn
    PURE[name] = fn
    return twin


def _cast(obj):
    return obj


def _micropython_module():
    mod = types.ModuleType("micropython")
    mod.const = lambda value: value
    mod.viper = viper
    return mod


def install():
    """Idempotent. After it, `import microsmtp` works on CPython."""
    sys.modules.setdefault("micropython", _micropython_module())
    # Viper's casts and annotations (MicroPython's compiler knows them by name, py/compile.c).
    for name, fn in (("ptr", _cast), ("ptr8", _cast), ("ptr16", _cast), ("ptr32", _cast),
                     ("uint", int)):
        if not hasattr(builtins, name):
            setattr(builtins, name, fn)
    for name, fn in (("ticks_ms", ticks_ms), ("ticks_add", ticks_add),
                     ("ticks_diff", ticks_diff)):
        if not hasattr(time, name):
            setattr(time, name, fn)
    if FIRMWARE.is_dir() and str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
