"""The device config on the host: files that hold its passwords are their owner's only, and
`microsmtp config` refuses whatever the firmware's Client would refuse on the board."""

import contextlib
import io
import json
import os
import re
import stat
import subprocess
import sys

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
    from microsmtp_host import hwtest, mpremote_cmd

    seen = []

    def deploy(argv):  # instead of deploying: look at the config it would copy
        seen.append(mode(argv[argv.index("--config") + 1]))
        return 1

    def mpremote(port, *args, **kwargs):  # a board without a config.json of its own
        return ["hwtest-config none"]

    monkeypatch.setattr(cli, "main", deploy)
    monkeypatch.setattr(mpremote_cmd, "run", mpremote)
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


# --- `microsmtp config` by questions: each answer checked as it is given ------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def answer_with(monkeypatch, answers):
    """input() and getpass() answer from `answers` in turn (EOFError when they run out, as
    at Ctrl-D); the prompts asked, in order, are returned."""
    import builtins
    import getpass

    answers = list(answers)
    prompts = []

    def reply(prompt=""):
        prompts.append(prompt)
        if not answers:
            raise EOFError
        return answers.pop(0)

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(builtins, "input", reply)
    monkeypatch.setattr(getpass, "getpass", reply)
    return prompts


def file_error(tmp_path, capsys, changes):
    """What `microsmtp config --file` says of good_config() with these changes."""
    assert config_main(tmp_path, edited(changes), "--output", str(tmp_path / "f.json")) == 2
    return capsys.readouterr().err.split("microsmtp config: ", 1)[1].strip()


def test_config_asks_again_for_a_refused_answer_and_keeps_the_others(tmp_path, monkeypatch,
                                                                    capsys):
    bad_from = file_error(tmp_path, capsys, {"smtp.from": "boiler"})
    bad_to = file_error(tmp_path, capsys, {"smtp.to": ["no-at-sign"]})
    bad_password = file_error(tmp_path, capsys, {"smtp.password": "s3\ncret"})
    prompts = answer_with(monkeypatch, [
        "home", "wifi-pass",
        "", "smtp.example.com",        # server: empty, then a name
        "abc", "70000", "",            # port: not a number, too big, then the default
        "maybe", "STARTTLS",           # tls
        "boiler@example.com",          # user
        "s3\ncret", "s3cret",          # password: a control character, then a good one
        "", "boiler", "boiler@example.com",  # from: empty (the bug of issue 11), then bad
        "", "no-at-sign", "oncall@example.com",
        "",                            # CA file: the default
        "hot", "85",                   # threshold
    ])
    out = tmp_path / "out" / "config.json"
    out.parent.mkdir()
    assert cli.main(["config", "--output", str(out)]) == 0
    expected = good_config()
    expected["smtp"]["allow_plaintext_auth"] = False
    assert json.loads(out.read_text()) == expected
    err = capsys.readouterr().err.splitlines()
    assert err == [e + "; please answer again." for e in (
        "smtp.server is missing",
        "smtp.port must be an int from 1 to 65535", "smtp.port must be an int from 1 to 65535",
        'smtp.tls must be "starttls", "implicit", "none" or null',
        bad_password,
        "smtp.from is missing", bad_from,
        "smtp.to is missing", bad_to,
        "alert.threshold must be a number")], err
    # each refused question asked again at once, the earlier answers not asked again
    assert prompts.count("From address: ") == 3
    assert prompts[prompts.index("From address: ") - 1] == "SMTP password (empty: none): "
    assert prompts.count("Wi-Fi SSID (empty: none): ") == 1
    assert prompts[-1] == "Alert above (°C) [85.0]: "


def test_config_without_wifi_asks_no_wifi_password(tmp_path, monkeypatch, capsys):
    prompts = answer_with(monkeypatch, ["", "192.0.2.25", "25", "none", "", "",
                                        "door@example.org", "ops@example.org", "", ""])
    out = tmp_path / "config.json"
    assert cli.main(["config", "--output", str(out)]) == 0, capsys.readouterr().err
    cfg = json.loads(out.read_text())
    assert "wifi" not in cfg and not any("Wi-Fi password" in p for p in prompts)
    assert cfg["smtp"]["port"] == 25 and cfg["smtp"]["tls"] == "none"
    assert cfg["smtp"]["username"] is None and cfg["smtp"]["password"] is None


def test_config_questions_cut_short_are_one_line(tmp_path, monkeypatch, capsys):
    answer_with(monkeypatch, ["home", "wifi-pass", "smtp.example.com", "", "", "", ""])
    out = tmp_path / "config.json"
    assert cli.main(["config", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "microsmtp config: no answer to 'From address' (end of input)\n"
    assert not out.exists()


def test_config_on_a_real_terminal(tmp_path):
    # `microsmtp config` as a person runs it: on a pseudo-terminal that is its controlling
    # terminal (getpass reads /dev/tty with echo off), answering each prompt as it appears.
    import fcntl
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()
    out = tmp_path / "config.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microsmtp_host", "config", "--output", str(out)],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    seen = bytearray()  # what the terminal showed, not yet matched
    transcript = bytearray()  # all of it

    def expect(text):
        """Read until `text` has appeared after what was matched before (10 s at most)."""
        want = text.encode()
        deadline = time.monotonic() + 10
        while want not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([master], [], [], left)[0], bytes(transcript)
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last user has gone
                raise AssertionError(bytes(transcript)) from None
            seen.extend(data)
            transcript.extend(data)
        del seen[:seen.index(want) + len(want)]

    def answer(prompt, text):
        expect(prompt)
        os.write(master, text.encode() + b"\n")

    try:
        answer("Wi-Fi SSID (empty: none): ", "")
        answer("SMTP server: ", "smtp.example.com")
        answer("SMTP port [587]: ", "")
        answer("TLS (starttls, implicit, none; empty: by port): ", "")
        answer("SMTP user: ", "boiler@example.com")
        answer("SMTP password (empty: none): ", "s3cret")
        answer("From address: ", "")
        expect("smtp.from is missing; please answer again.")
        answer("From address: ", "boiler@example.com")
        assert b"s3cret" not in transcript  # the password was not echoed
        answer("Send alerts to: ", "oncall@example.com")
        answer("CA file on the board [/ca.pem]: ", "")
        answer("Alert above (°C) [85.0]: ", "")
        expect("wrote %s" % out)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    cfg = json.loads(out.read_text())
    assert cfg["smtp"]["from"] == "boiler@example.com" and cfg["smtp"]["password"] == "s3cret"
    assert "wifi" not in cfg and mode(out) == 0o600
