"""make bench: microsmtp beside smtplib, aiosmtplib and Postfix's smtp-source, in one run.

Never part of `make test`: tests assert behaviour, this reports numbers. Writes
build/bench.json (every figure, how it was made, the machine), build/bench.png (ratios) and
README's generated tables (between the bench markers; --no-readme leaves README alone).

Servers, all on loopback: Postfix's smtp-sink (C, so the times are the client's) for the
speed figures, behind a 25 ms-each-way delay proxy (bench/delay_proxy.py) for the round
trips; aiosmtpd where AUTH PLAIN is needed (smtp-sink answers AUTH with 250, not 235).
microsmtp runs on the MicroPython unix port (bench/mp_bench.py, .mpy imported into RAM or
executed in place from emulated flash, ROMFS) and on CPython through the shim."""

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import secrets
import shutil
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from email.utils import formatdate, make_msgid
from importlib.metadata import version
from pathlib import Path

import aiosmtplib
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "host"))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from microsmtp_host import shim, unixport  # noqa: E402

shim.install()
# aiosmtpd logs every handshake a starved heap breaks off (expected while bisecting) and a
# deprecation of its own on every AUTH: neither is news here.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

import microsmtp  # noqa: E402
from microsmtp_host.shim import net  # noqa: E402

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
OUT = ROOT / "build"
N = 200  # messages per ms/message batch: smtp-source's process start shrinks to noise
BATCHES = 5  # ms/message is the median batch's: a shared machine has slow moments
N_PROXY = 10  # through the proxy each message takes ~6 round trips of 50 ms
N_BIG = 3  # 10 MB sends per MB/s figure
N_ATTACH = 20  # mails with a 100 KB attachment per ms figure
DELAY_MS = 25  # each way: a round trip costs 50 ms
MP_HEAP = "256K"  # the unix port's heap for its timed runs (bisection finds the minimums)
HEAP_LO, HEAP_HI = 8, 256  # KB: the bisection's bounds (lo fails, hi must pass)
SIZES = {"1kb": 1024, "100kb": 100 * 1024, "1mb": 1 << 20, "10mb": 10 << 20}
FROM, RCPT, HELO = "bench@example.org", "sink@example.org", "bench.example.org"
PASSWORD = secrets.token_urlsafe(12)
NO_SESSION = "n/a (no session API yet)"

METHODS = {
    "ms_per_message": "Batches of %d messages with a 1 KB body read from a file (every "
    "client reads it for every message) to smtp-sink; the median of %d batches' total wall "
    "time / %d, after one warm-up message (the unix port times inside its process, after its "
    "import; smtp-source is timed as a whole process, without warm-up). new_connection: "
    "connect ... QUIT for each message; one_session: a batch on one connection."
    % (N, BATCHES, N),
    "round_trips": "(ms/message through a proxy that delays each direction %d ms, one "
    "batch of %d messages, minus ms/message direct) / %d ms. The greeting counts half a "
    "round trip."
    % (DELAY_MS, N_PROXY, 2 * DELAY_MS),
    "mb_per_s": "10 MB body (10 x 2^20 bytes of text lines) read from a file: body bytes / "
    "10^6 / mean wall time of one whole send (connect ... QUIT, file reading included), %d "
    "sends after one warm-up (smtp-source: -F with the same body, %d sends)." % (N_BIG, N_BIG),
    "alloc_bytes": "MicroPython only: micropython.mem_total() delta around the second send "
    "on one Client, after gc.collect(); body from a file.",
    "heap_bytes": "MicroPython only: gc.mem_alloc() after gc.collect(); import = after minus "
    "before `import microsmtp`, client = after Client(...) minus after the import; modules = "
    "each module's import alone (bench/mp_modules.py, over a copy of the package with an empty "
    "__init__, modules imported in dependency order; README's __init__ row is the import "
    "minus the plain path's modules).",
    "min_heapsize_kb": "MicroPython only: bisection on -X heapsize in 1 KB steps between "
    "%dK and %dK: the smallest heap in which bench/mp_bench.py (sharing that heap) completes "
    "one send with every pool buffer back. plain_1kb: smtp-sink, no AUTH, 1 KB body; "
    "auth_100kb: aiosmtpd, AUTH PLAIN, 100 KB body from a file; starttls_auth_100kb: the "
    "same over STARTTLS with an ECDSA P-256 certificate checked. The driver's config (its "
    "paths) and the interned-name pools can move a minimum by a kilobyte between runs."
    % (HEAP_LO, HEAP_HI),
    "aio": "The microsmtp.aio column: bench/mp_bench_aio.py, the same figures with the "
    "asyncio client, .mpy in RAM, every send awaited inside one asyncio.run (as in an app); "
    "its import figure is `import asyncio`, `import microsmtp` and `from microsmtp import "
    "aio` together, and its smallest heaps hold asyncio's scheduler too.",
    "mpy_bytes": "Sizes of build/mpy/microsmtp/*.mpy as `make mpy` builds them for the unix "
    "port (mpy-cross -O3, x64 for native code: a board's architecture gives other sizes for "
    "@micropython.viper functions): package = all of them; plain_path = the modules in "
    "sys.modules after a plain send on the unix port.",
}


