"""microsmtp flash: esptool command lines for the ESP32 family, the UF2 copy for the Pico W
(onto a fake RPI-RP2 drive: a folder with INFO_UF2.TXT), and one-line errors, exit code 2."""

import argparse
import importlib
import shlex
import subprocess
import sys

import pytest
from microsmtp_host import cli, flash
from microsmtp_host.cli import CLIError

PORT = "/dev/ttyUSB0"
INFO = "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"
# One 512-byte UF2 block: the magic words, then zeros (never parsed beyond the magic).
UF2 = b"UF2\nWQ]\x9e" + bytes(504)


def parse(*argv):
    parser = argparse.ArgumentParser()
    flash.add_parser(parser)
    return parser.parse_args(list(argv))


def run(*argv):
    return flash.run(parse(*argv))


@pytest.fixture
def esp_bin(tmp_path):
    path = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    path.write_bytes(b"\xe9" + bytes(255))
    return path


@pytest.fixture
def uf2(tmp_path):
    path = tmp_path / "RPI_PICO_W-v1.29.0.uf2"
    path.write_bytes(UF2 * 4)
    return path


def make_drive(folder, info=INFO):
    folder.mkdir(parents=True)
    (folder / "INFO_UF2.TXT").write_text(info)
    (folder / "INDEX.HTM").write_text("<html></html>")
    return folder


@pytest.fixture
def mounts(tmp_path, monkeypatch):
    """An empty stand-in for /media, /run/media, /mnt: drives are made under it."""
    root = tmp_path / "media"
    root.mkdir()
    monkeypatch.setattr(flash, "MOUNT_ROOTS", (str(root),))
    return root


@pytest.mark.parametrize("board, chip, offset", [
    ("esp32", "esp32", "0x1000"),
    ("esp32s3", "esp32s3", "0x0"),
    ("esp32c3", "esp32c3", "0x0"),
])
def test_dry_run_prints_the_esptool_commands(board, chip, offset, esp_bin, capsys,
                                             monkeypatch):
    monkeypatch.setattr(subprocess, "run", None)  # nothing may run
    assert run("--board", board, "--port", PORT, "--firmware", str(esp_bin), "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", PORT]
    assert [shlex.split(line) for line in lines] == [
        base + ["erase-flash"],
        base + ["--baud", "460800", "write-flash", "-z", offset, str(esp_bin)],
    ]


def test_baud_can_be_lowered(esp_bin, capsys):
    run("--board", "esp32", "--port", PORT, "--firmware", str(esp_bin), "--baud", "115200",
        "--dry-run")
    assert "--baud 115200 write-flash" in capsys.readouterr().out


def test_flash_runs_erase_then_write(esp_bin, monkeypatch, capsys):
    ran = []

    def fake_run(cmd):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert run("--board", "esp32s3", "--port", "/dev/null", "--firmware", str(esp_bin)) == 0
    assert [cmd[7:] for cmd in ran] == [
        ["erase-flash"], ["--baud", "460800", "write-flash", "-z", "0x0", str(esp_bin)]]
    assert "flashed ESP32_GENERIC-v1.29.0.bin to the esp32s3 on /dev/null" in \
        capsys.readouterr().out


def test_an_esptool_failure_is_one_line(esp_bin, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda cmd: subprocess.CompletedProcess(cmd, 2))
    with pytest.raises(CLIError, match=r"^esptool's erase failed \(exit code 2\)"):
        run("--board", "esp32", "--port", "/dev/null", "--firmware", str(esp_bin))


