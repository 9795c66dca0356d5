"""make hwtest, run against the virtual board (a real board needs hardware): deploy, one
send to a catcher on this computer, the board's free heap before and after; and the board
left as it was found: its own config.json back, the test app gone."""

import json
import os

import pytest
from microsmtp_host import hwtest
from microsmtp_host.virtual_board import VirtualBoard

pytestmark = pytest.mark.unixport  # skipped, with the reason, where it cannot run

# A config.json of the board's own, as `microsmtp config` would have put there.
BOARD_CONFIG = {"smtp": {"server": "smtp.example.com", "port": 587, "password": "s3cret",
                         "from": "boiler@example.com", "to": ["oncall@example.com"]},
                "alert": {"threshold": 85.0}}


def test_hwtest_on_the_virtual_board(tmp_path, capsys):
    folder = tmp_path / "board"
    with VirtualBoard(folder) as board:
        (folder / "config.json").write_text(json.dumps(BOARD_CONFIG, indent=1))
        before_files = sorted(os.listdir(folder))
        mine = (folder / "config.json").read_bytes()
        assert hwtest.main(["--port", board.device, "--host", "127.0.0.1"]) == 0
        after_files = sorted(os.listdir(folder))
        # the board's own config.json, byte for byte, and no test app
        assert (folder / "config.json").read_bytes() == mine
    out = capsys.readouterr().out
    assert "hwtest: sent" in out
    assert "hwtest: the catcher received 1 mail(s): microsmtp hwtest" in out
    before = int(out.split("heap before:")[1].split()[0])
    after = int(out.split("heap after:")[1].split()[0])
    assert before > 0 and after > 0
    assert "pool 4" in out
    # only microsmtp itself is new on the board (deploy --mpy put it into lib/)
    assert "hwtest_app.py" not in after_files
    assert set(after_files) - set(before_files) <= {"lib"}
    assert sorted(os.listdir(folder / "lib")) == ["microsmtp"]


def test_hwtest_leaves_no_config_on_a_board_that_had_none(tmp_path, capsys, monkeypatch):
    # and cleans up after a failed run too: here the board sends to a port nobody listens on
    folder = tmp_path / "board"
    app = hwtest.APP.replace('smtp["port"]', "1")
    assert app != hwtest.APP
    monkeypatch.setattr(hwtest, "APP", app)
    with VirtualBoard(folder) as board:
        assert not (folder / "config.json").exists()
        assert hwtest.main(["--port", board.device, "--host", "127.0.0.1"]) == 1
        left = sorted(os.listdir(folder))
    assert "hwtest: not sent" in capsys.readouterr().out
    assert "config.json" not in left and "hwtest_app.py" not in left, left


def test_hwtest_touches_nothing_without_a_board(tmp_path, capsys):
    # no such port: one sentence, exit 1, and no deploy was tried
    assert hwtest.main(["--port", str(tmp_path / "no-such-tty")]) == 1
    assert capsys.readouterr().err == (
        "hwtest: no such port: %s (is the board plugged in, or `microsmtp board` running?)\n"
        % (tmp_path / "no-such-tty"))


def test_hwtest_touches_nothing_when_it_cannot_read_the_board(tmp_path, capsys):
    # a port that is no board: the board's config.json cannot be read, so nothing is deployed
    not_a_board = tmp_path / "not-a-tty"
    not_a_board.write_text("")
    assert hwtest.main(["--port", str(not_a_board)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hwtest: cannot look for the board's config.json: "), err
    assert err.count("\n") == 1, err
    assert not_a_board.read_text() == ""
