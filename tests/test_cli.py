"""The `microsmtp` command: --help for every subcommand, one-line errors for bad input."""

import subprocess
import sys

import pytest
from microsmtp_host import cli

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
