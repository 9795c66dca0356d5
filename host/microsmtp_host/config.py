"""microsmtp config: write the device configuration to a board (or a local file).

From a local JSON file (--file) or by asking (passwords without echo); checked with the
firmware's own input checks; written to the board as /config.json with mpremote. Never
into the repository; local copies are readable by their owner only (devconfig.save)."""

import getpass
import os
import subprocess
import sys
import tempfile


def add_parser(p):
    p.add_argument("--port", help="the board's serial device or the virtual board's pty")
    p.add_argument("--file", help="a local config file to use (docs/CONFIG.md)")
    p.add_argument("--output", help="also (or only, without --port) write it to this file")
    p.add_argument("--ca", help="a CA certificate file (PEM or DER) to put on the board as "
                   "ca.pem; the config's smtp.cadata then names it")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command only")


def ask():
    """The config by questions; passwords are not echoed."""
    def q(prompt, default=None):
        answer = input("%s%s: " % (prompt, " [%s]" % default if default else "")).strip()
        return answer or default

    cfg = {"wifi": {"ssid": q("Wi-Fi SSID"),
                    "password": getpass.getpass("Wi-Fi password: ")},
           "smtp": {"server": q("SMTP server"), "port": int(q("SMTP port", "587")),
                    "tls": q("TLS (starttls, implicit, none; empty: by port)") or None,
                    "username": q("SMTP user") or None,
                    "password": getpass.getpass("SMTP password (empty: none): ") or None,
                    "from": q("From address"), "to": [q("Send alerts to")],
                    "cadata": q("CA file on the board", "/ca.pem"),
                    "allow_plaintext_auth": False},
           "alert": {"threshold": float(q("Alert above (°C)", "85")), "hysteresis": 5.0,
                     "min_interval": 600, "subject": "Boiler at {value:.1f} °C",
                     "sensor": "internal"}}
    if not cfg["wifi"]["ssid"]:
        cfg.pop("wifi")
    return cfg


def run(args):
    from microsmtp_host import devconfig
    from microsmtp_host.cli import CLIError

    if not args.port and not args.output:
        raise CLIError("give --port (a board) and/or --output (a local file)")
    try:
        if args.file:
            cfg = devconfig.load(args.file, board=True)
        else:
            if not sys.stdin.isatty():
                raise CLIError("no --file and no terminal to ask on")
            cfg = ask()
            devconfig.check(cfg, board=True)
        output = devconfig.outside_repo(args.output) if args.output else None
    except devconfig.ConfigError as e:
        raise CLIError(str(e)) from None
    if args.ca:
        if not os.path.isfile(args.ca):
            raise CLIError("no CA file %s" % args.ca)
        cfg["smtp"]["cadata"] = "ca.pem"  # beside config.json on the board
    if output:
        try:
            devconfig.save(output, cfg)
        except OSError as e:
            raise CLIError("cannot write %s: %s" % (output, e.strerror or e)) from None
        print("wrote %s" % output)
    if args.port:
        with tempfile.TemporaryDirectory() as tmp:
            local = devconfig.save(os.path.join(tmp, "config.json"), cfg)
            # `resume`: the virtual board (unix port) has no soft reset; a real board does
            # not mind.
            cmd = [sys.executable, "-m", "mpremote", "connect", args.port, "resume",
                   "fs", "cp", str(local), ":config.json"]
            if args.ca:  # mpremote chains commands with "+"
                cmd += ["+", "fs", "cp", args.ca, ":ca.pem"]
            if args.dry_run:
                shown = [("<config>" if c == str(local) else c) for c in cmd]
                print(" ".join(shown))
                return 0
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode:
                last = (proc.stderr or proc.stdout).strip().splitlines()
                raise CLIError("mpremote failed: %s" % (last[-1] if last else proc.returncode))
        print("wrote config.json%s to the board on %s" % (" and ca.pem" if args.ca else "",
                                                          args.port))
    return 0
