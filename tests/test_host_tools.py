"""microsmtp probe, send and config against real aiosmtpd servers on loopback."""

import json
import ssl
import stat

import pytest
import servers
import trustme
from host_cli import device_config, hostile_smtp, only_printable, parse
from microsmtp_host import cli, devconfig, probe
from microsmtp_host import config as config_cmd
from microsmtp_host import send as send_cmd
from microsmtp_host.cli import CLIError


def serving(**kw):
    """An aiosmtpd server for one test (servers.Server, AUTH in clear unless kw says):
    yields (controller, handler), stops it after."""
    for srv in servers.serving(**kw):
        yield srv.controller, srv.handler


@pytest.fixture
def plain_server():
    yield from serving(auth_require_tls=False)


@pytest.fixture
def tls_server(pki):
    yield from serving(tls_context=pki.server_context(), require_starttls=True,
                       auth_require_tls=True)


@pytest.fixture
def implicit_server(pki):
    yield from serving(ssl_context=pki.server_context(), auth_require_tls=False)


def port_of(ctl):
    return ctl.port


def test_probe_plaintext_server(plain_server, capsys):
    ctl, _ = plain_server
    assert probe.run(parse(probe, ["127.0.0.1:%d" % port_of(ctl), "--timeout", "3"])) == 0
    out = capsys.readouterr().out
    assert "TLS: none offered" in out and "AUTH: LOGIN PLAIN" in out
    assert "tls=microsmtp.TLS_NONE" in out and "allow_plaintext_auth=True" in out


def test_probe_starttls_verified_with_the_ca(tls_server, pki, tmp_path, capsys):
    ctl, _ = tls_server
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(pki.pem_path.read_bytes())
    probe.run(parse(probe, ["localhost:%d" % port_of(ctl), "--cafile", str(cafile)]))
    out = capsys.readouterr().out
    assert "TLS: STARTTLS" in out and "verifies for localhost: yes" in out
    assert "AUTH: LOGIN PLAIN" in out  # listed only after TLS (auth_require_tls)
    assert "tls=microsmtp.TLS_STARTTLS" in out and 'cadata="/ca.pem"' in out


def test_probe_names_a_certificate_that_does_not_verify(tls_server, tmp_path, capsys):
    ctl, _ = tls_server
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    probe.run(parse(probe, ["localhost:%d" % port_of(ctl), "--cafile", str(other)]))
    assert "verifies for localhost: NO" in capsys.readouterr().out


def test_probe_implicit_tls(implicit_server, pki, tmp_path, capsys):
    ctl, _ = implicit_server
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(pki.pem_path.read_bytes())
    probe.run(parse(probe, ["localhost:%d" % port_of(ctl), "--implicit", "--cafile",
                            str(cafile)]))
    out = capsys.readouterr().out
    assert "TLS: implicit" in out and "verifies for localhost: yes" in out
    assert "tls=microsmtp.TLS_IMPLICIT" in out


def probe_main(argv, monkeypatch):
    """cli.main with only `probe` wired, so the exit code and stderr are the command's own."""
    monkeypatch.setattr(cli, "COMMANDS", tuple(c for c in cli.COMMANDS if c[0] == "probe"))
    return cli.main(["probe", *argv])


