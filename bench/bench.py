"""make bench: heap and throughput of microsmtp on the MicroPython unix port and CPython.

Never part of `make test`: tests assert behaviour, this reports numbers (README table).
Server: aiosmtpd on loopback with AUTH PLAIN (the receiving side costs time too; the
numbers compare runs on one machine, not boards). Heap minimums are found by bisection on
-X heapsize, for code run from emulated flash (ROMFS, as a board runs frozen code) and for
.mpy files imported into RAM (as from a board's filesystem)."""

import json
import secrets
import ssl
import sys
import tempfile
import time
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from microsmtp_host import shim, unixport  # noqa: E402

shim.install()

import microsmtp  # noqa: E402
from microsmtp_host.shim import net  # noqa: E402

PASSWORD = secrets.token_urlsafe(12)
MPY = ROOT / "build" / "mpy"


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"bench" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def micropython_run(work, port, body_file, repeat, heap, rom=True, tls=None):
    cfg = work / "bench.json"
    cfg.write_text(json.dumps(dict(tls or {}, port=port, body_file=str(body_file),
                                   repeat=repeat, password=PASSWORD)))
    drv = unixport.compile_mpy([ROOT / "bench" / "mp_bench.py"], work / "drv")
    trees = [MPY, drv]
    proc = unixport.run("mp_bench", [str(cfg)], heap=heap, rom=trees if rom else (),
                        path=() if rom else trees, timeout=600, work=work / "rt")
    rows = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return rows if len(rows) == repeat and all(r["pool_full"] for r in rows) else None


def smallest_heap(work, port, body_file, rom, tls=None):
    lo, hi = 8, 256  # KB: lo fails, hi passes
    if not micropython_run(work, port, body_file, 1, "%dK" % hi, rom, tls):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if micropython_run(work, port, body_file, 1, "%dK" % mid, rom, tls):
            hi = mid
        else:
            lo = mid
    return hi


def main():
    handler = Sink()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                     auth_require_tls=False, data_size_limit=0)
    ctl.start()
    # STARTTLS with a certificate from a CA made here (ECDSA P-256, trustme's default; an
    # RSA-2048 chain from a public provider takes more heap to verify).
    ca = trustme.CA()
    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls_ctx)
    tls_port = free_port()
    tls_ctl = Controller(handler, hostname="127.0.0.1", port=tls_port,
                         authenticator=authenticator, tls_context=tls_ctx,
                         require_starttls=True, data_size_limit=0)
    tls_ctl.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            bodies = {}
            for name, size in (("1 KB", 1024), ("100 KB", 100 * 1024), ("1 MB", 1 << 20)):
                path = work / ("body-%d.txt" % size)
                line = b"temperature=92.4C pressure=1.8bar burner=on flame=ok .\n"
                path.write_bytes((line * (size // len(line) + 1))[:size])
                bodies[name] = path
            rows = []
            for name in ("1 KB", "1 MB"):
                runs = micropython_run(work, port, bodies[name], 3, "256K")
                alloc = runs[-1]["alloc"]
                ms = min(r["ms"] for r in runs)
                size = bodies[name].stat().st_size
                rows.append(("MicroPython unix port, body from a file, %s" % name,
                             "%d B" % alloc, "%d ms" % ms,
                             "%.1f MB/s" % (size / 1e6 / (ms / 1000)) if size > 1e5 else "-"))
            client = microsmtp.Client("127.0.0.1", port, from_address="bench@example.org",
                                      username="bench", password=PASSWORD, net=net,
                                      client_domain="bench.example.org",
                                      allow_plaintext_auth=True)
            for name in ("1 KB", "1 MB"):
                best = None
                for _ in range(3):
                    with open(bodies[name], "rb") as f:
                        t0 = time.perf_counter()
                        client.send("sink@example.org", "bench", f)
                        dt = time.perf_counter() - t0
                    best = dt if best is None else min(best, dt)
                size = bodies[name].stat().st_size
                rows.append(("CPython 3.11 (shim), body from a file, %s" % name, "-",
                             "%d ms" % (best * 1000),
                             "%.1f MB/s" % (size / 1e6 / best) if size > 1e5 else "-"))
            rom = smallest_heap(work, port, bodies["100 KB"], rom=True)
            ram = smallest_heap(work, port, bodies["100 KB"], rom=False)
            ca_file = work / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            tls = {"server": "localhost", "tls": 1, "cadata": str(ca_file)}
            runs = micropython_run(work, tls_port, bodies["1 KB"], 3, "256K", tls=tls)
            rows.append(("MicroPython unix port, STARTTLS + AUTH, 1 KB", "%d B" % runs[-1][
                "alloc"], "%d ms" % min(r["ms"] for r in runs), "-"))
            tls_rom = smallest_heap(work, tls_port, bodies["100 KB"], rom=True, tls=tls)
            tls_ram = smallest_heap(work, tls_port, bodies["100 KB"], rom=False, tls=tls)
        print("| run | heap allocated per message (mem_total delta) | time per message | "
              "body throughput |")
        print("|---|---|---|---|")
        for row in rows:
            print("| %s | %s | %s | %s |" % row)
        print()
        print("Smallest -X heapsize completing an AUTH PLAIN send of a 100 KB body:")
        print("- code in flash (ROMFS, as frozen): %sK" % rom)
        print("- .mpy imported into RAM:           %sK" % ram)
        print("Smallest -X heapsize completing a STARTTLS + AUTH PLAIN send of a 100 KB body:")
        print("- code in flash (ROMFS, as frozen): %sK" % tls_rom)
        print("- .mpy imported into RAM:           %sK" % tls_ram)
        print("(%d messages received by the sink)" % handler.count)
    finally:
        ctl.stop()
        tls_ctl.stop()


if __name__ == "__main__":
    main()
