"""Power cuts: the MicroPython unix port runs an app that queues alerts in the outbox and
flushes them; the test kills it with SIGKILL at random moments (seeded), 200 times, then
lets it drain. Every alert whose put() had returned is delivered or still queued intact, no
file is corrupt, and duplicates come only from the window between "." and the server's
reply (counted and printed)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import runtimes
from microsmtp_host import unixport
from servers import Server

pytestmark = pytest.mark.unixport

TRIALS = 200
SEED = 20261128


def launcher(tmp_path):
    """The unix port with the firmware and the app in emulated flash, as a Popen command."""
    mpy = runtimes.compile_mpy([runtimes.ROOT / "tests" / "mp_powercut.py"], tmp_path / "app")
    image = unixport.build_rom([runtimes.firmware_mpy(), mpy], tmp_path / "code.romfs")
    boot = unixport.compile_mpy([unixport.HERE / "romboot.py"], tmp_path / "boot")
    env = dict(os.environ, MICROPYPATH=".frozen" + os.pathsep + str(boot),
               PYTHONPATH=str(runtimes.ROOT / "host"))
    cmd = [sys.executable, "-m", "microsmtp_host.unixport", "--rom", str(image), "-X",
           "heapsize=" + runtimes.HARNESS_HEAP, "-m", "romboot", "mp_powercut"]
    return cmd, env


def test_no_alert_lost_across_200_power_cuts(tmp_path):
    rng = random.Random(SEED)
    srv = Server(auth=False).start()
    box = tmp_path / "outbox"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"port": srv.port, "path": str(box), "per_trial": 3}))
    cmd, env = launcher(tmp_path)
    confirmed = []  # subjects whose put() returned before the kill
    deadline = time.monotonic() + 240
    try:
        for trial in range(TRIALS):
            assert time.monotonic() < deadline, "the power-cut test ran out of time"
            proc = subprocess.Popen(cmd + [str(cfg), str(trial)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=rng.uniform(0.0, 0.6))  # the cut: any moment of the run
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            out = proc.communicate(timeout=10)[0].decode()
            confirmed += [line.split()[1] for line in out.splitlines()
                          if line.startswith("put ")]
        # No corrupt file: every queued message parses (a header line of JSON).
        for name in os.listdir(box):
            if name.endswith(".msg"):
                head = (box / name).read_bytes().split(b"\n", 1)[0]
                assert json.loads(head)["subject"]
        drain = subprocess.run(cmd + [str(cfg), "drain"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert "left 0" in drain.stdout, drain.stdout + drain.stderr
    finally:
        srv.stop()
    delivered = srv.handler.subjects
    lost = [s for s in confirmed if s not in delivered]
    assert not lost, "alerts lost: %r" % lost[:10]
    dups = len(delivered) - len(set(delivered))
    print("\n%d power cuts, %d alerts queued, %d delivered, %d duplicates (cut between "
          "'.' and the reply)" % (TRIALS, len(confirmed), len(set(delivered)), dups))
    assert len(confirmed) >= TRIALS // 2  # many puts completed, not only early cuts
    assert not os.listdir(box / "tmp")
