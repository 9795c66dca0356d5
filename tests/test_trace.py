"""Client(trace=...): the protocol transcript, on both runtimes (tests/mp_trace.py, one driver)
against real servers on loopback: aiosmtpd (the recording one of tests/tls_servers.py, every AUTH
mechanism, an echoing one, STARTTLS) and Postfix's smtp-sink (PIPELINING). Then the host
tools: `microsmtp send --verbose`, `microsmtp probe --verbose`, `microsmtp --version`."""

import base64
import binascii
import json
import re
import subprocess
import sys

import microsmtp
import pytest
import runtimes
from host_cli import device_config, hostile_smtp, only_printable, parse
from microsmtp_host import cli, probe
from microsmtp_host import send as send_cmd
from microsmtp_host.shim import net
from servers import RCPT, SENDER, SINK, RawServer, Sink
from tls_servers import (
    CRAM_CHALLENGE,
    PASSWORD,
    TLS_HEAP,
    TOKEN,
    USER,
    WRONG_PASSWORD,
    WRONG_TOKEN,
    secrets_of,
)

TIMEOUTS = {"greeting": 5, "envelope": 5, "message": 10, "quit": 2}
both = pytest.mark.parametrize("runtime", ["cpython", "micropython"])
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def mp_dir(tmp_path_factory):
    return runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_trace.py"],
                                tmp_path_factory.mktemp("mp_trace"))


def traced(runtime, port, mp_dir, tmp_path, heap=None, **options):
    """The results of cfg's sends on one traced client, each with its transcript as
    [(direction, bytes)], and every pool buffer back after each."""
    cfg = {"server": "127.0.0.1", "port": port, "from": SENDER, "to": [RCPT],
           "subject": "Boiler alert", "body": "Pressure low.\n",
           "client_domain": "boiler.example.com", "timeouts": TIMEOUTS, "auth": "AUTO"}
    cfg.update(options)
    if runtime == "cpython":
        import mp_trace

        out = []
        mp_trace.run(cfg, out.append, net)
    else:
        path = tmp_path / "mp_trace.json"
        path.write_text(json.dumps(cfg))
        proc = runtimes.run_micropython("mp_trace", [str(path)], [mp_dir, runtimes.firmware_mpy()],
                                        timeout=60, heap=heap or runtimes.HARNESS_HEAP)
        out, lines = [], []
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                out.append(dict(json.loads(line), trace=lines))
                lines = []
            elif line[:2] in ("> ", "< "):
                lines.append((line[0], binascii.unhexlify(line[2:])))
        assert len(out) == cfg.get("sends", 1), "MicroPython exit %d: %s" % (
            proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    for res in out:
        assert res["pool_full"], "a pool buffer leaked: %r" % res
    return out


def sent(res):
    return [line for d, line in res["trace"] if d == ">"]


def read(res):
    return [line for d, line in res["trace"] if d == "<"]


def no_secrets(res, password=PASSWORD, token=TOKEN):
    forms = secrets_of(password, token)
    assert len(forms) >= 3
    for _, line in res["trace"]:
        for secret in forms:
            assert secret.encode() not in line, "a credential reached trace: %r" % line


# --- the transcript ---------------------------------------------------------------------------

@both
def test_plain_send_transcript(runtime, aio_server, mp_dir, tmp_path):
    srv = aio_server("plain")
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, username=None)
    assert res["status"] == 0, res
    (got,) = srv.handler.messages
    size = len(got["content"])  # the message as sent: header block, body, its last CRLF
    assert sent(res) == [b"EHLO boiler.example.com",
                         b"MAIL FROM:<boiler@example.com> SIZE=%d" % (14 + 600),
                         b"RCPT TO:<ops@example.org>", b"DATA",
                         b"<message: %d bytes>" % size, b".", b"QUIT"]
    replies = read(res)
    assert replies[0].startswith(b"220 ") and replies[-1].startswith(b"221 ")
    assert replies[-3:-1] == [b"354 End data with <CR><LF>.<CR><LF>", b"250 OK queued"]
    # The order of the conversation: a reply after each command, and each line once.
    kinds = [d + line[:4].decode() for d, line in res["trace"]]
    assert kinds[:2] == ["<220 ", ">EHLO"], kinds
    assert kinds[-5:] == ["><mes", ">.", "<250 ", ">QUIT", "<221 "], kinds
    assert sum(1 for k in kinds if k.startswith("<250-")) >= 2, "EHLO's lines one by one"
    assert not any(b"\r" in line or b"\n" in line for _, line in res["trace"])
    if runtime == "micropython":
        assert res["trace_loaded"]