def test_probe_nothing_listening_is_one_line_and_exit_2(refused_port, capsys, monkeypatch):
    # Before: a report ("TLS: none offered", "AUTH: none listed") as if a server had answered.
    assert probe_main(["127.0.0.1:%d" % refused_port, "--timeout", "2"], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("microsmtp probe: no SMTP server answered")
    assert "port %d: cannot connect: Connection refused" % refused_port in err


def test_probe_reports_a_refusing_default_port_as_such(plain_server, refused_port, capsys,
                                                       monkeypatch):
    ctl, _ = plain_server
    monkeypatch.setattr(probe, "DEFAULT_PORTS", (refused_port, port_of(ctl)))
    assert probe_main(["127.0.0.1", "--timeout", "3"], monkeypatch) == 0
    refused, answered = capsys.readouterr().out.split("\n== ", 1)
    assert refused == "== 127.0.0.1 port %d: cannot connect: Connection refused" % refused_port
    assert "TLS: none offered" in answered and "tls=microsmtp.TLS_NONE" in answered


@pytest.fixture
def raw_server():
    """raw_server(script) -> a running servers.RawServer; all closed after."""
    started = []

    def start(script):
        started.append(servers.RawServer(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_probe_shows_server_bytes_escaped(raw_server, capsys, monkeypatch):
    server = raw_server(hostile_smtp)
    assert probe_main(["127.0.0.1:%d" % server.port, "--timeout", "3"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert only_printable(out), repr(out)
    assert "\\x1b]0;owned\\x07\\x1b[2J" in out and "\\x1b]52;c;ZXZpbA==\\x07" in out
    assert "\\x0d\\x1b[2KTLS: STARTTLS (verified)\\x9b31m caf\\xc3\\xa9 back\\x5cslash" in out
    assert "\nTLS: STARTTLS" not in out and "TLS: none offered" in out


def test_probe_escapes_certificate_fields(tmp_path, capsys, monkeypatch):
    # A real STARTTLS server whose CA and certificate name fields hold ESC and C1 characters.
    ca = trustme.CA(organization_name="Evil CA\x1b]0;owned\x07")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", organization_name="mx\x1b[2J",
                  organization_unit_name="unit\x9b").configure_cert(ctx)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    for ctl, _ in serving(tls_context=ctx, require_starttls=True, auth_require_tls=True):
        assert probe_main(["localhost:%d" % port_of(ctl), "--cafile", str(cafile)],
                          monkeypatch) == 0
    out = capsys.readouterr().out
    assert only_printable(out), repr(out)
    assert "O=mx\\x1b[2J" in out and "unit\\xc2\\x9b" in out and "Evil CA\\x1b]0" in out
    assert "verifies for localhost: yes" in out


def endless_continuation(conn, stop):
    # Capped at 4 MB so that the probe before its fix (which read without limit) ends too.
    for _ in range(4096):
        conn.sendall(b"220-x\r\n" * 146)


def endless_line(conn, stop):
    conn.sendall(b"220 ")
    for _ in range(1024):
        conn.sendall(b"A" * 4096)


def too_many_bytes(conn, stop):
    # Each line and the line count are within bounds; the total is not.
    conn.sendall((b"220-" + b"x" * 900 + b"\r\n") * 90 + b"220 ok\r\n")
    reader = conn.makefile("rb")
    while reader.readline() not in (b"", b"QUIT\r\n"):
        conn.sendall(b"250 ok\r\n")


def slow_drip(conn, stop):
    # A byte every 50 ms never lets a per-recv timeout fire, and the reply never ends.
    conn.sendall(b"220 ")
    for _ in range(160):
        if stop.wait(0.05):
            return
        conn.sendall(b"x")


def silent(conn, stop):
    stop.wait(10)


@pytest.mark.parametrize("script, argv, words", [
    (endless_continuation, [], "the server sent more than 100 lines in one reply"),
    (endless_line, [], "the server sent a reply line longer than 1000 bytes"),
    (too_many_bytes, [], "the server sent more than 65536 bytes"),
    (slow_drip, ["--timeout", "1"], "no complete reply within 1 s (--timeout)"),
    (silent, ["--timeout", "5", "--deadline", "0.5"],
     "the probe took longer than 0.5 s (--deadline)"),
])
def test_probe_bounds_what_it_reads(raw_server, script, argv, words, capsys):
    server = raw_server(script)
    with pytest.raises(CLIError) as e:
        probe.run(parse(probe, ["127.0.0.1:%d" % server.port, *argv]))
    assert str(e.value) == "no usable SMTP server on 127.0.0.1: port %d: %s" % (
        server.port, words)
    assert "\n" not in str(e.value) and capsys.readouterr().out == ""


def test_send_uses_the_config(plain_server, tmp_path, capsys):
    ctl, handler = plain_server
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(device_config(port_of(ctl))))
    assert send_cmd.run(parse(send_cmd, ["--config", str(cfg), "--subject", "hello"])) == 0
    assert len(handler.messages) == 1 and handler.messages[0]["rcpt_tos"] == ["ops@example.org"]
    assert b"Subject: hello" in handler.messages[0]["content"]


def test_send_over_starttls_with_a_local_ca(tls_server, pki, tmp_path):
    ctl, handler = tls_server
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(pki.pem_path.read_bytes())
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(device_config(port_of(ctl), server="localhost", tls="starttls",
                                            cadata="/ca.pem", allow_plaintext_auth=False)))
    with pytest.raises(CLIError, match="--cadata"):  # /ca.pem is a path on the board
        send_cmd.run(parse(send_cmd, ["--config", str(cfg)]))
    send_cmd.run(parse(send_cmd, ["--config", str(cfg), "--cadata", str(cafile)]))
    assert len(handler.messages) == 1


def test_send_reports_a_refusal_in_one_line(plain_server, tmp_path):
    ctl, _ = plain_server
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(device_config(port_of(ctl), password="wrong")))
    with pytest.raises(CLIError, match=r"not sent: .*535.*status 0xAD"):
        send_cmd.run(parse(send_cmd, ["--config", str(cfg)]))


@pytest.mark.parametrize("field, value, words", [
    ("from", "boiler@example.org\r\nBcc: x@y.org", "control character"),
    ("to", ["no-at-sign"], "name@domain"),
    ("tls", "maybe", "smtp.tls"),
    ("port", 0, "smtp.port"),
])
def test_config_checks_with_the_firmware_rules(field, value, words, tmp_path):
    cfg = device_config(25)
    cfg["smtp"][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(devconfig.ConfigError, match=words):
        devconfig.load(path)


@pytest.mark.parametrize("outbox, words", [
    ([], "must be an object"),
    ({"path": "/"}, "outbox.path"),
    ({"max_messages": 0}, "outbox.max_messages"),
    ({"max_messages": 2.5}, "outbox.max_messages"),
    ({"max_bytes": True}, "outbox.max_bytes"),
    ({"when_full": "drop_newest"}, "outbox.when_full"),
    ({"retry": 0}, "outbox.retry"),
    ({"retry": "30"}, "outbox.retry"),
])
def test_config_checks_the_outbox_section(outbox, words, tmp_path):
    cfg = device_config(25)
    cfg["outbox"] = outbox
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(devconfig.ConfigError, match=words):
        devconfig.load(path)
    cfg["outbox"] = {"path": "/flash/outbox", "max_messages": 5, "max_bytes": 4096,
                     "when_full": "refuse_new", "retry": 0.5}
    path.write_text(json.dumps(cfg))
    assert devconfig.load(path)["outbox"]["retry"] == 0.5


def test_config_writes_a_private_file_outside_the_repo(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(device_config(587)))
    out = tmp_path / "out" / "config.json"
    out.parent.mkdir()
    config_cmd.run(parse(config_cmd, ["--file", str(src), "--output", str(out)]))
    assert json.loads(out.read_text())["smtp"]["port"] == 587
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_config_refuses_to_write_into_the_repo(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(device_config(587)))
    with pytest.raises(CLIError, match="inside the repository"):
        config_cmd.run(parse(config_cmd, ["--file", str(src), "--output",
                                          str(devconfig.ROOT / "config.json")]))
    assert not (devconfig.ROOT / "config.json").exists()


def test_config_dry_run_shows_the_mpremote_command(tmp_path, capsys):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(device_config(587)))
    config_cmd.run(parse(config_cmd, ["--file", str(src), "--port", "/dev/ttyUSB0",
                                      "--dry-run"]))
    out = capsys.readouterr().out
    assert "mpremote connect /dev/ttyUSB0 resume fs cp <config> :config.json" in out


@pytest.mark.unixport
def test_config_to_the_virtual_board_with_its_ca(tmp_path, pki, capsys):
    """microsmtp config --port: mpremote puts config.json (and the CA) on the board."""
    from microsmtp_host.virtual_board import VirtualBoard

    src = tmp_path / "in.json"
    src.write_text(json.dumps(device_config(587, tls="starttls")))
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(pki.pem_path.read_bytes())
    with VirtualBoard(tmp_path / "board") as board:
        config_cmd.run(parse(config_cmd, ["--file", str(src), "--port", board.device,
                                          "--ca", str(cafile)]))
        on_board = json.loads((board.folder / "config.json").read_text())
        assert on_board["smtp"]["cadata"] == "ca.pem"
        assert on_board["smtp"]["password"] == "s3cret"
        assert (board.folder / "ca.pem").read_bytes() == cafile.read_bytes()
    assert "wrote config.json and ca.pem to the board" in capsys.readouterr().out
