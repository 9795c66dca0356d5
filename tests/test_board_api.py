"""firmware/ uses only modules and names that ESP32 and Pico W have (MicroPython 1.29).

The boards' API is read from their PyPI stub packages, which `make setup` installs apart into
.stubs/esp32, .stubs/rp2 and .stubs/stdlib: installed together they overwrite each other.
"""

import ast

from board_api import BOARDS, STUBS, collect_uses, firmware_files, missing_on, where


def test_firmware_uses_only_what_both_boards_have():
    for board in BOARDS:
        assert (STUBS / board).is_dir(), "no .stubs/%s: run `make setup`" % board
    assert (STUBS / "stdlib").is_dir(), "no .stubs/stdlib: run `make setup`"
    uses = collect_uses(firmware_files())
    assert uses, "found no imports in firmware/: is the walk broken?"
    report = []
    for board in BOARDS:
        report += ["%s lacks %s" % (board, m) for m in missing_on(board, uses)]
    assert not report, "firmware/ uses what a board lacks:\n" + "\n".join(report)


def test_checker_sees_uses_and_gaps(tmp_path):
    """The walk finds each kind of use, and the stub lookup can say no."""
    a = tmp_path / "a.py"
    a.write_text(
        "import time\nimport errno\nfrom micropython import const\nfrom . import b\n"
        "from os import urandom\n_X = const(1)\n"
        "def f():\n    import socket as net\n    return time.ticks_ms(), net\n"
        "def g():\n    try:\n        import network\n    except ImportError:\n        return\n"
        "    return network.WLAN(network.STA_IF), getattr(errno, 'errorcode', None), "
        "getattr(errno, 'EAGAIN')\n"
        "def h():\n    return hasattr(time, 'ticks_cpu'), b.thing\n")
    b = tmp_path / "b.py"
    b.write_text("def run(net):\n    return net.getaddrinfo, net.AF_INET6\n")
    uses = collect_uses([a, b])
    assert set(uses) == {
        ("time", None), ("time", "ticks_ms"), ("errno", None), ("errno", "EAGAIN"),
        ("os", None), ("os", "urandom"), ("socket", None), ("socket", "getaddrinfo"),
        ("socket", "AF_INET6"), ("network", None), ("network", "WLAN"), ("network", "STA_IF"),
        ("micropython", None)}
    fake = {("time", "no_such_name"): ["x"], ("typing", None): ["y"], ("time", "ticks_ms"): [],
            ("ssl", "SSLContext"): [], ("asyncio", "open_connection"): []}
    for board in BOARDS:
        assert (STUBS / board).is_dir(), "no .stubs/%s: run `make setup`" % board
        gaps = missing_on(board, fake)
        assert len(gaps) == 2, gaps
        assert "time.no_such_name" in gaps[0] and "module typing" in gaps[1], gaps


VIPER_TYPES = {"ptr", "ptr8", "ptr16", "ptr32", "uint"}


def _is_viper(node):
    return any(isinstance(d, ast.Attribute) and d.attr == "viper"
               and getattr(d.value, "id", None) == "micropython" for d in node.decorator_list)


def test_viper_types_only_in_viper_functions():
    """ptr8, ptr32, uint... exist only for MicroPython's viper compiler, inside a
    @micropython.viper function (py/compile.c knows them by name). Anywhere else a board
    raises NameError, while the CPython shim, which makes them built-ins, would not."""
    found, viper = [], 0
    for path in firmware_files():
        tree = ast.parse(path.read_text(), str(path))
        inside = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _is_viper(node):
                viper += 1
                inside |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in VIPER_TYPES and id(node) not in inside:
                found.append("%s %s" % (where(path, node), node.id))
    assert viper, "no @micropython.viper function found: is the walk broken?"
    assert not found, "viper types outside a viper function: " + ", ".join(found)


def test_no_assert_in_firmware():
    """Asserts vanish under -O (mpy-cross -O3 as `make mpy` builds): check with an if/raise."""
    found = []
    for path in firmware_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                found.append(where(path, node))
    assert not found, "assert in firmware/ (vanishes under -O): " + ", ".join(found)
