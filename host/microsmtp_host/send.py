"""microsmtp send: one test mail from this computer, with the firmware's own code (through
the CPython shim) and the board's config — to check the settings before deploying."""


def add_parser(p):
    p.add_argument("--config", required=True, help="the device config (docs/CONFIG.md)")
    p.add_argument("--cadata", help="a CA file on this computer, when the config's cadata "
                   "is a path on the board")
    p.add_argument("--to", action="append", help="recipient (default: the config's smtp.to)")
    p.add_argument("--subject", default="microsmtp test", help="subject")
    p.add_argument("--body", default="A test mail sent by microsmtp send.\n", help="body")
    p.add_argument("--verbose", action="store_true", help="print the SMTP transcript: each "
                   "command and reply line, control characters escaped, AUTH secrets masked")


def transcript(direction, line):
    """Client(trace=...) for --verbose: one line of the session, as the server cannot
    abuse it (its bytes escaped: no terminal control sequence gets through)."""
    from microsmtp_host.probe import printable

    print("%s %s" % (direction, printable(line)), flush=True)


def run(args):
    from pathlib import Path

    from microsmtp_host import devconfig, shim
    from microsmtp_host.cli import CLIError

    try:
        cfg = devconfig.load(args.config)
    except devconfig.ConfigError as e:
        raise CLIError(str(e)) from None
    shim.install()
    import microsmtp

    from microsmtp_host.shim import net

    smtp = cfg["smtp"]
    cadata = args.cadata
    if cadata is None and smtp.get("cadata") and not Path(smtp["cadata"]).exists():
        raise CLIError("the config's cadata %r is not on this computer: pass --cadata FILE"
                       % smtp["cadata"])
    try:
        client = microsmtp.Client(smtp["server"], smtp.get("port", 25), net=net,
                                  trace=transcript if args.verbose else None,
                                  **devconfig.client_kwargs(cfg, cadata))
        to = args.to or (smtp["to"] if isinstance(smtp["to"], list) else [smtp["to"]])
        client.send(to, args.subject, args.body)
    except ValueError as e:
        raise CLIError(str(e)) from None
    except microsmtp.SMTPError as e:
        raise CLIError("not sent: %s (status 0x%02X)" % (e, e.status)) from None
    print("sent to %s via %s:%d" % (", ".join(to), smtp["server"], smtp.get("port", 25)))
    return 0
