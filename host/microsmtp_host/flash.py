"""microsmtp flash: write MicroPython firmware to a board.

ESP32 family: esptool, run from this Python, erases the flash and writes the .bin at the
chip's offset. Pico W: the .uf2 is copied onto the RPI-RP2 drive the board shows when
plugged in with BOOTSEL held; it reboots into MicroPython once the copy is complete.
What differs per board (chip, offset, file kind) is in boards/<board>/board.json."""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "boards"
# Where desktops mount USB drives: /media/<user>/<label> (Debian, Ubuntu),
# /run/media/<user>/<label> (Fedora, Arch), /mnt/<label> (by hand, WSL), /Volumes (macOS).
MOUNT_ROOTS = ("/media", "/run/media", "/mnt", "/Volumes")
BAUD = 460800  # esptool's default is 115200; 460800 is what MicroPython's guide uses
UF2_MAGIC = b"UF2\n"  # the first word of every 512-byte UF2 block


def load_boards(folder=None):
    """{board name: facts} from every boards/*/board.json; a variant (ESP32-S3 in
    boards/esp32) is its folder's facts with its own keys on top."""
    boards = {}
    for path in sorted(Path(folder or BOARDS).glob("*/board.json")):
        with open(path, encoding="utf-8") as f:
            base = json.load(f)
        variants = base.pop("variants", [])
        base["dir"] = path.parent
        boards[base["board"]] = base
        for variant in variants:
            boards[variant["board"]] = dict(base, **variant)
    return boards


def add_parser(p):
    try:  # every `microsmtp` command builds this parser: a bad board.json must not stop them
        names = ", ".join(load_boards()) or "none found in boards/"
    except (OSError, ValueError, KeyError):
        names = "see boards/*/board.json"
    p.add_argument("--board", required=True, help="the board: %s" % names)
    p.add_argument("--port", help="ESP32: the serial port (/dev/ttyUSB0, COM3); Pico W: "
                   "the folder the RPI-RP2 drive is mounted at (found by itself if left out)")
    p.add_argument("--firmware", required=True, metavar="FILE",
                   help="MicroPython firmware: .bin for ESP32, .uf2 for Pico W")
    p.add_argument("--baud", type=int, default=BAUD,
                   help="ESP32 write speed (default %d; try 115200 if writing fails)" % BAUD)
    p.add_argument("--dry-run", action="store_true",
                   help="print the commands or the copy, change nothing")


def esptool_commands(board, port, firmware, baud):
    """The two esptool runs: erase all, then write the image at the chip's offset."""
    erase, write = "erase-flash", "write-flash"
    try:
        from importlib.metadata import PackageNotFoundError, version

        if int(version("esptool").split(".")[0]) < 5:
            erase, write = "erase_flash", "write_flash"  # spelling before esptool 5
    except (PackageNotFoundError, ValueError):
        pass  # not installed: run() says so; a dry run shows esptool 5's spelling
    base = [sys.executable, "-m", "esptool", "--chip", board["chip"], "--port", port]
    return [base + [erase],
            base + ["--baud", str(baud), write, "-z", "0x%x" % board["flash_offset"],
                    str(firmware)]]


