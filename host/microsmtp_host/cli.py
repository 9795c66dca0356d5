"""The `microsmtp` command: deploy · flash · config · send · probe · catch · board.

Each subcommand lives in its own module with `add_parser(subparsers)` and `run(args)`;
this file only wires them. Errors a user can fix are one line on stderr and exit code 2
(CLIError), never a traceback. Output piped into a reader that leaves early
(`microsmtp deploy --dry-run | head -1`) ends the command quietly, as it ends a shell tool."""

import argparse
import importlib
import os
import select
import signal
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
    parser.commands = {}  # name -> its parser, for its own usage line (_parse)
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module("microsmtp_host." + module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(p)
        p.set_defaults(run=mod.run)
        parser.commands[name] = p
    return parser


def _parse(parser, argv):
    """parse_args, except that an option the command does not know is refused with the
    command's usage: argparse hands a subcommand's unknown arguments back to the top-level
    parser, whose usage line names no option of the command."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        argv = sys.argv[1:] if argv is None else list(argv)
        own = parser  # an unknown option before the command is the top level's
        if args.command in argv:
            after = argv[argv.index(args.command) + 1:]
            if all(a in after for a in extra):
                own = parser.commands[args.command]
        own.error("unrecognized arguments: %s" % " ".join(extra))
    return args


def main(argv=None):
    try:
        try:
            status = _main(argv)
        except SystemExit:  # argparse: --help, a usage error
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # buffered output meets a closed pipe here, not at exit
        return status
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's peer, say: a real error, not the end of the output
        # The reader of stdout has gone (`| head -1`): stop without a traceback. What is
        # still buffered goes to /dev/null, or Python's own flush at exit would complain.
        # The status is a shell's for a tool that SIGPIPE ended (128 + 13); SIGPIPE itself
        # stays ignored, since the catcher and probe write to sockets whose peer may go.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


def _stdout_closed():
    """Whether stdout is a pipe (or socket) that nobody reads any more: poll() reports
    POLLERR on the write end of a pipe whose read end is closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (e.g. captured)
        return False


def _main(argv):
    parser = build_parser()
    args = _parse(parser, argv)
    try:
        return args.run(args) or 0
    except CLIError as e:
        print("microsmtp %s: %s" % (args.command, e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
