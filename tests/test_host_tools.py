"""microsmtp probe, send and config against real aiosmtpd servers on loopback."""

import argparse
import json
import ssl
import stat

import pytest
import trustme
from aiosmtpd.smtp import AuthResult
from microsmtp_host import config as config_cmd
from microsmtp_host import devconfig, probe
from microsmtp_host import send as send_cmd
from microsmtp_host.cli import CLIError
from test_integration import LoopbackController


class Handler:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.password == b"s3cret", handled=False)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def start(handler, **kw):
    ctl = LoopbackController(handler, hostname="127.0.0.1", authenticator=authenticator, **kw)
    ctl.start()
    return ctl


def serving(**kw):
    """An aiosmtpd server for one test: yields (controller, handler), stops it after."""
    handler = Handler()
    ctl = start(handler, **kw)
    try:
        yield ctl, handler
    finally:
        ctl.stop()


def server_context(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def plain_server():
    yield from serving(auth_require_tls=False)


@pytest.fixture
def tls_server(ca):
    yield from serving(tls_context=server_context(ca), require_starttls=True)


@pytest.fixture
def implicit_server(ca):
    yield from serving(ssl_context=server_context(ca), auth_require_tls=False)


def parse(module, argv):
    p = argparse.ArgumentParser()
    module.add_parser(p)
    return p.parse_args(argv)


def port_of(ctl):
    return ctl.port


def test_probe_plaintext_server(plain_server, capsys):
    ctl, _ = plain_server
    assert probe.run(parse(probe, ["127.0.0.1:%d" % port_of(ctl), "--timeout", "3"])) == 0
    out = capsys.readouterr().out
    assert "TLS: none offered" in out and "AUTH: LOGIN PLAIN" in out
    assert "tls=microsmtp.TLS_NONE" in out and "allow_plaintext_auth=True" in out


def test_probe_starttls_verified_with_the_ca(tls_server, ca, tmp_path, capsys):
    ctl, _ = tls_server
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
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


def test_probe_implicit_tls(implicit_server, ca, tmp_path, capsys):
    ctl, _ = implicit_server
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    probe.run(parse(probe, ["localhost:%d" % port_of(ctl), "--implicit", "--cafile",
                            str(cafile)]))
    out = capsys.readouterr().out
    assert "TLS: implicit" in out and "verifies for localhost: yes" in out
    assert "tls=microsmtp.TLS_IMPLICIT" in out


def test_probe_nothing_listening_is_one_line(refused_port):
    with pytest.raises(CLIError, match="no SMTP server answered"):
        probe.run(parse(probe, ["127.0.0.1:%d" % refused_port, "--timeout", "2"]))


@pytest.fixture
def refused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def device_config(port, **smtp):
    base = {"server": "127.0.0.1", "port": port, "tls": "none", "username": "alice",
            "password": "s3cret", "from": "boiler@example.org", "to": ["ops@example.org"],
            "allow_plaintext_auth": True}
    base.update(smtp)
    return {"wifi": {"ssid": "home", "password": "x"}, "smtp": base,
            "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                      "subject": "Boiler at {value:.1f} C", "sensor": "simulated"}}


def test_send_uses_the_config(plain_server, tmp_path, capsys):
    ctl, handler = plain_server
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(device_config(port_of(ctl))))
    assert send_cmd.run(parse(send_cmd, ["--config", str(cfg), "--subject", "hello"])) == 0
    assert len(handler.messages) == 1 and handler.messages[0][1] == ["ops@example.org"]
    assert b"Subject: hello" in handler.messages[0][2]


def test_send_over_starttls_with_a_local_ca(tls_server, ca, tmp_path):
    ctl, handler = tls_server
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
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


def test_config_to_the_virtual_board_with_its_ca(tmp_path, ca, capsys):
    """microsmtp config --port: mpremote puts config.json (and the CA) on the board."""
    from microsmtp_host.virtual_board import VirtualBoard

    src = tmp_path / "in.json"
    src.write_text(json.dumps(device_config(587, tls="starttls")))
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    with VirtualBoard(tmp_path / "board") as board:
        config_cmd.run(parse(config_cmd, ["--file", str(src), "--port", board.device,
                                          "--ca", str(cafile)]))
        on_board = json.loads((board.folder / "config.json").read_text())
        assert on_board["smtp"]["cadata"] == "ca.pem"
        assert on_board["smtp"]["password"] == "s3cret"
        assert (board.folder / "ca.pem").read_bytes() == cafile.read_bytes()
    assert "wrote config.json and ca.pem to the board" in capsys.readouterr().out