def _board_id(drive):
    """The Board-ID line of a UF2 drive's INFO_UF2.TXT ("RPI-RP2" on a Pico W), or ""."""
    try:
        with open(Path(drive) / "INFO_UF2.TXT", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Board-ID:"):
                    return line[9:].strip()
    except OSError:
        pass
    return ""


def _mounted_folders(roots):
    # A drive sits one or two levels down: /mnt/<label>, /media/<user>/<label>.
    for root in roots:
        try:
            level1 = [p for p in Path(root).iterdir() if p.is_dir()]
        except OSError:
            continue
        for folder in level1:
            yield folder
            try:
                yield from (p for p in folder.iterdir() if p.is_dir())
            except OSError:
                pass


def find_drive(port, board_id):
    """The mounted UF2 drive to copy to: --port when it names a folder, else the one drive
    under MOUNT_ROOTS whose INFO_UF2.TXT says `board_id`."""
    from microsmtp_host.cli import CLIError

    if port and Path(port).is_dir():
        drive = Path(port)
        if not (drive / "INFO_UF2.TXT").is_file():
            raise CLIError("%s is not a UF2 drive (no INFO_UF2.TXT): hold BOOTSEL while "
                           "plugging the board in, then pass the folder it mounts at" % drive)
        found = _board_id(drive)
        if found != board_id:
            raise CLIError("%s is the UF2 drive of a %s board, not %s" % (drive, found or
                                                                          "unknown", board_id))
        return drive
    drives = [d for d in _mounted_folders(MOUNT_ROOTS)
              if (d / "INFO_UF2.TXT").is_file() and _board_id(d) == board_id]
    if not drives:
        raise CLIError("no %s drive mounted under %s: hold BOOTSEL while plugging the board "
                       "in (or pass the drive's folder as --port)"
                       % (board_id, ", ".join(MOUNT_ROOTS)))
    if len(drives) > 1:
        raise CLIError("%d %s drives mounted (%s): pass one as --port"
                       % (len(drives), board_id, ", ".join(str(d) for d in drives)))
    return drives[0]


def copy_uf2(firmware, drive):
    """Copy and flush to the device: the board reboots once its last block has landed."""
    from microsmtp_host.cli import CLIError

    target = drive / firmware.name
    try:
        with open(firmware, "rb") as src, open(target, "wb") as dst:
            while True:
                chunk = src.read(64 * 1024)
                if not chunk:
                    break
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as e:
        if (drive / "INFO_UF2.TXT").exists():
            raise CLIError("copying to %s failed: %s" % (target, e.strerror or e))
        # The drive vanished under the copy: the board rebooting once it has the last block
        # does that, and the OS may then report the final flush as failed.
        print("the drive went away during the copy: the board has most likely rebooted "
              "into MicroPython (check with `mpremote`)")
        return
    print("copied %s to %s; the board reboots into MicroPython" % (firmware.name, drive))


def run(args):
    import shlex
    import subprocess

    from microsmtp_host.cli import CLIError

    try:
        boards = load_boards()
    except (OSError, ValueError, KeyError) as e:
        raise CLIError("cannot read the board files in %s: %s" % (BOARDS, e))
    if not boards:
        raise CLIError("no boards/*/board.json in %s: run flash from a checkout of microsmtp"
                       % ROOT)
    board = boards.get(args.board)
    if board is None:
        raise CLIError("unknown board %r; known: %s" % (args.board, ", ".join(boards)))
    firmware = Path(args.firmware)
    kind = board["firmware"]
    if firmware.suffix.lower() != kind:
        raise CLIError("%s is not a %s file: %s needs the %s firmware (%s)"
                       % (firmware, kind, args.board, kind, board["micropython_board"]))
    if not firmware.is_file():
        raise CLIError("firmware file not found: %s" % firmware)

    if kind == ".uf2":
        with open(firmware, "rb") as f:
            if f.read(4) != UF2_MAGIC:
                raise CLIError("%s is not a UF2 image (it does not start with UF2 blocks)"
                               % firmware)
        drive = find_drive(args.port, board["uf2_board_id"])
        if args.dry_run:
            print("copy %s -> %s" % (firmware, drive / firmware.name))
            return 0
        copy_uf2(firmware, drive)
        return 0

    if not args.port:
        raise CLIError("--port is needed for %s: the board's serial port (/dev/ttyUSB0, "
                       "/dev/ttyACM0, COM3)" % args.board)
    commands = esptool_commands(board, args.port, firmware, args.baud)
    if args.dry_run:
        for cmd in commands:
            print(shlex.join(cmd))
        return 0
    from importlib.util import find_spec

    if find_spec("esptool") is None:
        raise CLIError("esptool is not installed in this Python: %s -m pip install esptool"
                       % sys.executable)
    if args.port.startswith("/dev/") and not os.path.exists(args.port):
        raise CLIError("no serial port %s: is the board plugged in?" % args.port)
    for step, cmd in zip(("erase", "write"), commands, strict=True):
        print("$ " + shlex.join(cmd), flush=True)
        code = subprocess.run(cmd).returncode
        if code:
            raise CLIError("esptool's %s failed (exit code %d): see its output above"
                           % (step, code))
    print("flashed %s to the %s on %s" % (firmware.name, args.board, args.port))
    return 0
