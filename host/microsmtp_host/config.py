"""microsmtp config: write the device configuration to a board (or a local file).

From a local JSON file (--file) or by asking (passwords without echo; each answer checked
as it is given, and asked again when refused); checked with the firmware's own input checks;
written to the board as /config.json with mpremote. Never into the repository; local copies
are readable by their owner only (devconfig.save)."""

import getpass
import os
import sys
import tempfile


def add_parser(p):
    p.add_argument("--port", help="the board's serial device or the virtual board's pty")
    p.add_argument("--file", help="a local config file to use (docs/CONFIG.md)")
    p.add_argument("--output", help="also (or only, without --port) write it to this file")
    p.add_argument("--ca", help="a CA certificate file (PEM or DER) to put on the board as "
                   "ca.pem; the config's smtp.cadata then names it")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command only")


# Stand-ins for the answers not given yet while one answer is checked: each passes the
# checks, so whatever devconfig.check refuses is the answer just given (or its clash with an
# earlier one, such as a password without a user).
_PENDING = {"server": "smtp.example.org", "port": 587, "from": "board@example.org",
            "to": ["alerts@example.org"]}


def _number(text, kind):
    """kind(text), or the text itself when it is not one: the check then words the error."""
    try:
        return kind(text)
    except ValueError:
        return text


def ask():
    """The config by questions, each answer checked as it is given with the firmware's own
    rules (devconfig.check) and asked again when refused; passwords are not echoed."""
    from microsmtp_host import devconfig
    from microsmtp_host.cli import CLIError

    smtp = dict(_PENDING, tls=None, username=None, password=None, cadata="/ca.pem",
                allow_plaintext_auth=False)
    alert = {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
             "subject": "Boiler at {value:.1f} °C", "sensor": "internal"}
    cfg = {"smtp": smtp, "alert": alert}

    def q(section, key, prompt, default=None, convert=None, secret=False):
        shown = "%s%s: " % (prompt, " [%s]" % default if default is not None else "")
        while True:
            try:
                text = getpass.getpass(shown) if secret else input(shown).strip()
            except EOFError:
                raise CLIError("no answer to %r (end of input)" % prompt) from None
            value = (convert(text) if convert else text) if text else default
            before = section.get(key)
            section[key] = value
            try:
                devconfig.check(cfg, board=True)
                return value
            except devconfig.ConfigError as e:
                section[key] = before
                print("%s; please answer again." % e, file=sys.stderr)

    wifi = {"ssid": "", "password": None}
    ssid = q(wifi, "ssid", "Wi-Fi SSID (empty: none)")
    if ssid:
        cfg["wifi"] = wifi
        q(wifi, "password", "Wi-Fi password", secret=True)
    q(smtp, "server", "SMTP server")
    q(smtp, "port", "SMTP port", 587, lambda t: _number(t, int))
    q(smtp, "tls", "TLS (starttls, implicit, none; empty: by port)", convert=str.lower)
    q(smtp, "username", "SMTP user")
    q(smtp, "password", "SMTP password (empty: none)", secret=True)
    q(smtp, "from", "From address")
    q(smtp, "to", "Send alerts to", convert=lambda t: [t])
    q(smtp, "cadata", "CA file on the board", "/ca.pem")
    q(alert, "threshold", "Alert above (°C)", 85.0, lambda t: _number(t, float))
    return cfg


def run(args):
    from microsmtp_host import devconfig, mpremote_cmd
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
            cmd = ["fs", "cp", str(local), ":config.json"]
            if args.ca:  # mpremote chains commands with "+"
                cmd += ["+", "fs", "cp", args.ca, ":ca.pem"]
            if args.dry_run:
                print(mpremote_cmd.shown(args.port, *[("<config>" if c == str(local) else c)
                                                      for c in cmd]))
                return 0
            try:
                mpremote_cmd.run(args.port, *cmd)
            except mpremote_cmd.MpremoteError as e:
                # mpremote's own last line needs saying whose it is; "no such port: ..."
                # and "no answer within ..." do not.
                raise CLIError("mpremote failed: %s" % e if e.returncode is not None
                               else str(e)) from None
        print("wrote config.json%s to the board on %s" % (" and ca.pem" if args.ca else "",
                                                          args.port))
    return 0
