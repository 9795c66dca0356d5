"""The engine of issue 10 against a real server (aiosmtpd on loopback), on both runtimes:
client.session() (several mails over one connection, RSET after a refused one, a lost
connection, date= and message_id=) and SIZE (RFC 1870); then, on the MicroPython unix port
only, the heap a send takes once its client has sent (deliverable 10). The sessions run
through tests/mp_session.py, one driver for CPython and MicroPython. Pipelined sessions are
tested against smtp-sink (tests/test_smtp_sink.py: aiosmtpd does not offer PIPELINING)."""

import email.utils
import json
import re
from datetime import datetime, timezone

import microsmtp
import pytest
import runtimes
import scenarios
from sending import parse
from servers import RCPT, SENDER, Server

NOBODY = "nobody@example.org"  # the server refuses it (Recorder.refuse)
TIMEOUTS = {"greeting": 5, "envelope": 5, "message": 10, "quit": 2}
# test_second_alert_allocation: issue 10's bar (7,098 bytes at the engine's landing,
# 48401a2; under 1 KB since the allocation work that followed it).
ALERT_BAR = 3072
both = pytest.mark.parametrize("runtime", ["cpython", "micropython"])
pytestmark = pytest.mark.timeout(60)


def mail(n, to=RCPT, **kw):
    return dict({"to": to, "subject": "Boiler alert %d" % n,
                 "body": "Pressure low (%d).\n" % n}, **kw)


def session(runtime, srv, mails, tmp_path):
    cfg = {"server": srv.host, "port": srv.port, "from": SENDER, "mails": mails,
           "client_domain": "boiler.example.com", "timeouts": TIMEOUTS}
    results, end = runtimes.session(runtime, cfg, tmp_path)
    assert len(results) == len(mails), results
    assert end["pool_full"], "a pool buffer leaked"
    assert end["alive"] is False, "the session is over after `with`"
    return results


def sent(res):
    assert res["status"] == 0, res
    assert res["alive"] is True, res


def subjects(srv):
    return [parse(m["content"])["Subject"] for m in srv.handler.messages]


# --- client.session() --------------------------------------------------------------------

@both
def test_three_mails_one_connection(runtime, server, tmp_path):
    for res in session(runtime, server, [mail(0), mail(1), mail(2)], tmp_path):
        sent(res)
    h = server.handler
    assert len(h.peers) == 1, "one connection, one EHLO: %r" % h.peers
    assert [m["peer"] for m in h.messages] == h.peers * 3
    assert subjects(server) == ["Boiler alert 0", "Boiler alert 1", "Boiler alert 2"]
    ids = {parse(m["content"])["Message-ID"] for m in h.messages}
    assert len(ids) == 3, "each mail needs its own Message-ID"
    assert h.events == ["MAIL", "RCPT", "DATA"] * 3, "no RSET between mails that went through"


@both
def test_rset_after_a_refused_mail_then_the_next(runtime, server, tmp_path):
    # RFC 5321 §4.1.1.5: every recipient refused, the transaction is reset (RSET, no DATA)
    # and the session goes on: the next mail is delivered over the same connection.
    server.handler.refuse = (NOBODY,)
    refused, ok = session(runtime, server, [mail(0, to=NOBODY), mail(1)], tmp_path)
    assert refused["status"] == microsmtp.RCPT_REPLY_ERROR, refused
    assert refused["step"] == "RCPT" and refused["reply_code"] == 550, refused
    assert refused["refused"] == [[NOBODY, 550]], refused
    assert refused["alive"] is True, "a refused mail does not end the session"
    sent(ok)
    h = server.handler
    assert len(h.peers) == 1
    assert h.events[:3] == ["MAIL", "RCPT", "RSET"], h.events
    assert h.events[-3:] == ["MAIL", "RCPT", "DATA"], h.events
    assert [m["rcpt_tos"] for m in h.messages] == [[RCPT]]
    assert subjects(server) == ["Boiler alert 1"]


