"""What the host tools' tests share (tests/test_host_tools.py, tests/test_trace.py): a
command's parsed arguments, a device config.json for `microsmtp send`, and a hostile server
script whose every reply is full of terminal escapes."""

import argparse


def parse(module, argv):
    p = argparse.ArgumentParser()
    module.add_parser(p)
    return p.parse_args(argv)


def device_config(port, **smtp):
    base = {"server": "127.0.0.1", "port": port, "tls": "none", "username": "alice",
            "password": "s3cret", "from": "boiler@example.org", "to": ["ops@example.org"],
            "allow_plaintext_auth": True}
    base.update(smtp)
    return {"wifi": {"ssid": "home", "password": "x"}, "smtp": base,
            "alert": {"threshold": 85.0, "hysteresis": 5.0, "min_interval": 600,
                      "subject": "Boiler at {value:.1f} C", "sensor": "simulated"}}


HOSTILE = (b"\x1b]0;owned\x07"                   # window title
           b"\x1b[2J\x1b[H"                      # clear screen, cursor home
           b"\x1b]52;c;ZXZpbA==\x07"             # OSC 52: write the clipboard
           b"\r\x1b[2KTLS: STARTTLS (verified)"  # a faked report line over this one
           b"\x9b31m caf\xc3\xa9 back\\slash")   # C1 CSI, UTF-8, a backslash


def hostile_smtp(conn, stop):
    reader = conn.makefile("rb")
    conn.sendall(b"220 mx.example " + HOSTILE + b"\r\n")
    reader.readline()  # EHLO
    conn.sendall(b"250-mx.example\r\n250-AUTH PLAIN " + HOSTILE + b"\r\n250 SIZE 1000\r\n")
    reader.readline()  # QUIT
    conn.sendall(b"221 bye\r\n")


def only_printable(text):
    return all(c == "\n" or " " <= c <= "~" for c in text)