@both
def test_a_message_cut_off_is_one_unfinished_line(runtime, aio_server, mp_dir, tmp_path):
    # A streamed body with a line over 998 bytes cannot go as 8bit: the mail is cut off
    # before "." (MESSAGE_FORMAT_ERROR), and the trace says how much of it went.
    srv = aio_server("plain")
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, username=None,
                    body=["short line\n", "x" * 1200 + "\n"])
    assert res["status"] == microsmtp.MESSAGE_FORMAT_ERROR, res
    out = sent(res)
    assert out[-2] == b"DATA" and re.fullmatch(rb"<message: \d+ bytes, unfinished>", out[-1])
    assert srv.handler.messages == []


def test_no_trace_loads_nothing(aio_server, mp_dir, tmp_path):
    # MicroPython (a process of its own): without trace= trace.py never loads.
    srv = aio_server("plain")
    (res,) = traced("micropython", srv.port, mp_dir, tmp_path, username=None, trace=False)
    assert res["status"] == 0 and res["trace"] == [], res
    assert res["trace_loaded"] is False


@both
@pytest.mark.skipif(not runtimes.os.access(SINK, runtimes.os.X_OK), reason="no smtp-sink")
def test_pipelined_commands_are_separate_lines(runtime, mp_dir, tmp_path):
    # smtp-sink offers PIPELINING: MAIL, RCPT, RCPT and DATA go in one write, and QUIT with
    # the "." in another; the trace has one line each, and the replies one by one.
    srv = Sink([])
    try:
        (res,) = traced(runtime, srv.port, mp_dir, tmp_path, username=None,
                        to=[RCPT, "oncall@example.org"])
    finally:
        srv.stop()
    assert res["status"] == 0, res
    assert any(line.endswith(b"PIPELINING") for line in read(res)), read(res)
    out = sent(res)
    assert out[1].startswith(b"MAIL FROM:<boiler@example.com>"), out
    assert out[2:5] == [b"RCPT TO:<ops@example.org>", b"RCPT TO:<oncall@example.org>", b"DATA"]
    assert re.fullmatch(rb"<message: \d+ bytes>", out[5]) and out[6:] == [b".", b"QUIT"], out
    codes = [line[:3] for line in read(res)]
    assert codes[-6:] == [b"250", b"250", b"250", b"354", b"250", b"221"], codes


# --- secrets masked ------------------------------------------------------------------------

AUTH_LINES = {
    "PLAIN": [(">", b"AUTH PLAIN ****"), ("<", b"235 2.7.0 Authentication successful")],
    "LOGIN": [(">", b"AUTH LOGIN"), ("<", b"334 " + base64.b64encode(b"User Name\0")),
              (">", b"****"), ("<", b"334 " + base64.b64encode(b"Password\0")), (">", b"****"),
              ("<", b"235 2.7.0 Authentication successful")],
    "CRAM_MD5": [(">", b"AUTH CRAM-MD5"), ("<", b"334 " + base64.b64encode(CRAM_CHALLENGE)),
                 (">", b"****"), ("<", b"235 2.7.0 Authentication successful")],
    "XOAUTH2": [(">", b"AUTH XOAUTH2 ****"), ("<", b"235 2.7.0 Authentication successful")],
}


def auth_part(res):
    lines = res["trace"]
    start = next(i for i, (d, line) in enumerate(lines) if line.startswith(b"AUTH "))
    end = next(i for i, (d, line) in enumerate(lines) if line.startswith(b"MAIL ")) \
        if res["status"] == 0 else len(lines)
    return lines[start:end]

LONG_TOKEN_HEAP = "60K"


def credentials(mech, password=PASSWORD, token=TOKEN):
    if mech == "XOAUTH2":
        return {"username": USER, "password": None, "oauth_token": token}
    return {"username": USER, "password": password}


@both
@pytest.mark.parametrize("mech", list(AUTH_LINES))
def test_auth_masked(runtime, mech, aio_server, mp_dir, tmp_path):
    srv = aio_server("plain", mechs=(mech.replace("_", "-"),))
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, auth=mech, **credentials(mech))
    assert res["status"] == 0, res
    assert auth_part(res) == AUTH_LINES[mech]
    no_secrets(res)
    assert len(srv.handler.messages) == 1


