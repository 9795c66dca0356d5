"""A fleet through one relay (issue 12, item 5): N virtual devices, each a MicroPython unix
port process (tests/mp_fleet.py) with its own outbox, queue ALERTS alerts each and flush them
at once through a private Postfix (the test's own instance: `own_postfix` in conftest.py),
which is stopped and started again twice while they run: once the Maildir holds a third of
the alerts, and once it holds two thirds.

Asserted: every alert is in the Maildir (Message-IDs counted), none is lost, every outbox is
empty; a duplicate sent by a device (the same Message-ID under two Postfix queue IDs) is
allowed only for an alert whose device lost its connection after "." (DELIVERY_UNKNOWN: the
outbox delivers at least once and sends it again); one queue file delivered twice by Postfix
itself (its delivery agent killed by the stop after writing the Maildir file) is counted
apart. The figures are printed.

N is MICROSMTP_FLEET (default 50); the run is bounded (devices' own deadline, each wait's
deadline, the test's timeout)."""

import email.parser
import email.policy
import json
import os
import re
import subprocess
import time
from collections import Counter

import microsmtp
import postfix_server
import pytest
import runtimes
from microsmtp_host import unixport

# Not a heap bar (tests/test_engine.py and the bench hold those): a device keeps its 20 ids,
# its errors and its report beside the outbox, and one device in a fresh clone's CI run hit
# MemoryError at runtimes.HARNESS_HEAP (56K); 64K leaves room for that bookkeeping.
DEVICE_HEAP = "64K"
N = int(os.environ.get("MICROSMTP_FLEET", "50"))
ALERTS = 20
DEVICE_DEADLINE = 60  # seconds a device flushes before it gives up (and the test fails)
BACKOFF = 0.2  # the outbox's first retry, seconds; doubled a try, with jitter
TIMEOUTS = {"connect": 5, "greeting": 10, "envelope": 10, "message": 10}

pytestmark = [pytest.mark.unixport, pytest.mark.timeout(120)]


