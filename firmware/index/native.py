# microsmtp: native.mpy of the mip index (`make index`): the board's own native code. MIT licence.
# An .mpy with native code loads on one architecture only, and mip asks an index by .mpy
# version alone (package/6/...), never by architecture. So the index ships
# microsmtp/native.py compiled for each architecture mpy-cross knows, as native_<N>.mpy (N:
# the architecture's number, sys.implementation._mpy >> 10, py/persistentcode.h; 2 x64,
# 4 armv6m: RP2040, 10 xtensawin: ESP32, 11 rv32imc: ESP32-C3), and this, compiled without
# -march (bytecode: any board), as microsmtp/native.mpy: it imports the board's and hands on
# its functions. Numbers, not names: a table of names would stay in the heap (~900 B).
# Not in firmware/microsmtp: `microsmtp deploy --mpy` compiles native.py for the board alone.
import sys

_mpy = sys.implementation._mpy
# Native code loads only on the .mpy sub-version it was made for: 3, mpy-cross 1.29's.
if (_mpy >> 8) & 3 != 3:
    raise ImportError("microsmtp: native code is .mpy v6.3")
_m = __import__("microsmtp.native_%d" % (_mpy >> 10), None, None, ("clear",))
transform = _m.transform
copy = _m.copy
scan_body = _m.scan_body
clear = _m.clear
del _m, _mpy, sys
