"""The `microsmtp` command: --help for every subcommand, one-line errors for bad input, an
unknown option answered with the command's own usage, quiet output into a closed pipe."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from microsmtp_host import cli
from microsmtp_host.virtual_board import unix_port_available

NAMES = [name for name, _, _ in cli.COMMANDS]


def run(*argv):
    return subprocess.run([sys.executable, "-m", "microsmtp_host", *argv], capture_output=True,
                          text=True, timeout=60)


def test_help_lists_every_command():
    res = run("--help")
    assert res.returncode == 0
    for name in NAMES:
        assert name in res.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_has_help(name):
    res = run(name, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: microsmtp %s" % name in res.stdout


@pytest.mark.parametrize("argv", [
    ["probe", "mail.example:notaport"],
    ["send", "--config", "/nonexistent/config.json"],
    ["flash", "--board", "esp32", "--port", "/dev/null", "--firmware", "/nonexistent.bin"],
    ["config", "--file", "/nonexistent/config.json", "--output", "/tmp/x.json"],
    ["deploy", "--port", "/nonexistent/tty"],
    ["catch", "--host", "192.0.2.1"],
])
def test_bad_input_is_one_line_not_a_traceback(argv):
    res = run(*argv)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_unknown_command_is_argparse_usage():
    res = run("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr


# --- an unknown option: the command's own usage ---------------------------------------------

# Each command with what it needs to parse (nothing is run: the unknown option stops it).
VALID = {"deploy": ["--port", "/dev/ttyUSB9"],
         "flash": ["--board", "esp32", "--firmware", "fw.bin"],
         "config": [], "send": ["--config", "c.json"], "probe": ["mail.example.org"],
         "catch": [], "board": []}


def test_every_command_has_a_valid_argv_here():
    assert sorted(VALID) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_prints_the_commands_usage(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, *VALID[name], "--no-such-option"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: microsmtp %s " % name), err
    assert err.rstrip().endswith(
        "microsmtp %s: error: unrecognized arguments: --no-such-option" % name), err


def test_unknown_option_as_a_process():
    res = run("send", "--config", "c.json", "--no-such-option")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("usage: microsmtp send ") and "--subject" in res.stderr
    assert "microsmtp send: error: unrecognized arguments: --no-such-option" in res.stderr


def test_unknown_option_before_the_command_is_the_top_levels(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--no-such-option", "send", "--config", "c.json"])
    err = capsys.readouterr().err
    assert err.startswith("usage: microsmtp [-h] COMMAND") and \
        "microsmtp: error: unrecognized arguments: --no-such-option" in err


# --- output into a pipe whose reader has gone (`microsmtp … | head -1`) ---------------------

SIGPIPE_STATUS = 128 + signal.SIGPIPE  # what a shell shows for a tool that SIGPIPE ended


def run_into_closed_pipe(*argv, cwd=None):
    """The command with stdout a real pipe whose read end is already closed: its first
    write fails with EPIPE, as after `| head -1` has read its line and gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "microsmtp_host", *argv],
                              stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=60, cwd=cwd)
    finally:
        os.close(write_end)


@pytest.fixture
def good_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "smtp": {"server": "smtp.example.com", "port": 587, "from": "boiler@example.com",
                 "to": ["oncall@example.com"], "cadata": "/ca.pem"},
        "alert": {"threshold": 85.0}}))
    return path


@pytest.mark.parametrize("argv", [
    ["deploy", "--port", "/dev/ttyUSB9", "--dry-run"],
    ["deploy", "--port", "/dev/ttyUSB9", "--mpy", "--dry-run"],
    ["flash", "--board", "esp32", "--port", "/dev/ttyUSB9", "--firmware", "{fw}", "--dry-run"],
    ["config", "--port", "/dev/ttyUSB9", "--file", "{config}", "--dry-run"],
    ["--help"],
    ["probe", "--help"],
], ids=lambda argv: " ".join(argv))
def test_a_closed_pipe_ends_quietly(argv, tmp_path, good_config):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\xe9" + bytes(255))
    argv = [a.format(fw=fw, config=good_config) for a in argv]
    res = run_into_closed_pipe(*argv)
    assert res.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    assert res.returncode in (0, SIGPIPE_STATUS), res.returncode