def maildir_headers(srv):
    """(Message-ID, Subject, Postfix queue ID) of every mail in the Maildir. The queue ID is
    in the Received line Postfix's smtpd added ("... with ESMTP id 3F2A1C0D5E"): one a
    session that was given the mail, so two copies with one queue ID were one send."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    out = []
    for path in srv.messages():
        with open(path, "rb") as f:
            head = parser.parse(f)
        queue_id = re.search(r"\bwith E?SMTP id ([0-9A-Za-z]+)", head["Received"])
        assert queue_id, "no queue ID in %s's Received line: %r" % (path, head["Received"])
        out.append((head["Message-ID"], head["Subject"], queue_id.group(1)))
    return out


def test_fleet_through_restarted_postfix(own_postfix, tmp_path, capsys):
    srv = own_postfix
    total = N * ALERTS
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_fleet.py"], tmp_path / "mpy")
    procs = []
    start = time.monotonic()
    try:
        for d in range(N):
            cfg = tmp_path / ("device%03d.json" % d)
            cfg.write_text(json.dumps({
                "port": srv.ports["plain"], "path": str(tmp_path / ("outbox%03d" % d)),
                "device": d, "alerts": ALERTS, "backoff": BACKOFF,
                "deadline": DEVICE_DEADLINE, "timeouts": TIMEOUTS}))
            if d == 0:  # one ROM image and boot module for every device
                cmd, env = unixport.command("mp_fleet", ["CFG"], heap=DEVICE_HEAP,
                                            rom=[mpy, runtimes.firmware_mpy()],
                                            work=tmp_path / "work")
            out = open(tmp_path / ("device%03d.out" % d), "w+")
            procs.append((subprocess.Popen(cmd[:-1] + [str(cfg)], env=env, stdout=out,
                                           stderr=subprocess.STDOUT), out))
        # Two restarts, each when the Maildir holds a third more of the alerts.
        restarts = []
        end = start + DEVICE_DEADLINE + 15
        while any(p.poll() is None for p, _ in procs) and time.monotonic() < end:
            if len(restarts) < 2 and len(srv.messages()) >= total * (len(restarts) + 1) // 3:
                at = len(srv.messages())
                t0 = time.monotonic()
                srv.restart()
                restarts.append((at, round(time.monotonic() - t0, 2)))
            time.sleep(0.05)
        for p, _ in procs:
            p.wait(timeout=max(1, end - time.monotonic()))
        ran = time.monotonic() - start
        results = []
        for p, out in procs:
            out.seek(0)
            text = out.read()
            lines = [line for line in text.splitlines() if line.startswith("{")]
            assert p.returncode == 0 and lines, "device exit %s: %s" % (p.returncode,
                                                                         text[-2000:])
            results.append(json.loads(lines[-1]))
    finally:
        for p, out in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            out.close()
    # What Postfix accepted is delivered from its queue (some of it after a restart).
    wait_end = time.monotonic() + 20
    while (srv.queued() or len(srv.messages()) < total) and time.monotonic() < wait_end:
        time.sleep(0.1)
    duration = time.monotonic() - start
    mails = maildir_headers(srv)

    expected = {}  # Message-ID -> subject
    unknown = Counter()  # subject -> connections lost after its "."
    errors = Counter()
    for r in results:
        assert r["pending"] == 0 and r["dead"] == 0, r
        for k, mid in enumerate(r["ids"]):
            expected["<%s@example.org>" % mid] = "fleet d%03d a%02d" % (r["device"], k)
        unknown.update("fleet d%03d a%02d" % (r["device"], k) for k in r["unknown"])
        errors.update(r["errors"])
    assert len(expected) == total
    got = Counter(mid for mid, _, _ in mails)
    subjects = {mid: subject for mid, subject, _ in mails}
    lost = sorted(expected[mid] for mid in expected if mid not in got)
    strangers = [mid for mid in got if mid not in expected]
    assert not lost, "lost: %s" % lost[:20]
    assert not strangers, strangers[:20]
    assert all(subjects[mid] == expected[mid] for mid in got)
    # Two kinds of duplicate. A device sent the alert again (a new session, a new queue ID):
    # allowed only as often as its connection was lost after "." for it. Postfix delivered
    # one queue file twice (one queue ID): its delivery agent had written the Maildir file
    # when the stop killed it, before it told the queue manager, so the queue manager
    # delivered it again after the start; Postfix's own at-least-once, not the client's.
    sends = Counter(mid for mid, _ in set((mid, q) for mid, _, q in mails))
    dups = {expected[mid]: n - 1 for mid, n in sends.items() if n > 1}
    unexplained = {s: n for s, n in dups.items() if n > unknown[s]}
    duplicates = sum(dups.values())
    redelivered = len(mails) - sum(sends.values())
    bad = [line for line in srv.read_log().splitlines()  # the whole run, every restart
           if any(word in line for word in postfix_server.BAD_LOG)]
    names = {v: k for k, v in vars(microsmtp).items()  # status codes: 0xA0 and up
             if k.isupper() and isinstance(v, int) and v >= 0xA0}
    kinds = {"%s at %s" % (names.get(int(k.split(":")[0]), k.split(":")[0]), k.split(":")[1]):
             n for k, n in errors.items()}
    with capsys.disabled():
        print("\nfleet: %d devices x %d alerts = %d alerts through one Postfix, restarted "
              "%d times (at %s mails in the Maildir; stop+start took %s s); devices done in "
              "%.1f s, all delivered in %.1f s; %d delivered, %d distinct, %d sent twice "
              "(%d connections lost after \".\"), %d delivered twice by Postfix after a "
              "restart; flush errors: %s" % (
                  N, ALERTS, total, len(restarts), [a for a, _ in restarts],
                  [t for _, t in restarts], ran, duration, len(mails), len(got), duplicates,
                  sum(unknown.values()), redelivered, dict(kinds) or "none"))
    assert not srv.queued(), "Postfix still holds %d mails:\n%s" % (srv.queued(),
                                                                    srv.queue_report())
    assert len(restarts) == 2, "Postfix was restarted %d times, not twice" % len(restarts)
    assert not unexplained, "duplicates with no connection lost after \".\": %s" % unexplained
    assert not bad, "Postfix warned:\n" + "\n".join(bad[:20])
