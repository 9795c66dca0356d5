"""make hwtest PORT=... CONFIG=... HOST=...: one mail through a real board.

Deploys microsmtp (.mpy) and a small test app to the board with mpremote, starts a catcher
on this computer at HOST (an address of this computer the board can reach over Wi-Fi),
runs the app — Wi-Fi up from your config, free heap, one send to the catcher, free heap —
and reports what arrived and the board's free heap before and after the send. The virtual
board works too (HOST=127.0.0.1): that is how it is tested without hardware."""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

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


def main(argv=None):
    from microsmtp_host import cli, devconfig
    from microsmtp_host.catcher import Catcher

    p = argparse.ArgumentParser(prog="hwtest", description=__doc__.splitlines()[0])
    p.add_argument("--port", required=True, help="the board's serial device (or a pty)")
    p.add_argument("--config", help="your config.json, for the Wi-Fi (docs/CONFIG.md)")
    p.add_argument("--host", default="127.0.0.1",
                   help="this computer's address as the board sees it (e.g. 192.168.1.20)")
    args = p.parse_args(argv)
    wifi = devconfig.load(args.config).get("wifi") if args.config else None
    with tempfile.TemporaryDirectory(prefix="microsmtp-hwtest-") as tmp:
        tmp = Path(tmp)
        catcher = Catcher(tmp / "maildir", host=args.host, smtp_port=0, http_port=0,
                          lan=True)
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
            cp = [sys.executable, "-m", "mpremote", "connect", args.port, "resume"]
            subprocess.run(cp + ["fs", "cp", str(app), ":hwtest_app.py"], check=True,
                           timeout=60, capture_output=True)
            run = subprocess.run(cp + ["exec", "import hwtest_app"], capture_output=True,
                                 text=True, timeout=120)
            sys.stdout.write(run.stdout + run.stderr)
            got = catcher.messages()
            print("hwtest: the catcher received %d mail(s)%s" % (
                len(got), ": %s" % got[0]["subject"] if got else ""))
            return 0 if len(got) == 1 and "hwtest: sent" in run.stdout else 1
        finally:
            catcher.stop()


if __name__ == "__main__":
    sys.exit(main())