@both
def test_long_token_answer_is_one_masked_line(runtime, aio_server, mp_dir, tmp_path):
    # A token too long for the AUTH line goes after a 334, buffer by buffer (RFC 4954 §4):
    # one "****" for all of its pieces.
    # The harness heap plus room for the 1.5 KB token: the driver holds it as read from its
    # config, the client as its str and its base64 answer, beside trace.py; it passed at 57K
    # (56K, runtimes.HARNESS_HEAP, failed after native.py became a module of its own).
    srv = aio_server("plain", mechs=("XOAUTH2",))
    token = "ya29." + "LongT0ken-" * 150
    srv.handler.token = token
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, heap=LONG_TOKEN_HEAP, auth="XOAUTH2",
                    **credentials("XOAUTH2", token=token))
    assert res["status"] == 0, res
    assert auth_part(res) == [(">", b"AUTH XOAUTH2"), ("<", b"334 "), (">", b"****"),
                              ("<", b"235 2.7.0 Authentication successful")]
    no_secrets(res, token=token)


@both
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "XOAUTH2"])
def test_a_server_that_echoes_the_credentials_is_masked(runtime, mech, aio_server, mp_dir,
                                                        tmp_path):
    # A hostile server repeats in its 535 the password in clear, in base64 and as the PLAIN
    # string; XOAUTH2's repeats the token inside the base64 JSON of its 334.
    srv = aio_server("plain", mechs=(mech,), echo=True)
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, auth=mech,
                    **credentials(mech, WRONG_PASSWORD, WRONG_TOKEN))
    assert res["status"] == microsmtp.AUTH_REPLY_ERROR and res["reply_code"] == 535, res
    no_secrets(res, WRONG_PASSWORD, WRONG_TOKEN)
    lines = auth_part(res)
    # The echoing line is there, masked, the reply code kept (XOAUTH2: the token is in the
    # JSON its 334 carries in base64; its 535 repeats nothing).
    assert ("<", b"334 ****" if mech == "XOAUTH2" else b"535 ****") in lines, lines


@both
def test_starttls_lines_are_the_decrypted_ones(runtime, aio_server, pki, mp_dir, tmp_path):
    srv = aio_server("starttls")
    (res,) = traced(runtime, srv.port, mp_dir, tmp_path, heap=TLS_HEAP, server="localhost",
                    tls=microsmtp.TLS_STARTTLS, cadata=str(pki.pem_path), auth="PLAIN",
                    allow_plaintext_auth=False, **credentials("PLAIN"))
    assert res["status"] == 0, res
    out = sent(res)
    assert out[:4] == [b"EHLO boiler.example.com", b"STARTTLS", b"EHLO boiler.example.com",
                       b"AUTH PLAIN ****"], out
    assert b"220 Ready to start TLS" in read(res)
    no_secrets(res)


# --- a trace function that raises ----------------------------------------------------------

@both
@pytest.mark.parametrize("where, status, delivered", [
    ((">", "MAIL FROM:"), microsmtp.INTERNAL_ERROR, 0),  # before MAIL was written
    (("<", "250 OK queued"), microsmtp.DELIVERY_UNKNOWN, 1),  # the reply to "."
    (("<", "221"), microsmtp.SUCCESS, 1),  # QUIT's: the mail's result stands
], ids=["before-mail", "after-dot", "in-quit"])
def test_a_raising_trace_ends_the_session_cleanly(runtime, where, status, delivered, aio_server,
                                                  mp_dir, tmp_path):
    # trace raises once: that send ends as documented (the connection closed, every buffer
    # back), and the same client sends the next mail, traced from its first line.
    srv = aio_server("plain")
    first, second = traced(runtime, srv.port, mp_dir, tmp_path, username=None,
                           raise_on=list(where), sends=2)
    assert first["raised"] == 1 and first["status"] == status, first
    if status:
        assert first["trace"][-1] == (where[0], first["trace"][-1][1])
        assert first["trace"][-1][1].startswith(where[1].encode()), first["trace"]
        assert "The trace function raised ValueError (trace failed on purpose)" in \
            first["error"], first
        assert first["step"] == ("MAIL" if status == microsmtp.INTERNAL_ERROR else "MESSAGE")
    else:  # nothing traced after it
        assert first["trace"][-1][1].startswith(b"221"), first["trace"]
    assert second["status"] == 0, second
    assert second["trace"][0][1].startswith(b"220 ") and \
        second["trace"][-1][1].startswith(b"221 "), second["trace"]
    assert len(srv.handler.messages) == delivered + 1


