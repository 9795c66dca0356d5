"""The device config on the host: files that hold its passwords are their owner's only, and
`microsmtp config` refuses whatever the firmware's Client would refuse on the board."""

import contextlib
import json
import os
import re
import stat

import pytest
from microsmtp_host import cli, devconfig
from microsmtp_host.virtual_board import VirtualBoard


def good_config():
    return {"wifi": {"ssid": "home", "password": "wifi-pass"},
            "smtp": {"server": "smtp.example.com", "port": 587, "tls": "starttls",
                     "username": "boiler@example.com", "password": "s3cret",
                     "from": "boiler@example.com", "to": ["oncall@example.com"],
                     "cadata": "/ca.pem"},
            "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                      "subject": "Boiler at {value:.1f} °C", "sensor": "internal"}}


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def config_main(tmp_path, cfg, *argv):
    """`microsmtp config --file` with cfg; its exit code."""
    src = tmp_path / "in.json"
    src.write_text(json.dumps(cfg), encoding="utf-8")
    return cli.main(["config", "--file", str(src), *argv])


# --- files that hold secrets: 0600, whatever was there and whatever the umask -------------

@pytest.mark.parametrize("before, mask", [
    (0o644, 0o022),  # an old config, readable by all: it stayed 0644 with the password in
    (0o666, 0o000),
    (None, 0o000),  # a new file under umask 000
], ids=["old-0644", "old-0666-umask-000", "new-umask-000"])
def test_config_output_is_its_owners_only(before, mask, tmp_path, capsys):
    out = tmp_path / "out" / "config.json"
    out.parent.mkdir()
    if before is not None:
        out.write_text("{}")
        os.chmod(out, before)
    with umask(mask):
        assert config_main(tmp_path, good_config(), "--output", str(out)) == 0
    assert mode(out) == 0o600
    assert json.loads(out.read_text())["smtp"]["password"] == "s3cret"
    assert os.listdir(out.parent) == ["config.json"]  # no temporary file left beside it


def test_hwtest_writes_its_config_for_its_owner_only(tmp_path, monkeypatch):
    from microsmtp_host import hwtest

    seen = []

    def deploy(argv):  # instead of deploying: look at the config it would copy
        seen.append(mode(argv[argv.index("--config") + 1]))
        return 1

    monkeypatch.setattr(cli, "main", deploy)
    cfg = tmp_path / "mine.json"
    cfg.write_text(json.dumps(good_config()))
    with umask(0):
        assert hwtest.main(["--port", "/dev/null", "--config", str(cfg)]) == 1
    assert seen == [0o600]


@pytest.mark.unixport
def test_demo_writes_its_config_for_its_owner_only(monkeypatch):
    from microsmtp_host import demo

    seen = []

    def deploy(argv):
        seen.append(mode(argv[argv.index("--config") + 1]))
        return 1

    monkeypatch.setattr(cli, "main", deploy)
    with umask(0), pytest.raises(demo.DemoFailed, match="deploy failed"):
        demo.main()
    assert seen == [0o600]


@pytest.mark.unixport
@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "old-0755-folder"])
def test_virtual_board_keeps_config_json_private(existing, tmp_path, capsys):
    # `microsmtp config --port` onto the virtual board, started under umask 000: its folder
    # was 0777 (0755 under the usual umask) and config.json 0666 (0644).
    folder = tmp_path / "board"
    if existing:
        folder.mkdir(mode=0o755)
        os.chmod(folder, 0o755)
    with umask(0):
        with VirtualBoard(folder) as board:
            assert config_main(tmp_path, good_config(), "--port", board.device) == 0
    assert mode(folder) == 0o700
    assert mode(folder / "lib") == 0o700
    assert mode(folder / "config.json") == 0o600
    assert json.loads((folder / "config.json").read_text())["smtp"]["password"] == "s3cret"


def test_save_leaves_the_old_file_when_it_cannot_write(tmp_path, monkeypatch):
    out = tmp_path / "config.json"
    out.write_text('{"old": 1}')

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(devconfig.os, "fsync", fail)
    with pytest.raises(OSError):
        devconfig.save(out, good_config())
    assert out.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ["config.json"]


# --- the checker: exactly the firmware's limits -------------------------------------------

DELETE = object()


def edited(changes):
    """good_config() with {"section.key": value} applied; DELETE removes the key."""
    cfg = good_config()
    for name, value in changes.items():
        section, _, key = name.partition(".")
        parent, key = (cfg[section], key) if key else (cfg, section)
        if value is DELETE:
            del parent[key]
        else:
            parent[key] = value
    return cfg