@pytest.mark.parametrize("argv", [
    ["deploy", "--port", "/dev/ttyUSB9", "--dry-run"],
    ["config", "--port", "/dev/ttyUSB9", "--file", "{config}", "--dry-run"],
])
def test_a_closed_pipe_is_the_sigpipe_status(argv, good_config):
    res = run_into_closed_pipe(*[a.format(config=good_config) for a in argv])
    assert (res.returncode, res.stderr) == (SIGPIPE_STATUS, "")


@pytest.mark.parametrize("argv", [
    ["catch", "--port", "0", "--http", "0", "--maildir", "{tmp}/maildir"],
    ["board", "--dir", "{tmp}/board"],
], ids=["catch", "board"])
def test_head_1_then_more_output_ends_quietly(argv, tmp_path):
    # `microsmtp catch | head -1`, step by step: read the first line as head does, close the
    # pipe as head does when it exits; then SIGTERM makes the command print its last line
    # ("stopped") into the closed pipe.
    if argv[0] == "board" and not unix_port_available():
        pytest.skip("needs the MicroPython unix port")
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "microsmtp_host", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        assert first.startswith(b"SMTP " if argv[0] == "catch" else b"Virtual board"), first
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert (status, err) == (SIGPIPE_STATUS, "")


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch):
    # a socket's EPIPE, say, reaching the entry point: not mistaken for `| head`
    def run_cmd(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_main", run_cmd)
    with pytest.raises(BrokenPipeError):
        cli.main(["send", "--config", "c.json"])


# --- README §0's command table: every option, as the parsers have it -----------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands():
    """{name: the table's command cell} from README §0, `\\|` read as |."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## 0. ", 1)[1].split("\n## 1. ", 1)[0]
    cells = {}
    for line in section.splitlines():
        m = re.match(r"\| `microsmtp (\w+)((?:[^`]|\\`)*)` \|", line)
        if m:
            assert m.group(1) not in cells, "two rows for %s" % m.group(1)
            cells[m.group(1)] = m.group(2).replace("\\|", "|")
    return cells


def shown_options(cell):
    """{option: (inside [...], the value shown after it or None)} of one command cell."""
    shown = {}
    for m in re.finditer(r"(--[a-z][a-z0-9-]*)(?: ([^\s\[\]]+))?", cell):
        depth = cell[:m.start()].count("[") - cell[:m.start()].count("]")
        value = m.group(2) if m.group(2) and not m.group(2).startswith("-") else None
        shown[m.group(1)] = (depth > 0, value)
    return shown


def test_readme_table_has_a_row_for_every_command():
    assert sorted(readme_commands()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_readme_table_lists_every_option_as_the_parser_has_it(name):
    parser = cli.build_parser().commands[name]
    cell = readme_commands()[name]
    shown = shown_options(cell)
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    options = {s: a for a in actions for s in a.option_strings if s.startswith("--")}
    missing, unknown = sorted(set(options) - set(shown)), sorted(set(shown) - set(options))
    assert not missing and not unknown, "README §0, microsmtp %s: %s missing, %s unknown" % (
        name, missing, unknown)
    for option, (optional, value) in shown.items():
        action = options[option]
        assert optional == (not action.required), "%s %s: [brackets] say optional" % (
            name, option)
        if value is not None and value[0].isdigit():  # a default ("P", "FILE": a name)
            assert (action.type or str)(value) == action.default, "%s %s: the default" % (
                name, option)
    for action in actions:
        if not action.option_strings:  # a positional argument, by its metavar
            assert (action.metavar or action.dest) in cell, (name, action.dest)