# --- servers ---------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what):
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError("%s exited %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not listen on port %d" % (what, port))
            time.sleep(0.02)


@contextmanager
def process(cmd, **kw):
    """A server process, ended (terminate, then kill) however the bench ends."""
    proc = subprocess.Popen(cmd, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def smtp_sink():
    """smtp-sink on a free port, AUTH not announced (-a): every client sends plainly."""
    port = free_port()  # smtp-sink cannot take port 0
    cmd = [SINK] + (["-u", "nobody"] if os.geteuid() == 0 else [])  # it refuses root
    with process(cmd + ["-a", "127.0.0.1:%d" % port, "256"], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL) as proc:
        wait_listening(port, proc, "smtp-sink")
        yield port


@contextmanager
def delay_proxy(target_port):
    """bench/delay_proxy.py in its own process; yields its port."""
    with process([sys.executable, str(HERE / "delay_proxy.py"), str(target_port),
                  str(DELAY_MS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 text=True) as proc:
        port = int(proc.stdout.readline())
        wait_listening(port, proc, "delay_proxy")
        try:
            yield port
        finally:
            proc.stdin.close()  # its signal to stop; process() terminates it otherwise


class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"bench" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@contextmanager
def aiosmtpd_servers(work):
    """(AUTH PLAIN port, STARTTLS + AUTH PLAIN port, CA file) on aiosmtpd."""
    # A CA made here (ECDSA P-256, trustme's default): an RSA-2048 chain from a public
    # provider takes more heap to verify.
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ca_file = work / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain = Controller(Discard(), hostname="127.0.0.1", port=free_port(),
                       authenticator=authenticator, auth_require_tls=False, data_size_limit=0)
    tls = Controller(Discard(), hostname="127.0.0.1", port=free_port(),
                     authenticator=authenticator, tls_context=ctx, require_starttls=True,
                     data_size_limit=0)
    plain.start()
    try:
        tls.start()
        try:
            yield plain.port, tls.port, ca_file
        finally:
            tls.stop()
    finally:
        plain.stop()


# --- bodies ----------------------------------------------------------------------------------

def write_bodies(work):
    """{size key: (body file, the same body with headers for smtp-source -F)}."""
    line = b"temperature=92.4C pressure=1.8bar burner=on flame=ok .\n"
    head = ("From: %s\nTo: %s\nSubject: bench\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n\n" % (FROM, RCPT)).encode()
    bodies = {}
    for key, size in SIZES.items():
        body = (line * (size // len(line) + 1))[:size]
        path = work / ("body-%s.txt" % key)
        path.write_bytes(body)
        eml = work / ("source-%s.eml" % key)
        eml.write_bytes(head + body)
        bodies[key] = (path, eml)
    return bodies


def message(body_file):
    """What a smtplib or aiosmtplib user sends: headers like microsmtp's, the body file."""
    head = ("From: %s\r\nTo: %s\r\nSubject: bench\r\nDate: %s\r\nMessage-ID: %s\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            % (FROM, RCPT, formatdate(), make_msgid(domain=HELO)))
    return head.encode() + Path(body_file).read_bytes()


# --- the clients on CPython ------------------------------------------------------------------
# Each: new(port, body, n) sends n messages on n connections; session(port, body, n) on one
# connection, or the reason it cannot (a string). body = (body file, smtp-source's file).

class MicrosmtpCPython:
    def client(self, port):
        return microsmtp.Client("127.0.0.1", port, from_address=FROM, client_domain=HELO,
                                net=net)

    def new(self, port, body, n):
        c = self.client(port)
        for _ in range(n):
            with open(body[0], "rb") as f:
                c.send(RCPT, "bench", f)

    def session(self, port, body, n):
        c = self.client(port)
        if not hasattr(c, "session"):  # client.session() lands later in issue 10
            return NO_SESSION
        try:  # assumed shape: a context manager with Client.send; if not, say so
            with c.session() as s:
                for _ in range(n):
                    with open(body[0], "rb") as f:
                        s.send(RCPT, "bench", f)
        except Exception as e:
            return "error: %r" % e


class Smtplib:
    def new(self, port, body, n):
        for _ in range(n):
            with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO) as s:
                s.sendmail(FROM, [RCPT], message(body[0]))

    def session(self, port, body, n):
        with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO) as s:
            for _ in range(n):
                s.sendmail(FROM, [RCPT], message(body[0]))


class Aiosmtplib:
    def connect(self, port):
        return aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname=HELO,
                               use_tls=False, start_tls=False)

    async def _new(self, port, body, n):
        for _ in range(n):
            async with self.connect(port) as s:
                await s.sendmail(FROM, [RCPT], message(body[0]))

    async def _session(self, port, body, n):
        async with self.connect(port) as s:
            for _ in range(n):
                await s.sendmail(FROM, [RCPT], message(body[0]))

    def new(self, port, body, n):
        asyncio.run(self._new(port, body, n))

    def session(self, port, body, n):
        asyncio.run(self._session(port, body, n))


class SmtpSource:
    """Postfix's C load generator: the floor. One process per figure, timed whole."""
    warm = False

    def run(self, port, body, n, *extra):
        subprocess.run([SOURCE, *extra, "-m", str(n), "-s", "1", "-F", str(body[1]),
                        "-M", HELO, "-f", FROM, "-t", RCPT, "127.0.0.1:%d" % port],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)

    def new(self, port, body, n):
        self.run(port, body, n)

    def session(self, port, body, n):
        self.run(port, body, n, "-d")  # -d: the next message on the same connection


def ms_per_message(fn, port, body, n, warm=True, batches=1):
    """Wall ms per message of fn(port, body, n), the median of `batches` runs after one
    warm-up message; or fn's reason it cannot."""
    if warm:
        note = fn(port, body, 1)
        if isinstance(note, str):
            return note
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        note = fn(port, body, n)
        if isinstance(note, str):
            return note
        times.append((time.perf_counter() - t0) * 1000 / n)
    return statistics.median(times)


def bench_python(client, sink, proxy, bodies):
    """A CPython client's speed figures (dict as in build/bench.json)."""
    warm = getattr(client, "warm", True)
    figures = {"ms_per_message": {}, "round_trips": {}, "notes": {}}
    for mode in ("new_connection", "one_session"):
        fn = client.new if mode == "new_connection" else client.session
        direct = ms_per_message(fn, sink, bodies["1kb"], N, warm, BATCHES)
        if isinstance(direct, str):
            figures["notes"][mode] = direct
            continue
        slow = ms_per_message(fn, proxy, bodies["1kb"], N_PROXY, warm)
        figures["ms_per_message"][mode] = direct
        figures["round_trips"][mode] = (slow - direct) / (2 * DELAY_MS)
    ms = ms_per_message(client.new, sink, bodies["10mb"], N_BIG, warm)
    figures["mb_per_s"] = {"10mb": SIZES["10mb"] / 1e6 / (ms / 1000)}
    return figures


# --- microsmtp on the MicroPython unix port --------------------------------------------------

class UnixPort:
    """Runs bench/mp_bench.py on the unix port, the code in RAM (rom=False) or ROMFS."""

    def __init__(self, work, rom, aio=False):
        self.work = work
        self.rom = rom
        self.aio = aio  # microsmtp.aio's client: bench/mp_bench_aio.py drives it
        self.driver = "mp_bench_aio" if aio else "mp_bench"
        self.trees = [unixport.firmware_mpy(),
                      unixport.compile_mpy([HERE / "mp_bench.py", HERE / "mp_timed.py",
                                            HERE / "mp_bench_aio.py",
                                            HERE / "mp_bench_attach.py"], work / "driver")]

    def run(self, cfg, heap=MP_HEAP, driver=None):
        """The driver's output lines merged into one dict; None if it failed."""
        run_dir = Path(tempfile.mkdtemp(dir=self.work))
        cfg_file = run_dir / "cfg.json"
        cfg_file.write_text(json.dumps(dict(cfg, password=PASSWORD)))
        proc = unixport.run(driver or self.driver, [str(cfg_file)], heap=heap, timeout=600,
                            rom=self.trees if self.rom else (),
                            path=() if self.rom else self.trees, work=run_dir / "rt")
        shutil.rmtree(run_dir, ignore_errors=True)
        out = {}
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                out.update(json.loads(line))
        if proc.returncode != 0 or not out.get("pool_full"):
            out["failed"] = (proc.stderr or proc.stdout)[-400:]
        return out

    def checked(self, cfg, driver=None):
        out = self.run(cfg, driver=driver)
        if "failed" in out:
            raise RuntimeError("mp_bench %s failed: %s" % (cfg, out["failed"]))
        return out

    def smallest_heap(self, cfg):
        """Smallest -X heapsize in KB (1 KB steps) completing one send; None above HEAP_HI."""
        lo, hi = HEAP_LO, HEAP_HI
        if "failed" in self.run(dict(cfg, warm=1), "%dK" % hi):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if "failed" in self.run(dict(cfg, warm=1), "%dK" % mid):
                lo = mid
            else:
                hi = mid
        return hi


def import_by_module(work, rom):
    """{module: heap bytes its import holds} (bench/mp_modules.py), over a copy of the
    package with an empty __init__ (the real one imports the plain path at once)."""
    tree = work / ("parts-rom" if rom else "parts-ram")
    package = tree / "microsmtp"
    package.mkdir(parents=True)
    for mpy in (unixport.firmware_mpy() / "microsmtp").glob("*.mpy"):
        if mpy.stem != "__init__":
            shutil.copy(mpy, package)
    empty = work / "empty" / "microsmtp" / "__init__.py"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text("")
    unixport.compile_mpy([empty], package, module_names=True)
    driver = unixport.compile_mpy([HERE / "mp_modules.py"], work / "modules-driver")
    trees = [tree, driver]
    proc = unixport.run("mp_modules", heap=MP_HEAP, rom=trees if rom else (),
                        path=() if rom else trees, work=work / ("rt-" + tree.name))
    if proc.returncode != 0:
        raise RuntimeError("mp_modules failed: " + (proc.stderr or proc.stdout)[-400:])
    return json.loads(proc.stdout.strip().splitlines()[-1])["modules"]


def bench_micropython(port, sink, proxy, bodies):
    """Speed and memory figures of microsmtp on the unix port (one code placement), and the
    driver's report of its plain 1 KB run (version, modules)."""
    base = {"port": sink, "body_file": str(bodies["1kb"][0]), "warm": 2}
    direct = port.checked(dict(base, count=N, batches=BATCHES, session=True))
    slow = port.checked(dict(base, port=proxy, warm=1, count=N_PROXY, session=True))
    big = port.checked(dict(base, body_file=str(bodies["10mb"][0]), warm=1, count=N_BIG))
    one_mb = port.checked(dict(base, body_file=str(bodies["1mb"][0])))
    # Issue 14: the 1 KB alert with a 100 KB attachment (blocking client only).
    attach = None if port.aio else port.checked(
        dict(base, attach_file=str(bodies["100kb"][0]), count=N_ATTACH),
        driver="mp_bench_attach")
    figures = {"ms_per_message": {}, "round_trips": {}, "notes": {},
               "alloc_bytes": {"1kb": direct["alloc"], "1mb": one_mb["alloc"],
                               "attach_100kb": attach and attach["alloc"]},
               "heap_bytes": {"import": direct["heap"][1] - direct["heap"][0],
                              "client": direct["heap"][2] - direct["heap"][1],
                              # (per module: the blocking client's ports measure it)
                              "modules": {} if port.aio else import_by_module(port.work,
                                                                              port.rom)},
               "mb_per_s": {"10mb": SIZES["10mb"] / 1e6 / (big["new_total_ms"][0] / N_BIG
                                                           / 1000)}}
    for mode, key in (("new_connection", "new_total_ms"), ("one_session", "session_total_ms")):
        if key not in direct:  # the driver says why: no session API yet, or its error
            figures["notes"][mode] = direct.get("session", "not reported")
            continue
        ms = statistics.median(direct[key]) / N
        figures["ms_per_message"][mode] = ms
        figures["round_trips"][mode] = (slow[key][0] / N_PROXY - ms) / (2 * DELAY_MS)
    if attach:
        figures["ms_per_message"]["attach_100kb"] = attach["new_total_ms"][0] / N_ATTACH
    return figures, direct


def heap_minimums(ports, sink, auth_port, tls_port, ca_file, bodies):
    """{placement: {plain_1kb, auth_100kb, starttls_auth_100kb: KB}}, two bisections at once
    (no timing runs meanwhile: heap figures do not depend on the machine's load)."""
    cases = {
        "plain_1kb": {"port": sink, "body_file": str(bodies["1kb"][0])},
        "auth_100kb": {"port": auth_port, "body_file": str(bodies["100kb"][0]), "auth": 1},
        "starttls_auth_100kb": {"port": tls_port, "body_file": str(bodies["100kb"][0]),
                                "auth": 1, "server": "localhost", "tls": 1,
                                "cadata": str(ca_file)},
    }
    jobs = {(name, case): (port, cfg) for name, port in ports.items()
            for case, cfg in cases.items()}
    with ThreadPoolExecutor(2) as pool:
        done = {key: pool.submit(port.smallest_heap, cfg) for key, (port, cfg) in jobs.items()}
    out = {name: {} for name in ports}
    for (name, case), future in done.items():
        out[name][case] = future.result()
    return out


def mpy_sizes(modules):
    """.mpy bytes of the whole package and of the modules a plain send imported."""
    files = {p.stem: p.stat().st_size for p in (unixport.MPY_DIR / "microsmtp").glob("*.mpy")}
    plain = ["__init__" if m == "microsmtp" else m.split(".", 1)[1] for m in modules]
    return {"package": sum(files.values()), "plain_path": sum(files[m] for m in plain),
            "plain_path_modules": sorted(plain), "files": dict(sorted(files.items()))}


# --- the run ---------------------------------------------------------------------------------

def machine(micropython_version):
    def cmd(*args):
        try:
            return subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                                  timeout=30).stdout.strip()
        except OSError:
            return ""

    postfix = cmd("/usr/sbin/postconf", "-d", "-h", "mail_version") or "?"
    return {"nproc": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "micropython": micropython_version,
            "postfix": postfix, "aiosmtplib": version("aiosmtplib"),
            "commit": cmd("git", "rev-parse", "--short", "HEAD"),
            # what is measured: uncommitted code there makes the commit only an ancestor
            "dirty": bool(cmd("git", "status", "--porcelain", "--", "firmware", "host",
                              "bench"))}


def run_all(work):
    data = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "settings": {"messages": N, "batches": BATCHES, "proxy_messages": N_PROXY,
                         "big_sends": N_BIG,
                         "delay_ms_each_way": DELAY_MS, "micropython_heap": MP_HEAP,
                         "heap_granularity_kb": 1, "body_bytes": SIZES,
                         "speed_server": "smtp-sink -a", "auth_server": "aiosmtpd"},
            "methods": METHODS, "clients": {}}
    clients = data["clients"]
    bodies = write_bodies(work)
    with ExitStack() as stack:
        sink = stack.enter_context(smtp_sink())
        proxy = stack.enter_context(delay_proxy(sink))
        auth_port, tls_port, ca_file = stack.enter_context(aiosmtpd_servers(work))
        ports = {"mp_ram": UnixPort(work, rom=False), "mp_rom": UnixPort(work, rom=True),
                 "mp_aio": UnixPort(work, rom=False, aio=True)}
        for name, port in ports.items():
            log(name)
            clients[name], run = bench_micropython(port, sink, proxy, bodies)
            if not port.aio:  # the plain path's modules: the blocking client's
                plain_run = run
        for name, client in (("cpython", MicrosmtpCPython()), ("smtplib", Smtplib()),
                             ("aiosmtplib", Aiosmtplib()), ("smtp_source", SmtpSource())):
            log(name)
            clients[name] = bench_python(client, sink, proxy, bodies)
        log("heap bisections")
        for name, mins in heap_minimums(ports, sink, auth_port, tls_port, ca_file,
                                        bodies).items():
            clients[name]["min_heapsize_kb"] = mins
    sizes = mpy_sizes(plain_run["modules"])
    for name in ports:
        clients[name]["mpy_bytes"] = sizes
    # (1, 29, 0, 'preview') and "3.4.0; MicroPython 9458e3a23f on 2026-07-05"
    release = ".".join(str(x) for x in plain_run["version"][:3])
    data["machine"] = machine("%s %s (%s)" % (release, " ".join(plain_run["version"][3:]),
                                             plain_run["build"].split("MicroPython ")[-1]))
    return data


def log(what):
    print("bench: %s ..." % what, file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--json", type=Path, default=OUT / "bench.json")
    parser.add_argument("--png", type=Path, default=OUT / "bench.png")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="microsmtp-bench-") as tmp:
        data = run_all(Path(tmp))
    data["duration_s"] = round(time.monotonic() - t0)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    report.chart(data, args.png)
    print(report.bench_block(data))
    print()
    print(report.memory_block(data))
    print()
    print(report.targets_block(data))
    if not args.no_readme:
        readme = ROOT / "README.md"
        readme.write_text(report.update_readme(readme.read_text(), data))
    print("\nwrote %s, %s%s (%d s)" % (args.json, args.png,
                                     "" if args.no_readme else ", README.md",
                                     data["duration_s"]))


if __name__ == "__main__":
    main()
