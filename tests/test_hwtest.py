"""make hwtest, run against the virtual board (a real board needs hardware): deploy, one
send to a catcher on this computer, the board's free heap before and after."""

import pytest
from microsmtp_host import hwtest
from microsmtp_host.virtual_board import VirtualBoard


@pytest.mark.unixport
def test_hwtest_on_the_virtual_board(tmp_path, capsys):
    with VirtualBoard(tmp_path / "board") as board:
        assert hwtest.main(["--port", board.device, "--host", "127.0.0.1"]) == 0
    out = capsys.readouterr().out
    assert "hwtest: sent" in out
    assert "hwtest: the catcher received 1 mail(s): microsmtp hwtest" in out
    before = int(out.split("heap before:")[1].split()[0])
    after = int(out.split("heap after:")[1].split()[0])
    assert before > 0 and after > 0
    assert "pool 4" in out
