"""The device configuration (docs/CONFIG.md): load, check, and turn into Client arguments.

Shared by `microsmtp config` (writes it to a board), `microsmtp send` (sends from this
computer with it) and the demo. Checked with the firmware's own input checks, so a bad
value is refused here, before it reaches a board."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TLS = {"starttls": 1, "implicit": 2, "none": 0, None: None}


class ConfigError(ValueError):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror)) from None
    except json.JSONDecodeError as e:
        raise ConfigError("%s is not valid JSON: %s" % (path, e)) from None
    check(cfg)
    return cfg


def check(cfg):
    """ConfigError naming the field, for anything a send would refuse."""
    from microsmtp_host import shim

    shim.install()
    from microsmtp import message

    smtp = cfg.get("smtp")
    if not isinstance(smtp, dict):
        raise ConfigError('the config needs an "smtp" section (docs/CONFIG.md)')
    for key in ("server", "from", "to"):
        if not smtp.get(key):
            raise ConfigError('smtp.%s is missing' % key)
    if smtp.get("tls") not in TLS:
        raise ConfigError('smtp.tls must be "starttls", "implicit", "none" or null')
    port = smtp.get("port", 25)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("smtp.port must be a number from 1 to 65535")
    to = smtp["to"] if isinstance(smtp["to"], list) else [smtp["to"]]
    try:
        message.check(smtp["server"], "smtp.server")
        message.check(smtp["from"], "smtp.from", message.ADDRESS)
        for rcpt in to:
            message.check(rcpt, "smtp.to", message.ADDRESS)
        for key in ("username", "password", "oauth_token"):
            if smtp.get(key) is not None:
                message.check(smtp[key], "smtp." + key, message.TEXT, 8000)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    wifi = cfg.get("wifi")
    if wifi is not None and not (isinstance(wifi, dict) and wifi.get("ssid")):
        raise ConfigError('wifi needs an "ssid"')
    check_outbox(cfg.get("outbox", {}))


def _number(value, low, high):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        low <= value <= high


def check_outbox(box):
    """The board apps' "outbox" section (docs/CONFIG.md), with the Outbox's own limits."""
    if not isinstance(box, dict):
        raise ConfigError('"outbox" must be an object (docs/CONFIG.md)')
    path = box.get("path", "outbox")
    if not isinstance(path, str) or not path.strip("/"):
        raise ConfigError("outbox.path must be a folder name on the board, such as \"outbox\"")
    for key, low, high in (("max_messages", 1, 10000), ("max_bytes", 256, 1 << 30)):
        if key in box and not (isinstance(box[key], int) and _number(box[key], low, high)):
            raise ConfigError("outbox.%s must be a whole number from %d to %d"
                              % (key, low, high))
    if box.get("when_full", "drop_oldest") not in ("drop_oldest", "refuse_new"):
        raise ConfigError('outbox.when_full must be "drop_oldest" or "refuse_new"')
    if "retry" in box and not (_number(box["retry"], 0, 3600) and box["retry"] > 0):
        raise ConfigError("outbox.retry must be more than 0 and at most 3600 seconds")


def client_kwargs(cfg, cadata=None):
    """Client(...) keyword arguments from the smtp section; cadata: a local override."""
    smtp = cfg["smtp"]
    return dict(from_address=smtp["from"], username=smtp.get("username"),
                password=smtp.get("password"), oauth_token=smtp.get("oauth_token"),
                client_domain=smtp.get("client_domain"), tls=TLS[smtp.get("tls")],
                cadata=cadata if cadata is not None else smtp.get("cadata"),
                allow_plaintext_auth=bool(smtp.get("allow_plaintext_auth")))


def outside_repo(path):
    """Secrets never go into the repository: refuse a path inside it."""
    path = Path(path).resolve()
    if path == ROOT or ROOT in path.parents:
        raise ConfigError("%s is inside the repository; keep secrets elsewhere" % path)
    return path