def test_the_commands_work_with_the_installed_esptool():
    """The spelling flash uses is one the installed esptool accepts (its --help)."""
    pytest.importorskip("esptool")
    board = flash.load_boards()["esp32"]
    for cmd in flash.esptool_commands(board, PORT, "fw.bin", 460800):
        sub = [a for a in cmd[7:] if a.endswith("flash")][0]
        res = subprocess.run([sys.executable, "-m", "esptool", sub, "--help"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr


def test_uf2_is_copied_to_the_drive_given_as_port(uf2, tmp_path, capsys):
    drive = make_drive(tmp_path / "RPI-RP2")
    assert run("--board", "rp2-pico-w", "--port", str(drive), "--firmware", str(uf2)) == 0
    assert (drive / uf2.name).read_bytes() == uf2.read_bytes()
    assert "copied RPI_PICO_W-v1.29.0.uf2 to %s" % drive in capsys.readouterr().out


def test_uf2_drive_is_found_under_the_mount_folders(uf2, mounts, capsys):
    drive = make_drive(mounts / "alice" / "RPI-RP2")
    make_drive(mounts / "alice" / "OTHER", info="Board-ID: RP2350\n")  # a Pico 2: not ours
    (mounts / "USBSTICK").mkdir()
    run("--board", "rp2-pico-w", "--port", "/dev/ttyACM0", "--firmware", str(uf2))
    assert (drive / uf2.name).read_bytes() == uf2.read_bytes()
    assert not (mounts / "alice" / "OTHER" / uf2.name).exists()


def test_uf2_dry_run_copies_nothing(uf2, mounts, capsys):
    drive = make_drive(mounts / "RPI-RP2")
    run("--board", "rp2-pico-w", "--firmware", str(uf2), "--dry-run")
    assert capsys.readouterr().out == "copy %s -> %s\n" % (uf2, drive / uf2.name)
    assert not (drive / uf2.name).exists()


def one_line_error(*argv):
    with pytest.raises(CLIError) as e:
        run(*argv)
    message = str(e.value)
    assert message and "\n" not in message
    return message


def test_errors_are_one_line(uf2, esp_bin, mounts, tmp_path):
    drive = make_drive(tmp_path / "RPI-RP2")
    assert "unknown board 'esp8266'; known: esp32, esp32s3, esp32c3, rp2-pico-w" in \
        one_line_error("--board", "esp8266", "--port", PORT, "--firmware", str(esp_bin))
    missing = tmp_path / "nope.bin"
    assert one_line_error("--board", "esp32", "--port", PORT, "--firmware", str(missing)) \
        == "firmware file not found: %s" % missing
    assert "is not a .uf2 file" in one_line_error(
        "--board", "rp2-pico-w", "--port", str(drive), "--firmware", str(esp_bin))
    assert "is not a .bin file" in one_line_error(
        "--board", "esp32", "--port", PORT, "--firmware", str(uf2))
    assert "--port is needed for esp32c3" in one_line_error(
        "--board", "esp32c3", "--firmware", str(esp_bin), "--dry-run")
    fake = tmp_path / "fake.uf2"
    fake.write_bytes(b"\xe9" + bytes(511))
    assert "is not a UF2 image" in one_line_error(
        "--board", "rp2-pico-w", "--port", str(drive), "--firmware", str(fake))
    assert "no RPI-RP2 drive mounted under" in one_line_error(
        "--board", "rp2-pico-w", "--firmware", str(uf2))
    assert "is not a UF2 drive (no INFO_UF2.TXT)" in one_line_error(
        "--board", "rp2-pico-w", "--port", str(tmp_path), "--firmware", str(uf2))
    pico2 = make_drive(tmp_path / "RP2350", info="Board-ID: RP2350\n")
    assert "UF2 drive of a RP2350 board, not RPI-RP2" in one_line_error(
        "--board", "rp2-pico-w", "--port", str(pico2), "--firmware", str(uf2))
    make_drive(mounts / "a")
    make_drive(mounts / "b")
    assert "2 RPI-RP2 drives mounted" in one_line_error(
        "--board", "rp2-pico-w", "--firmware", str(uf2))
    assert not list(drive.glob("*.uf2"))  # no error left a file behind


def test_board_files_missing_or_broken(esp_bin, tmp_path, monkeypatch):
    monkeypatch.setattr(flash, "BOARDS", tmp_path / "boards")
    assert "no boards/*/board.json in" in one_line_error(
        "--board", "esp32", "--port", PORT, "--firmware", str(esp_bin))
    (tmp_path / "boards" / "esp32").mkdir(parents=True)
    (tmp_path / "boards" / "esp32" / "board.json").write_text('{"board": "esp32",')
    parse("--board", "esp32", "--firmware", "x.bin")  # the parser is still made
    assert "cannot read the board files in" in one_line_error(
        "--board", "esp32", "--port", PORT, "--firmware", str(esp_bin))


def test_a_missing_serial_port_is_named(esp_bin):
    assert one_line_error("--board", "esp32", "--port", "/dev/ttyNOSUCH0",
                          "--firmware", str(esp_bin)) in (
        "no serial port /dev/ttyNOSUCH0: is the board plugged in?",
        "esptool is not installed in this Python: %s -m pip install esptool" % sys.executable)


# --- through the `microsmtp` command itself -----------------------------------------------

def _all_commands_import():
    try:
        for _, module, _ in cli.COMMANDS:
            importlib.import_module("microsmtp_host." + module)
    except Exception:  # missing, or being written: a syntax error is possible too
        return False
    return True


def test_cli_main_with_flash_alone(esp_bin, tmp_path, capsys, monkeypatch):
    """cli.main's error path for flash, whatever state the other commands are in."""
    monkeypatch.setattr(cli, "COMMANDS", [c for c in cli.COMMANDS if c[0] == "flash"])
    assert cli.main(["flash", "--board", "esp32", "--port", PORT, "--firmware",
                     str(esp_bin), "--dry-run"]) == 0
    capsys.readouterr()
    assert cli.main(["flash", "--board", "zx81", "--port", PORT, "--firmware",
                     str(esp_bin)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp flash: unknown board 'zx81'") and err.count("\n") == 1


@pytest.mark.skipif(not _all_commands_import(),
                    reason="a command module of cli.COMMANDS does not exist yet")
@pytest.mark.parametrize("argv, message", [
    (["--board", "esp32", "--port", PORT, "--firmware", "missing.bin"],
     "firmware file not found: missing.bin"),
    (["--board", "rp2-pico-w", "--firmware", "x.bin"], "x.bin is not a .uf2 file"),
    (["--board", "nope", "--firmware", "x.bin"], "unknown board 'nope'"),
])
def test_cli_main_gives_one_line_and_exit_code_2(argv, message, capsys, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["flash"] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp flash: " + message), err
    assert err.count("\n") == 1, err


@pytest.mark.skipif(not _all_commands_import(),
                    reason="a command module of cli.COMMANDS does not exist yet")
def test_cli_main_uf2_drive_not_found(uf2, mounts, capsys):
    assert cli.main(["flash", "--board", "rp2-pico-w", "--firmware", str(uf2)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("microsmtp flash: no RPI-RP2 drive mounted under ")
    assert err.count("\n") == 1
