"""make hwtest PORT=... CONFIG=... HOST=...: one mail through a real board.

Deploys microsmtp (.mpy) and a small test app to the board with mpremote, starts a catcher
on this computer at HOST (an address of this computer the board can reach over Wi-Fi),
runs the app — Wi-Fi up from your config, free heap, one send to the catcher, free heap —
and reports what arrived and the board's free heap before and after the send. The virtual
board works too (HOST=127.0.0.1): that is how it is tested without hardware.

The board is left as it was found, but for microsmtp itself in lib/microsmtp (deploy --mpy):
its config.json is copied to this computer first (into a private temporary folder) and put
back afterwards (or removed, when the board had none), and the test app is removed, whether
the test passed or not."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from microsmtp_host import mpremote_cmd

# The board side: Wi-Fi (when the board has it), free heap, one send, free heap.
APP = '''\
import gc
import json
import time

import microsmtp

with open("config.json") as f:
    cfg = json.load(f)
try:
    import network
except ImportError:  # the virtual board (unix port)
    network = None
if network is not None and cfg.get("wifi"):
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["wifi"]["ssid"], cfg["wifi"].get("password"))
        deadline = time.ticks_add(time.ticks_ms(), 20000)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(200)
    print("wifi:", wlan.isconnected() and wlan.ifconfig()[0])
smtp = cfg["smtp"]
client = microsmtp.Client(smtp["server"], smtp["port"], from_address=smtp["from"],
                          client_domain="hwtest.example.org", tls=microsmtp.TLS_NONE)
gc.collect()
print("heap before:", gc.mem_free())
try:
    client.send(smtp["to"], "microsmtp hwtest", "One mail from the board.\\n")
    print("hwtest: sent")
except microsmtp.SMTPError as e:
    print("hwtest: not sent:", e)
gc.collect()
print("heap after:", gc.mem_free(), "pool", client.pool.available())
'''


# Run on the board (mpremote exec): does it have a config.json of its own?
HAS_CONFIG = ('import os\ntry:\n    os.stat("config.json")\n    print("hwtest-config yes")\n'
              'except OSError:\n    print("hwtest-config none")')
# Run on the board afterwards: the test app goes, and the test's config.json when the board
# had none before (%r: the names to remove; a name already gone is fine).
CLEAN = ('import os\nfor n in %r:\n    try:\n        os.remove(n)\n'
         '    except OSError:\n        pass')


class HwtestError(Exception):
    """hwtest could not do a step on the board: one sentence, exit code 1."""


def _board(port, what, *args):
    """One mpremote command on the board, its output; a failure as HwtestError naming the
    step and what went wrong (mpremote's last line, or no answer)."""
    try:
        return "\n".join(mpremote_cmd.run(port, *args))
    except mpremote_cmd.MpremoteError as e:
        raise HwtestError("cannot %s: %s" % (what, e)) from None


def _save_config(port, saved):
    """Copy the board's config.json to `saved`; whether it had one."""
    out = _board(port, "look for the board's config.json", "exec", HAS_CONFIG)
    if "hwtest-config yes" not in out:
        return False
    _board(port, "copy the board's config.json", "fs", "cp", ":config.json", str(saved))
    return True


def _restore(port, had_config, saved):
    """The board as found: its config.json back (or the test's removed), no test app."""
    _board(port, "remove the test app", "exec",
           CLEAN % (("hwtest_app.py",) if had_config else ("hwtest_app.py", "config.json"),))
    if had_config:
        _board(port, "put the board's config.json back", "fs", "cp", str(saved), ":config.json")


def _keep(saved):
    """A copy of the board's config.json that outlives the temporary folder: 0600, in the
    system's temporary folder (never the repository); its path."""
    fd, path = tempfile.mkstemp(prefix="microsmtp-board-config-", suffix=".json")
    with os.fdopen(fd, "wb") as f:
        f.write(saved.read_bytes())
    return path


def main(argv=None):
    from microsmtp_host import devconfig

    p = argparse.ArgumentParser(prog="hwtest", description=__doc__.splitlines()[0])
    p.add_argument("--port", required=True, help="the board's serial device (or a pty)")
    p.add_argument("--config", help="your config.json, for the Wi-Fi (docs/CONFIG.md)")
    p.add_argument("--host", default="127.0.0.1",
                   help="this computer's address as the board sees it (e.g. 192.168.1.20)")
    args = p.parse_args(argv)
    wifi = devconfig.load(args.config).get("wifi") if args.config else None
    try:
        mpremote_cmd.check_port(args.port)
    except mpremote_cmd.MpremoteError as e:
        print("hwtest: %s" % e, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="microsmtp-hwtest-") as tmp:
        tmp = Path(tmp)  # 0700: the board's config.json, passwords and all, waits here
        saved = tmp / "board-config.json"
        try:
            had_config = _save_config(args.port, saved)
        except HwtestError as e:
            print("hwtest: %s" % e, file=sys.stderr)
            return 1
        restored = False
        try:
            status = _test(args, tmp, wifi)
        finally:
            try:
                _restore(args.port, had_config, saved)
                restored = True
            except HwtestError as e:
                print("hwtest: %s%s" % (e, "; it is saved as %s" % _keep(saved)
                                        if had_config else ""), file=sys.stderr)
        return status if restored else 1


def _test(args, tmp, wifi):
    """Deploy, run the test app, count what the catcher received: the exit code."""
    from microsmtp_host import cli, devconfig
    from microsmtp_host.catcher import Catcher

    catcher = Catcher(tmp / "maildir", host=args.host, smtp_port=0, http_port=0, lan=True)
    catcher.start()
    try:
        config = devconfig.save(tmp / "config.json", {"wifi": wifi, "smtp": {
            "server": args.host, "port": catcher.smtp_port, "from": "board@example.org",
            "to": ["hwtest@example.org"]}})
        app = tmp / "hwtest_app.py"
        app.write_text(APP)
        if cli.main(["deploy", "--port", args.port, "--mpy", "--config", str(config)]):
            print("hwtest: deploy failed", file=sys.stderr)
            return 1
        try:
            _board(args.port, "copy the test app", "fs", "cp", str(app), ":hwtest_app.py")
        except HwtestError as e:
            print("hwtest: %s" % e, file=sys.stderr)
            return 1
        try:  # its output is looked at even when it ended with an exception
            out = mpremote_cmd.run(args.port, "exec", "import hwtest_app", timeout=120,
                                   check=False)
        except mpremote_cmd.MpremoteError as e:
            print("hwtest: the test app did not end within 120 s" if e.timed_out else
                  "hwtest: cannot run the test app: %s" % e, file=sys.stderr)
            return 1
        out = "".join(line + "\n" for line in out)
        sys.stdout.write(out)
        got = catcher.messages()
        print("hwtest: the catcher received %d mail(s)%s" % (
            len(got), ": %s" % got[0]["subject"] if got else ""))
        return 0 if len(got) == 1 and "hwtest: sent" in out else 1
    finally:
        catcher.stop()


if __name__ == "__main__":
    sys.exit(main())