# Both found by the two tests below: protocol.Session._handle raised the mail's error with
# the phase already set to _P_MAIL_DONE (after the RSET's 250, and after the 250 to "."
# when some recipients were refused), so _failed's `ph != _P_DOT and ph != _P_RSET` (no RSET
# after those) never held, and the next mail of the session started with a needless RSET:
# one more round trip.
@both
def test_one_rset_after_a_refused_mail(runtime, server, tmp_path):
    server.handler.refuse = (NOBODY,)
    session(runtime, server, [mail(0, to=NOBODY), mail(1)], tmp_path)
    assert server.handler.events == ["MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA"]


@both
def test_no_rset_after_a_mail_delivered_to_some(runtime, server, tmp_path):
    server.handler.refuse = (NOBODY,)
    partial, ok = session(runtime, server, [mail(0, to=[RCPT, NOBODY]), mail(1)], tmp_path)
    assert partial["status"] == microsmtp.RCPT_REPLY_ERROR, partial
    assert partial["refused"] == [[NOBODY, 550]], partial
    sent(ok)
    h = server.handler
    assert [m["rcpt_tos"] for m in h.messages] == [[RCPT], [RCPT]]
    # The 250 to "." ended the first transaction: nothing is left open to reset.
    assert h.events == ["MAIL", "RCPT", "RCPT", "DATA", "MAIL", "RCPT", "DATA"], h.events


@both
def test_lost_connection_fails_the_mails_not_sent(runtime, server, tmp_path):
    # The server drops the connection, unanswered, at the second MAIL: that mail and every
    # later one raise the error that ended the session, and `alive` goes False.
    server.handler.drop_at_mail = 2
    first, lost, later = session(runtime, server, [mail(0), mail(1), mail(2)], tmp_path)
    sent(first)
    for res in (lost, later):
        assert res["status"] == microsmtp.CONNECTION_CLOSED, res
        assert res["step"] == "MAIL" and res["reply_code"] is None, res
        assert res["alive"] is False, res
    assert later["error"] == lost["error"]
    assert server.handler.mail_froms == [SENDER, SENDER], "nothing sent after the loss"
    assert subjects(server) == ["Boiler alert 0"]


@both
def test_date_and_message_id(runtime, server, tmp_path):
    # date: when the mail was made (an outbox sends it later); message_id: its Message-ID's
    # part before "@" (the sender's domain after it). Without them: now, and a random one.
    made = datetime(2026, 3, 1, 9, 5, 7, tzinfo=timezone.utc)
    mails = [mail(0, date=int(made.timestamp()), message_id="boiler-42.alarm"), mail(1)]
    for res in session(runtime, server, mails, tmp_path):
        sent(res)
    given, default = (parse(m["content"]) for m in server.handler.messages)
    assert given["Date"] == "Sun, 01 Mar 2026 09:05:07 +0000"
    assert email.utils.parsedate_to_datetime(str(given["Date"])) == made
    assert given["Message-ID"] == "<boiler-42.alarm@example.com>"
    assert default["Date"] != given["Date"]
    assert re.fullmatch(r"<[0-9a-f]{24}@example\.com>", default["Message-ID"])


# --- SIZE (RFC 1870) -----------------------------------------------------------------------

