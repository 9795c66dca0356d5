"""One send, from CPython through the shim or from the MicroPython unix port (firmware as
.mpy, capped heap, tests/mp_send.py as the app), and the checks on what a server received.
A send's settings are one dict, `cfg` (mp_send.py's keys); the result is one dict per send:
status, step, reply_code, error (and repr, reply on a failure), elapsed, pool_full."""

import email
import email.policy
import json
import os
import re
import time

import microsmtp
import runtimes
from microsmtp_host.shim import net
from servers import PASSWORD, RCPT, SENDER, USER

RUNTIMES = ("cpython", "micropython")

# The code runs from emulated flash (ROMFS) with runtimes.HEAP, as a board runs frozen code;
# runtime "micropython-ram" (or MICROSMTP_TEST_RAM=1 for every test) imports the .mpy files
# into the heap instead (a board's filesystem), with runtimes.RAM_HEAP.
IN_RAM = os.environ.get("MICROSMTP_TEST_RAM") == "1"


def config(srv, options):
    """cfg for a send to `srv` (.host, .port) with tests/test_integration.py's options: host,
    port, to, subject, username, password, auth, client_domain, body (text, or a path: the
    body streamed from that file), timeouts, repeat (sends on one client)."""
    body = options.get("body", "Pressure low.\n")
    cfg = {
        "server": options.get("host", getattr(srv, "host", "127.0.0.1")),
        "port": options.get("port", getattr(srv, "port", 25)),
        "from": SENDER,
        "to": options.get("to", [RCPT]),
        "subject": options.get("subject", "Boiler alert"),
        "username": options.get("username", USER),
        "password": options.get("password", PASSWORD),
        "auth": options.get("auth", "PLAIN"),
        "client_domain": options.get("client_domain", "boiler.example.com"),
        "body_file": str(body) if hasattr(body, "read_bytes") else None,
        "body": None if hasattr(body, "read_bytes") else body,
        "timeouts": options.get("timeouts"),
        "repeat": options.get("repeat", 1),
    }
    if cfg["username"] is None:
        cfg["password"] = None
    return cfg


def send_cpython(cfg):
    """cfg's sends (cfg["repeat"] of them, on one Client) on CPython: a result each. The body
    is cfg["body_file"] streamed, or cfg["body"] (text, or chunks of an iterator)."""
    client = microsmtp.Client(
        cfg["server"], cfg["port"], from_address=cfg["from"], username=cfg["username"],
        password=cfg["password"], client_domain=cfg["client_domain"],
        auth=getattr(microsmtp, "AUTH_" + cfg["auth"]), timeouts=cfg["timeouts"],
        net=net, tls=cfg.get("tls"), cadata=cfg.get("cadata"),
        insecure=cfg.get("insecure", False), oauth_token=cfg.get("oauth_token"),
        allow_plaintext_auth=cfg.get("allow_plaintext_auth", True))
    results = []
    for _ in range(cfg.get("repeat", 1)):
        res = {"status": 0, "step": None, "reply_code": None, "error": None}
        started = time.monotonic()
        f = open(cfg["body_file"], "rb") if cfg.get("body_file") else None
        try:
            client.send(cfg["to"], cfg["subject"], f or cfg["body"])
        except microsmtp.SMTPError as e:
            res = {"status": e.status, "step": e.step, "reply_code": e.reply_code,
                   "error": str(e), "repr": repr(e), "reply": e.reply}
        finally:
            if f:
                f.close()
        res["elapsed"] = time.monotonic() - started
        res["client_repr"] = repr(client)
        res["pool_full"] = client.pool.available() == client.pool.count
        results.append(res)
    return results


def send_micropython(cfg, mp_dir, tmp_path, heap=None, in_ram=False, timeout=30):
    """cfg's sends on the unix port (mp_dir: tests/mp_send.py compiled, the mp_send_dir
    fixture): a result each. heap: runtimes.HEAP (RAM_HEAP in_ram) unless given; in_ram:
    the .mpy files imported into the heap instead of emulated flash."""
    if cfg.get("body") and len(cfg["body"]) > 256:  # a big in-memory body: from its own file
        text = tmp_path / "body.txt"
        text.write_bytes(cfg["body"].encode())  # as is: no newline translation
        cfg = dict(cfg, body=None, body_text_file=str(text))
    path = tmp_path / "mp_send.json"
    path.write_text(json.dumps(cfg))
    heap = heap or (runtimes.RAM_HEAP if in_ram else runtimes.HEAP)
    started = time.monotonic()
    proc = runtimes.run_micropython("mp_send", [str(path)], [mp_dir, runtimes.firmware_mpy()],
                                    timeout=timeout, heap=heap, rom=not in_ram)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == cfg.get("repeat", 1), "MicroPython (heap %s%s) exit %d: %s" % (
        heap, " in RAM" if in_ram else "", proc.returncode,
        (proc.stderr or proc.stdout)[-2000:])
    for res in results:  # process start-up included: an upper bound only
        res["elapsed"] = time.monotonic() - started
    return results


# --- checks on what the server received ------------------------------------------------------

def normalised(body):
    """The body as it must arrive: every CR, LF and CRLF as CRLF, and a final CRLF."""
    if isinstance(body, str):
        body = body.encode()
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def parse(content):
    """A received message, parsed; no bare CR or LF anywhere in what the server took (RFC
    5321 §2.3.8, SMTP smuggling)."""
    bare = content.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare, "a bare CR or LF reached the server"
    return email.message_from_bytes(content, policy=email.policy.default)
