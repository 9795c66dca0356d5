"""The mpremote command line, built and run in one place for deploy, config, the demo and
hwtest.

    mpremote_cmd.run("/dev/ttyUSB0", "fs", "cp", "config.json", ":config.json")
    mpremote_cmd.shown("/dev/ttyUSB0", "exec", "import main")   # for --dry-run

Every command is `mpremote connect PORT resume COMMANDS...`: `resume` skips mpremote's soft
reset, which a board survives but the unix port (the virtual board) does not do; it costs a
board nothing (mpremote's Ctrl-C still stops a running program). mpremote chains commands
with "+". The mpremote that runs is this Python's (the venv's, pinned in pyproject.toml),
whatever else is on PATH. A failure is MpremoteError, one sentence a caller prefixes with
its step ("reading the board failed: ...")."""

import os
import sys

PROGRAM = (sys.executable, "-m", "mpremote")  # the venv's mpremote
TIMEOUT = 60  # seconds for one command, unless the caller says otherwise
_NO_PORT = "no such port: %s (is the board plugged in, or `microsmtp board` running?)"


class MpremoteError(Exception):
    """mpremote did not do its command: str() is one sentence. returncode (None when it
    could not start or was killed), timed_out, and lines (its output so far)."""

    def __init__(self, sentence, returncode=None, timed_out=False, lines=()):
        super().__init__(sentence)
        self.returncode = returncode
        self.timed_out = timed_out
        self.lines = list(lines)


def argv(port, *commands):
    """The argument vector that runs COMMANDS on the board at PORT."""
    return [*PROGRAM, "connect", port, "resume", *commands]


def shown(port, *commands):
    """The command line as a user would type it (`mpremote connect PORT resume ...`), for
    --dry-run. Arguments are shell-quoted, but for <placeholders> of what exists only at
    run time (a temporary file)."""
    import shlex

    return " ".join(c if c.startswith("<") and c.endswith(">") else shlex.quote(c)
                    for c in ["mpremote", "connect", port, "resume", *map(str, commands)])


def check_port(port):
    """MpremoteError when PORT is a device path that does not exist. Other forms (COM3,
    mpremote's shortcuts such as a0, rfc2217://host:port) are left to mpremote."""
    if os.sep in port and "://" not in port and not os.path.exists(port):
        raise MpremoteError(_NO_PORT % port)


def run(port, *commands, timeout=TIMEOUT, on_line=None, check=True):
    """Run COMMANDS on the board at PORT; its output (stdout and stderr together) as a list
    of lines, each given to on_line(line) as it comes. Raises MpremoteError: the port does
    not exist, mpremote cannot start, it runs longer than `timeout` seconds (it is killed),
    or (with check) it exits non-zero: then the sentence is its last line."""
    import subprocess
    import threading

    check_port(port)
    try:
        proc = subprocess.Popen(argv(port, *commands), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, errors="replace")
    except OSError as e:
        raise MpremoteError("cannot run mpremote: %s" % (e.strerror or e)) from None
    expired = []
    timer = threading.Timer(timeout, lambda: (expired.append(1), proc.kill()))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\r\n")
            lines.append(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    finally:  # also when on_line raised: mpremote does not outlive its caller
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    if expired and code:  # (a command that ended as the timer fired did not time out)
        raise MpremoteError("no answer within %g s (is the port a MicroPython board?)"
                            % timeout, timed_out=True, lines=lines)
    if code and check:
        said = [ln.strip() for ln in lines if ln.strip()]
        raise MpremoteError(said[-1] if said else "mpremote exited with code %d" % code,
                            returncode=code, lines=lines)
    return lines
