# microsmtp: native.mpy of the mip index (`make index`) — the board's own native code. MIT licence.
# An .mpy with native code loads on one architecture only, and mip asks an index by .mpy
# version alone (package/6/...), never by architecture. So the index ships
# microsmtp/native.py compiled for each architecture mpy-cross knows, as native_<arch>.mpy,
# and this, compiled without -march (bytecode: any board), as microsmtp/native.mpy: it
# imports the one for the architecture the board reports (sys.implementation._mpy, bits
# 10+; numbered as mpy-cross's -march names, py/persistentcode.h) and hands on its functions.
# Not in firmware/microsmtp: `microsmtp deploy --mpy` compiles native.py for the board alone.
import sys

# Index: the arch number. `make index` builds native_<name>.mpy for each name here.
_ARCHS = ("", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
          "xtensa", "xtensawin", "rv32imc")
_mpy = getattr(sys.implementation, "_mpy", 0)
# Native code loads only on the .mpy sub-version it was made for: 3, mpy-cross 1.29's.
if not 0 < _mpy >> 10 < len(_ARCHS) or (_mpy >> 8) & 3 != 3:
    raise ImportError("microsmtp: no native code in this install for this MicroPython "
                      "(.mpy v%d.%d, arch %d): install with `microsmtp deploy --mpy`"
                      % (_mpy & 255, (_mpy >> 8) & 3, _mpy >> 10))
_m = __import__("microsmtp.native_" + _ARCHS[_mpy >> 10], None, None, ("clear",))
transform = _m.transform
copy = _m.copy
scan_body = _m.scan_body
clear = _m.clear
del _m, _mpy, _ARCHS, sys