@both
def test_size_declared_and_limit_kept(runtime, tmp_path):
    # aiosmtpd announces its data_size_limit as SIZE and refuses a larger SIZE= with 552;
    # the client must not get that far: a body over the limit is refused before MAIL, and
    # the session goes on with the next mail, which declares its size.
    limit = 2000
    srv = Server("127.0.0.1", data_size_limit=limit).start()
    try:
        big = "x" * 70 + "\n"
        big = big * ((limit - scenarios.HEAD_ROOM) // len(big) + 1)  # just over the limit
        small = "y" * 70 + "\n"
        over, ok = session(runtime, srv, [mail(0, body=big), mail(1, body=small)], tmp_path)
        assert over["status"] == microsmtp.OVERSIZE_MAIL_DATA, over
        assert over["step"] == "MAIL" and over["reply_code"] is None, over
        assert over["alive"] is True, over
        sent(ok)
        h = srv.handler
        assert h.mail_froms == [SENDER], "the oversized mail sent no MAIL"
        (got,) = h.messages
        assert got["mail_options"] == ["SIZE=%d" % (len(small) + scenarios.HEAD_ROOM)]
        # The estimate is not under the message's real size, header block and all: the
        # server checks its limit against it.
        assert len(small) + scenarios.HEAD_ROOM >= len(got["content"])
    finally:
        srv.stop()


# --- the heap a send takes, once its client has sent (issue 10, deliverable 10) -------------

@pytest.fixture(scope="session")
def mp_heap_dir(tmp_path_factory):
    return runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_heap.py"],
                                tmp_path_factory.mktemp("mp_heap"))


BODY_100K = b"temperature=92.4C pressure=1.8bar burner=on flame=ok .\n" * 1900
ALERT_1K = ("Boiler 3: pressure 0.4 bar, below 1.0 bar since 09:05. Pump on, burner off.\n"
            * 14)[:1024]


def heap_sends(srv, sends, tmp_path, mp_dir):
    """tests/mp_heap.py's sends (code in flash, runtimes.HEAP) on one client: a result each."""
    (tmp_path / "body.txt").write_bytes(BODY_100K)
    (tmp_path / "alert.txt").write_text(ALERT_1K)
    cfg = {"server": srv.host, "port": srv.port, "timeouts": TIMEOUTS, "sends": sends,
           "body_file": str(tmp_path / "body.txt"), "alert_file": str(tmp_path / "alert.txt")}
    path = tmp_path / "mp_heap.json"
    path.write_text(json.dumps(cfg))
    proc = runtimes.run_micropython("mp_heap", [str(path)], [mp_dir, runtimes.firmware_mpy()],
                                    timeout=60)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(sends), "MicroPython exit %d: %s" % (
        proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    for res in results:
        assert res["pool_full"], res
    return results


@pytest.mark.unixport
def test_body_streams_with_the_heap_locked(server, tmp_path, mp_heap_dir):
    # MicroPython only (heap_lock, mem_total). Send 1 warms the client up; send 2 reads its
    # 100 KB body under heap_lock() from the first byte to the last, so its success means
    # no allocation while the body streamed (one raises MemoryError, and with the lock
    # still held the client cannot build its SMTPError either: the MemoryError escapes and
    # mp_heap.py reports it); send 3 counts what the same stretch allocates without the
    # lock, frames that fall back to the C stack under it included: nothing.
    first, locked, counted = heap_sends(server, ["count", "lock", "count"], tmp_path,
                                        mp_heap_dir)
    for res in (first, locked, counted):
        assert res["status"] == 0, res
        assert res["body_over"] and res["body_bytes"] == len(BODY_100K), res
    assert counted["body_mem_total"] == 0, counted
    assert [m["rcpt_tos"] for m in server.handler.messages] == [[RCPT]] * 3
    for m in server.handler.messages:
        assert BODY_100K.replace(b"\n", b"\r\n") in m["content"]


@pytest.mark.unixport
def test_second_alert_allocation(server, tmp_path, mp_heap_dir):
    # What a whole send of a 1 KB alert allocates (mem_total() delta, freed garbage
    # included) once its client has sent one, on the 64-bit unix port with the code in
    # flash: at most issue 10's 3,072 bytes (test_smtp_sink.py bounds the parts closer).
    first, second = heap_sends(server, ["alert", "alert"], tmp_path, mp_heap_dir)
    assert first["status"] == 0 and second["status"] == 0, (first, second)
    assert second["mem_total_delta"] <= ALERT_BAR, second
    assert len(server.handler.messages) == 2
