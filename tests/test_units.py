"""unit_cases.py on CPython and on the MicroPython unix port; plus CPython-only checks."""

import json
import re

import microsmtp
import pytest
import runtimes
import unit_cases


@pytest.mark.parametrize("name", unit_cases.CASES)
def test_cpython(name):
    unit_cases.run(name)


@pytest.fixture(scope="session")
def micropython_units(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mp_units")
    test_mpy = runtimes.compile_mpy(
        [runtimes.ROOT / "tests" / "unit_cases.py", runtimes.ROOT / "tests" / "mp_units.py"],
        tmp)
    proc = runtimes.run_micropython("mp_units", [], [test_mpy, runtimes.firmware_mpy()],
                                    timeout=120, heap=runtimes.UNITS_HEAP)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            res = json.loads(line)
            results[res["name"]] = res
    return results, proc


@pytest.mark.unixport
@pytest.mark.parametrize("name", unit_cases.CASES)
def test_micropython(name, micropython_units):
    results, proc = micropython_units
    assert name in results, "no result from MicroPython: %s" % proc.stderr[-2000:]
    assert results[name]["ok"], results[name].get("error")


def test_status_codes_match_protocol_constants():
    """protocol.py, pool.py, status.py and the rest inline status values as private consts:
    they must equal the public ones."""
    found = []
    for name in ("protocol", "pool", "status", "auth", "secure", "outbox", "session", "message",
                 "trace", "utf8"):
        src = (runtimes.ROOT / "firmware" / "microsmtp" / (name + ".py")).read_text()
        found += re.findall(r"^_([A-Z_]+) = const\((0x[0-9A-F]+)\)", src, re.M)
    assert len(found) > 10
    for name, value in found:
        assert getattr(microsmtp, name) == int(value, 16), name


def test_private_constants_agree_across_modules():
    """protocol.py, transport.py, secure.py, auth.py, __init__.py and message.py each inline
    the same request, result, TLS-mode, phase, AUTH and body-scan values as private consts
    (a name kept costs heap on a board); native.py the body bytes and the encoder's state
    layout of message.py's; mime.py the header parts (_H_*) and encoder state of
    message.py's; utf8.py the EHLO bits (_CAP_*) and transfer encoding (_CTE_8BIT) of
    protocol.py's and message.py's, and message.py and mime.py Session.flags' _F_UTF8."""
    seen = {}
    for name in ("protocol", "transport", "secure", "auth", "__init__", "message", "native",
                 "trace", "mime", "utf8"):
        src = (runtimes.ROOT / "firmware" / "microsmtp" / (name + ".py")).read_text()
        pattern = r"^_?((?:OP|ERR|TLS|P|N|CAP|F|AUTH|LINE|SCAN|S|H|PRIORITY|CTE)_" \
                  r"[A-Z_0-9]+|CR|LF|DOT|EQ) = const\((-?[0-9A-Fa-fx]+)\)"
        for const, value in re.findall(pattern, src, re.M):
            value = int(value, 0)
            assert seen.setdefault(const, value) == value, (name, const)
    assert len(seen) >= 30
    import unit_cases

    assert (unit_cases.CTE_7BIT, unit_cases.CTE_8BIT, unit_cases.CTE_QP) == (
        seen["CTE_7BIT"], seen["CTE_8BIT"], seen["CTE_QP"])
    for public in ("TLS_NONE", "TLS_STARTTLS", "TLS_IMPLICIT"):
        assert getattr(microsmtp, public) == seen[public]


def test_ehlo_name_tables_match():
    """protocol.py matches EHLO words against 10-byte slots; their order gives the bits."""
    from microsmtp import auth, protocol

    def slots(table):
        return [table[i:i + 10].strip() for i in range(0, len(table), 10)]

    assert slots(protocol._MECHS) == [auth.name(m) for m in (1, 2, 3, 4)]
    src = (runtimes.ROOT / "firmware" / "microsmtp" / "auth.py").read_text()
    for name in ("LOGIN", "PLAIN"):  # bit = 1 << (AUTH_* - 1); the others are computed so
        bit = re.search(r"^_MECH_%s = const\((\d+)\)" % name, src, re.M).group(1)
        assert int(bit) == 1 << (getattr(microsmtp, "AUTH_" + name) - 1), name
    keywords = slots(protocol._KEYWORDS)
    assert keywords == [b"8BITMIME", b"PIPELINING", b"STARTTLS", b"SIZE", b"AUTH", b"SMTPUTF8"]
    for name, bit in (("8BITMIME", protocol._CAP_8BITMIME),
                      ("PIPELINING", protocol._CAP_PIPELINING),
                      ("STARTTLS", protocol._CAP_STARTTLS), ("SIZE", protocol._CAP_SIZE),
                      ("AUTH", protocol._CAP_AUTH), ("SMTPUTF8", protocol._CAP_SMTPUTF8)):
        assert 1 << keywords.index(name.encode()) == bit
    assert 1 << protocol._SLOT_SIZE == protocol._CAP_SIZE
    assert 1 << protocol._SLOT_AUTH == protocol._CAP_AUTH


def test_status_codes_are_netx_values():
    netx = {"AUTHENTICATION_ERROR": 0xA0, "OVERSIZE_MAIL_DATA": 0xA1,
            "INVALID_SERVER_REPLY": 0xA2, "INTERNAL_ERROR": 0xA3,
            "SERVER_ERROR_CODE_RECEIVED": 0xA4, "INVALID_PARAM": 0xA5,
            "PACKET_ALLOCATE_ERROR": 0xA6, "GREET_REPLY_ERROR": 0xA7,
            "HELLO_REPLY_ERROR": 0xA8, "MAIL_REPLY_ERROR": 0xA9, "RCPT_REPLY_ERROR": 0xAA,
            "MESSAGE_REPLY_ERROR": 0xAB, "DATA_REPLY_ERROR": 0xAC, "AUTH_REPLY_ERROR": 0xAD,
            "SERVER_ERROR_REPLY": 0xAE, "TRANSMIT_ERROR": 0xAF,
            "INVALID_SERVER_CHALLENGE": 0xB0, "OVERSIZE_SERVER_REPLY": 0xB1,
            "CLIENT_NOT_INITIALIZED": 0xB2, "SUCCESS": 0}
    for name, value in netx.items():
        assert getattr(microsmtp, name) == value, name
    assert (microsmtp.AUTH_NONE, microsmtp.AUTH_LOGIN, microsmtp.AUTH_PLAIN) == (0xFFFF, 1, 3)
    assert (microsmtp.PRIORITY_LOW, microsmtp.PRIORITY_NORMAL, microsmtp.PRIORITY_HIGH) == (
        1, 2, 4)
    own = [microsmtp.RESOLVE_ERROR, microsmtp.CONNECT_ERROR, microsmtp.TIMEOUT_ERROR,
           microsmtp.CONNECTION_CLOSED, microsmtp.DELIVERY_UNKNOWN,
           microsmtp.MESSAGE_FORMAT_ERROR]
    assert len(set(own)) == len(own) and min(own) > max(netx.values())


def test_shim_ticks_wrap_like_micropython():
    from microsmtp_host import shim

    top = (1 << 30) - 1
    assert shim.ticks_add(top, 5) == 4
    assert shim.ticks_diff(4, top) == 5
    assert shim.ticks_diff(top, 4) == -5
    assert shim.ticks_diff(shim.ticks_add(123, 10_000), 123) == 10_000