# --- the host tools ------------------------------------------------------------------------

def hostile_session(conn, stop):
    """A whole session whose server text carries terminal control sequences."""
    reader = conn.makefile("rb")
    conn.sendall(b"220 mx.example \x1b[31mred\x1b[0m\r\n")
    reader.readline()  # EHLO
    conn.sendall(b"250-mx.example\r\n250-AUTH PLAIN\r\n250 X-\x1b]0;owned\x07\r\n")
    for line in iter(reader.readline, b""):
        verb = line[:4].upper()
        if verb == b"AUTH":
            conn.sendall(b"235 2.7.0 ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go\r\n")
            while reader.readline() not in (b".\r\n", b""):
                pass
            conn.sendall(b"250 queued \x9b2J\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"250 ok\r\n")


def test_send_verbose_prints_the_transcript_escaped(tmp_path, capsys):
    server = RawServer(hostile_session)
    try:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(device_config(server.port)))
        assert send_cmd.run(parse(send_cmd, ["--config", str(cfg), "--verbose"])) == 0
    finally:
        server.close()
    out = capsys.readouterr().out
    assert only_printable(out), repr(out)
    lines = out.splitlines()
    assert lines[0] == "< 220 mx.example \\x1b[31mred\\x1b[0m"
    assert "< 250 X-\\x1b]0;owned\\x07" in lines and "> AUTH PLAIN ****" in lines
    assert "< 250 queued \\x9b2J" in lines and "> QUIT" in lines
    assert any(re.fullmatch(r"> <message: \d+ bytes>", line) for line in lines)
    assert lines[-1] == "sent to ops@example.org via 127.0.0.1:%d" % server.port
    for secret in secrets_of("s3cret", None, "alice"):
        assert secret not in out


def test_send_without_verbose_prints_one_line(tmp_path, capsys):
    server = RawServer(hostile_session)
    try:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(device_config(server.port)))
        assert send_cmd.run(parse(send_cmd, ["--config", str(cfg)])) == 0
    finally:
        server.close()
    assert capsys.readouterr().out.count("\n") == 1


def test_probe_verbose_prints_the_transcript_escaped(capsys):
    server = RawServer(hostile_smtp)
    try:
        assert probe.run(parse(probe, ["127.0.0.1:%d" % server.port, "--timeout", "3",
                                       "--verbose"])) == 0
    finally:
        server.close()
    out = capsys.readouterr().out
    assert only_printable(out), repr(out)
    lines = out.splitlines()
    assert lines[0] == "* connecting to 127.0.0.1 port %d" % server.port
    assert lines[1].startswith("< 220 mx.example \\x1b]0;owned\\x07\\x1b[2J"), lines[1]
    assert lines[2] == "> EHLO probe.invalid" and lines[3] == "< 250-mx.example"
    assert "> QUIT" in lines and "< 221 bye" in lines
    assert "== 127.0.0.1 port %d" % server.port in lines  # the report follows


def test_version_prints_both_versions():
    res = subprocess.run([sys.executable, "-m", "microsmtp_host", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    host, firmware = res.stdout.splitlines()
    assert host == "microsmtp %s (host tools)" % microsmtp.__version__
    assert firmware == "firmware microsmtp %s (%s)" % (
        microsmtp.__version__, runtimes.ROOT / "firmware" / "microsmtp")
    assert cli.versions() == res.stdout.strip()


def test_one_version_everywhere():
    # pyproject.toml reads the firmware's __version__ (dynamic); the mip and freeze metadata
    # repeat it.
    version = microsmtp.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    from importlib import metadata

    assert metadata.version("microsmtp") == version
    assert json.loads((runtimes.ROOT / "package.json").read_text())["version"] == version
    assert 'version="%s"' % version in (runtimes.ROOT / "firmware" / "manifest.py").read_text()
    pyproject = (runtimes.ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "microsmtp.__version__" }' in pyproject
