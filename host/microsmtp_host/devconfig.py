"""The device configuration (docs/CONFIG.md): load, check, save, and turn into Client
arguments.

Shared by `microsmtp config` (writes it to a board), `microsmtp send` (sends from this
computer with it), `microsmtp deploy`, the demo and hwtest. Checked by the firmware itself
(microsmtp.Client and Client.send, through the shim), so a value the board would refuse is
refused here, before it reaches a board. Saved readable by its owner only: it holds
passwords."""

import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TLS = {"starttls": 1, "implicit": 2, "none": 0, None: None}


class ConfigError(ValueError):
    pass


def load(path, board=False):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror)) from None
    except json.JSONDecodeError as e:
        raise ConfigError("%s is not valid JSON: %s" % (path, e)) from None
    check(cfg, board)
    return cfg


class _Offline:
    """A network whose every name lookup fails. Client.send checks all of its input before
    it opens a connection; on this network that is all it does: nothing is sent."""
    AF_INET, AF_INET6, SOCK_STREAM = 2, 10, 1

    @staticmethod
    def getaddrinfo(*args):
        raise OSError(-2, "offline: checking the config only")

    @staticmethod
    def socket(*args):
        raise OSError(-1, "offline: checking the config only")


# Client's parameter names that start its error messages, as the config names them.
_FIELDS = {"server": "server", "port": "port", "from_address": "from", "username": "username",
           "password": "password", "oauth_token": "oauth_token", "client_domain": "client_domain",
           "tls": "tls", "cadata": "cadata"}


def _smtp_error(e):
    """Client's message for a refused value, named as the config names the field."""
    text = str(e)
    word = text.split(" ", 1)[0]
    if word in _FIELDS:
        return "smtp.%s%s" % (_FIELDS[word], text[len(word):])
    return "smtp: %s" % text


def check(cfg, board=False):
    """ConfigError naming the field, for anything the firmware would refuse: the smtp
    section goes through microsmtp.Client(...) and Client.send (on a network that sends
    nothing), so exactly the firmware's own limits apply. board=True: the config is for
    the board apps, whose "alert" section is then needed."""
    from microsmtp_host import shim

    shim.install()
    import microsmtp

    if not isinstance(cfg, dict):
        raise ConfigError("the config must be a JSON object (docs/CONFIG.md)")
    smtp = cfg.get("smtp")
    if not isinstance(smtp, dict):
        raise ConfigError('the config needs an "smtp" section (docs/CONFIG.md)')
    for key in ("server", "from", "to"):
        if key not in smtp or smtp[key] is None:
            raise ConfigError('smtp.%s is missing' % key)
    if smtp.get("tls") not in TLS:
        raise ConfigError('smtp.tls must be "starttls", "implicit", "none" or null')
    kwargs = client_kwargs(cfg)
    cadata = kwargs["cadata"]
    if isinstance(cadata, str) and cadata and "-----BEGIN" not in cadata:
        kwargs["cadata"] = None  # a path on the board, not on this computer
    try:
        client = microsmtp.Client(smtp["server"], smtp.get("port", 25), net=_Offline,
                                  **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(_smtp_error(e)) from None
    alert = cfg.get("alert")
    subject = "microsmtp config check"
    if alert is not None or board:
        subject = check_alert(alert)
    for field, subj in (("smtp.to", "microsmtp config check"), ("alert.subject", subject)):
        try:
            client.send(smtp["to"], subj, "A body.\n", microsmtp.PRIORITY_HIGH)
        except microsmtp.SMTPError:
            pass  # past every input check: stopped at the lookup (or at TLS without a CA)
        except (ValueError, TypeError) as e:
            raise ConfigError("%s: %s" % (field, e)) from None
    wifi = cfg.get("wifi")
    if wifi is not None and not (isinstance(wifi, dict) and isinstance(wifi.get("ssid"), str)
                                 and wifi["ssid"]):
        raise ConfigError('wifi needs an "ssid"')
    check_outbox(cfg.get("outbox", {}))


# ticks_ms wraps on a board (2**30 ms): a later time reads as at most 2**29 - 1 ms away,
# so the board apps' min_interval must be shorter or it would never end.
_MAX_INTERVAL = ((1 << 29) - 1) // 1000


def check_alert(alert):
    """The board apps' "alert" section (docs/CONFIG.md): the numbers they compute with, and
    the subject formatted with the threshold (returned, for Client.send to check)."""
    if not isinstance(alert, dict):
        raise ConfigError('the config needs an "alert" section (docs/CONFIG.md)')
    inf = float("inf")
    for key, low, high in (("threshold", -inf, inf), ("hysteresis", 0, inf),
                           ("min_interval", 0, _MAX_INTERVAL), ("period", 0, inf)):
        if (key == "threshold" or key in alert) and not _number(alert.get(key), low, high):
            raise ConfigError("alert.%s must be a number%s" % (
                key, "" if low < 0 else " from 0 to %d" % high if high < inf else " >= 0"))
    readings = alert.get("max_readings")
    if readings is not None and not (isinstance(readings, int) and _number(readings, 0, inf)):
        raise ConfigError("alert.max_readings must be a whole number >= 0, or null")
    template = alert.get("subject", "Temperature at {value:.1f} °C")
    try:
        return template.format(value=alert["threshold"])
    except (AttributeError, KeyError, IndexError, ValueError) as e:
        raise ConfigError("alert.subject %r cannot be formatted (%r): {value} is the reading"
                          % (template, e)) from None


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


def save(path, cfg):
    """Write the config as JSON, readable by its owner only (mode 0600) whatever the file
    was before and whatever the umask: a new file beside it, made 0600 with O_EXCL, then
    renamed over it. Every host tool that writes a config (it may hold passwords) uses this."""
    path = Path(path)
    data = json.dumps(cfg, indent=1, ensure_ascii=False).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # mkstemp's 0600 less the umask: exactly 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
