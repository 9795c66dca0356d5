"""The `microsmtp` command: deploy · flash · config · send · probe · catch · board.

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args)`;
this file only wires them. Errors a user can fix are one line on stderr and exit code 2
(CLIError), never a traceback."""

import argparse
import importlib
import sys

# (name, module, one-line help). The modules are imported only when their command runs.
COMMANDS = (
    ("deploy", "deploy", "put microsmtp, the board's app and its config on a board (mpremote)"),
    ("flash", "flash", "write MicroPython firmware to an ESP32 (esptool) or a Pico W (UF2)"),
    ("config", "config", "write the device configuration (Wi-Fi, SMTP, recipients) to a board"),
    ("send", "send", "send a test mail from this computer with the firmware code and a config"),
    ("probe", "probe", "show what a mail server offers and the Client settings to use"),
    ("catch", "catcher", "a local SMTP catcher with a web page listing the alerts"),
    ("board", "virtual_board", "a virtual board: the MicroPython unix port on a pty"),
)


class CLIError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="microsmtp", description="Tools for microsmtp, the SMTP client for MicroPython "
        "boards: deploy, flash, configure, test-send, probe servers, catch mail.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module("microsmtp_host." + module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(p)
        p.set_defaults(run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except CLIError as e:
        print("microsmtp %s: %s" % (args.command, e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