REFUSED = [
    # Client's own limits (the checker allowed 8000 bytes; Client, on the board, 255).
    ({"smtp.username": "u" * 256}, "smtp.username is longer than 255 bytes"),
    ({"smtp.password": "p" * 256}, "smtp.password is longer than 255 bytes"),
    ({"smtp.password": "p" * 8000}, "smtp.password is longer than 255 bytes"),
    ({"smtp.username": DELETE}, "smtp: a password was given without a username"),
    ({"smtp.username": DELETE, "smtp.password": DELETE, "smtp.oauth_token": "t"},
     "smtp.oauth_token needs the username"),
    ({"smtp.oauth_token": "t" * 8001}, "smtp.oauth_token is longer than 8000 bytes"),
    ({"smtp.client_domain": "boiler example"}, "smtp.client_domain"),
    ({"smtp.server": "smtp example.com"}, "smtp.server"),
    ({"smtp.port": 70000}, "smtp.port must be an int from 1 to 65535"),
    ({"smtp.cadata": 5}, "smtp.cadata must be"),
    ({"smtp.from": "boiler"}, "smtp.from 'boiler' is not of the form name@domain"),
    ({"smtp.from": "boiler@example.com\r\nBcc: x@example.net"}, "control character"),
    ({"smtp.tls": "maybe"}, "smtp.tls"),
    # Client.send's: the recipients, and the subject the app will send.
    ({"smtp.to": ["no-at-sign"]}, "smtp.to: recipient 'no-at-sign'"),
    ({"smtp.to": []}, "smtp.to: no recipient given"),
    ({"smtp.to": ["a%d@example.com" % i for i in range(101)]},
     "smtp.to: more than 100 recipients"),
    ({"alert.subject": "x" * 5000}, "alert.subject: subject is longer than 4096"),
    # The board app's own section.
    ({"alert.subject": "Boiler at {temp}"}, "alert.subject .* cannot be formatted"),
    ({"alert.threshold": "85"}, "alert.threshold must be a number"),
    ({"alert.threshold": DELETE}, "alert.threshold must be a number"),
    ({"alert.min_interval": 7 * 86400}, "alert.min_interval must be a number from 0"),
    ({"alert.max_readings": 2.5}, "alert.max_readings"),
    ({"alert": DELETE}, 'needs an "alert" section'),
]


@pytest.mark.parametrize("changes, words", REFUSED,
                         ids=[re.sub(r"\W+", "-", words)[:40] for _, words in REFUSED])
def test_config_refuses_what_the_board_would_refuse(changes, words, tmp_path, capsys):
    cfg = edited(changes)
    out = tmp_path / "out.json"
    assert config_main(tmp_path, cfg, "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("microsmtp config: "), err
    assert re.search(words, err), err
    assert not out.exists()


@pytest.mark.parametrize("changes", [
    {"smtp.password": "p" * 255},  # the limit itself
    {"smtp.username": "u" * 255},
    {"smtp.oauth_token": "t" * 8000},  # XOAUTH2 tokens are long: Client takes 8000 bytes
    {"smtp.cadata": None},  # TLS without a CA: refused when sending, not by Client(...)
    {"smtp.client_domain": "[192.0.2.1]"},
    {"smtp.to": "oncall@example.com"},
    {"alert.min_interval": 0},
], ids=["password-255", "username-255", "token-8000", "no-ca", "literal", "one-to", "no-wait"])
def test_config_takes_what_the_board_takes(changes, tmp_path, capsys):
    cfg = edited(changes)
    out = tmp_path / "out.json"
    assert config_main(tmp_path, cfg, "--output", str(out)) == 0, capsys.readouterr().err
    assert json.loads(out.read_text()) == cfg


def test_send_needs_no_alert_section(tmp_path):
    # `microsmtp send` reads the same file for its smtp section only.
    cfg = good_config()
    del cfg["alert"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert devconfig.load(path)["smtp"]["port"] == 587
    cfg["smtp"]["password"] = "p" * 256
    path.write_text(json.dumps(cfg))
    with pytest.raises(devconfig.ConfigError, match="smtp.password is longer"):
        devconfig.load(path)


def test_deploy_refuses_a_config_the_board_would_refuse(tmp_path, capsys):
    # deploy copies a config of yours to the board: it checked only that it was JSON with
    # an "smtp" section, so a 256-byte password reached the board.
    path = tmp_path / "boiler.json"
    path.write_text(json.dumps(edited({"smtp.password": "p" * 256})))
    assert cli.main(["deploy", "--port", "/dev/ttyUSB0", "--dry-run", "--config",
                     str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "smtp.password is longer than 255 bytes" in err, err
    path.write_text(json.dumps(good_config()))
    assert cli.main(["deploy", "--port", "/dev/ttyUSB0", "--dry-run", "--config",
                     str(path)]) == 0
