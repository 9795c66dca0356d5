"""A private OpenSMTPD 7 on loopback for tests/test_opensmtpd.py (issue 12, items 2 and 7).

The binaries are Debian's package unpacked (never installed: it conflicts with postfix) into
build/opensmtpd by tests/get_opensmtpd.sh, which `make test` runs and missing() runs when
they are not there. `smtpd -d` runs in the foreground as root (it forks its privilege-
separated processes, which drop to the users opensmtpd and opensmtpq), its stderr (-d logs
there; -v and -T smtp add each session's commands and replies, AUTH's test credentials
included) being the log the tests read.

OpenSMTPD has fixed paths compiled in: its configuration's default /etc/smtpd.conf (not used:
-f names ours), /etc/mailname (the server's name), the users opensmtpd and opensmtpq (looked
up with getpwnam), the spool /var/spool/smtpd, the control socket /var/run/smtpd.sock, the
chroot /var/lib/opensmtpd/empty and the delivery helpers under /usr/libexec/opensmtpd. None of
them is made on the system: smtpd runs in a mount namespace of its own (`unshare --mount`,
private propagation: nothing mounted there is seen outside, and it all goes when smtpd exits)
in which overlays put this run's files over those paths:
  /etc           read-only, our passwd, group (the system's, plus opensmtpd, opensmtpq and
                 vmail, the Maildir's owner, with ids no system user or group has) and mailname
  /usr/libexec   read-only, the unpacked usr/libexec/opensmtpd added
  /var/lib       read-only, the unpacked var/lib/opensmtpd/empty added
  /var/spool, /run   writable, the writes going to this run's folder (smtpd makes its spool
                 and socket there), the system's files beneath untouched
Making system users instead (as the package's postinst does) would change the machine for
good; a private passwd seen only by smtpd does not. Postfix, port 25 and the system's mail
configuration are never touched; the ports are free ones chosen when it starts.

Ports (all on 127.0.0.1):
  plain       STARTTLS offered (`tls`), no AUTH (an MTA's port 25)
  submission  `tls-require` and `auth <creds>`: AUTH PLAIN and LOGIN after STARTTLS
  implicit    `smtps` and `auth <creds>` (port 465's kind)
SIZE is advertised (`smtp max-message-size SIZE_LIMIT`); mail for ops@ and pager@example.org
goes into Maildirs under <root>/mail (the virtual table maps both to the vmail user)."""

import email
import email.policy
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mta_checks

REPO = Path(__file__).resolve().parents[1]
UNPACKED = REPO / "build" / "opensmtpd"
GET = REPO / "tests" / "get_opensmtpd.sh"
SMTPD = UNPACKED / "usr" / "sbin" / "smtpd"
ENCRYPT = UNPACKED / "usr" / "libexec" / "opensmtpd" / "encrypt"
INSTALL_HINT = ("run tests/get_opensmtpd.sh (make test does): it unpacks Debian's OpenSMTPD 7 "
                "(bookworm-backports on Debian 12) into build/opensmtpd, and as root "
                "apt-gets the libraries it needs")
DOMAIN = "example.org"
MAILBOXES = ("ops", "pager")
HOSTNAME = "mx.test.example"  # /etc/mailname in its namespace: its greeting and Received
SIZE_LIMIT = 200000
USER = "alice"
PASSWORD = "c0rrect-h0rse-B4ttery"
# Lines of its log that fail any test that made them: a command written ahead of its turn
# (OpenSMTPD offers no PIPELINING, answers "500 5.5.1 Invalid command: Pipelining not
# supported", hangs up and logs "smtp bad-input"). It logs nothing for a bare LF: it takes
# one as a line end, even "\n.\n" as the end of the data (tests/test_opensmtpd.py shows
# both), so the bodies' byte-exact checks are what catch a client sending one.
BAD_LOG = ("smtp bad-input", "Pipelining not supported")
# The accounts its namespace's passwd adds (Debian's build: SMTPD_USER, SMTPD_QUEUE_USER).
ACCOUNTS = ("opensmtpd", "opensmtpq", "vmail")


def missing(fetch=True):
    """Why a private OpenSMTPD cannot run here (a sentence), or None. With fetch, runs
    tests/get_opensmtpd.sh first when build/opensmtpd is not there yet."""
    if os.geteuid() != 0:
        return "OpenSMTPD runs as root (its privilege separation, and the mounts of its " \
               "private namespace): run the tests as root, as CI does"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed: sudo apt-get install util-linux"
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "this kernel has no overlay filesystem, which the private OpenSMTPD " \
                       "mounts over its fixed paths (modprobe overlay)"
    except OSError:
        return "no /proc/filesystems: not Linux?"
    why = _namespace_refused()
    if why:
        return why
    if not (UNPACKED / "VERSION").is_file() and fetch:
        try:
            proc = subprocess.run([str(GET), str(UNPACKED)], capture_output=True, text=True,
                                  timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "tests/get_opensmtpd.sh failed (%s): %s" % (e, INSTALL_HINT)
        if proc.returncode:
            return "%s (%s)" % (proc.stderr.strip() or "tests/get_opensmtpd.sh failed",
                                INSTALL_HINT)
    if not os.access(SMTPD, os.X_OK):
        return "OpenSMTPD is not unpacked in build/opensmtpd: " + INSTALL_HINT
    return None


def _namespace_refused():
    """Why root cannot make the private namespace here (a container without CAP_SYS_ADMIN,
    say), tried with one read-only overlay, or None."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="microsmtp-ns-") as d:
        for sub in ("a", "b", "c"):
            os.mkdir(os.path.join(d, sub))
        try:
            proc = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay",
                 "overlay", "-o", "lowerdir=%s/a:%s/b" % (d, d), "%s/c" % d],
                capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "unshare failed: %s" % e
    if proc.returncode:
        return "root cannot mount an overlay in a mount namespace of its own here (%s), " \
               "which the private OpenSMTPD needs; in a container, give it CAP_SYS_ADMIN " \
               "(docker run --privileged)" % (proc.stderr.strip().splitlines() or ["?"])[0]
    return None


def version():
    return (UNPACKED / "VERSION").read_text().strip()


def _free_ids(count):
    """`count` numbers that are neither a user's id nor a group's on this system."""
    found = []
    for n in range(64100, 65500):
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
            continue
        except KeyError:
            found.append(n)
        if len(found) == count:
            return found
    raise RuntimeError("no free user ids in 64100..65499")


class OpenSMTPD(mta_checks.MtaLog):
    """One private OpenSMTPD under `root` (a folder), with a CA-signed certificate for
    localhost (cert_pem, key_pem: bytes) and AUTH users {name: password}."""

    MAILBOXES = MAILBOXES
    SESSION_WORDS = (" smtp connected ", " smtp disconnected ")  # a session in its log

    def __init__(self, root, cert_pem, key_pem, users):
        self.root = Path(root)
        self.conf = self.root / "conf"
        self.mail = self.root / "mail"
        self.log_file = self.root / "smtpd.log"
        self.pid_file = self.root / "smtpd.pid"
        self.users = dict(users)
        self.ports = {name: mta_checks.free_port() for name in ("plain", "submission",
                                                                "implicit")}
        self.proc = None
        self._log_offset = 0
        self.uid = self.gid = None
        self._write_config(cert_pem, key_pem)

    # --- configuration -------------------------------------------------------------------

    def _write_config(self, cert_pem, key_pem):
        etc = self.root / "etc"
        for d in (etc, self.conf, self.mail, self.root / "spool", self.root / "run",
                  self.root / "work" / "spool", self.root / "work" / "run"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        # passwd and group: a copy of the system's, plus ours (each account with a group of
        # its own, as the package's postinst makes them).
        ids = dict(zip(ACCOUNTS, _free_ids(len(ACCOUNTS)), strict=True))
        self.uid = self.gid = ids["vmail"]
        home = {"vmail": str(self.mail)}
        # (A system's own account of one of these names, say a mail server's vmail, is left
        # out of this copy: the names mean ours here.)
        passwd, group = ("".join(line for line in Path(path).read_text().splitlines(True)
                                 if line.split(":", 1)[0] not in ACCOUNTS)
                         for path in ("/etc/passwd", "/etc/group"))
        for name, n in ids.items():
            passwd += "%s:x:%d:%d:microsmtp test %s:%s:/usr/sbin/nologin\n" % (
                name, n, n, name, home.get(name, "/var/lib/opensmtpd/empty"))
            group += "%s:x:%d:\n" % (name, n)
        (etc / "passwd").write_text(passwd)
        (etc / "group").write_text(group)
        (etc / "mailname").write_text(HOSTNAME + "\n")
        os.chown(self.mail, self.uid, self.gid)
        # The log: written by smtpd's processes through the stderr they inherit.
        self.log_file.touch()

        (self.conf / "cert.pem").write_bytes(cert_pem)
        key = self.conf / "key.pem"
        key.write_bytes(key_pem)
        os.chmod(key, 0o600)  # root's: smtpd's parent reads it before forking
        # The credentials table (table(5): user, then a crypt(3) hash), hashed by the
        # package's own helper (smtpctl encrypt runs it): libcrypt's yescrypt here.
        lines = []
        for user, password in self.users.items():
            out = subprocess.run([str(ENCRYPT)], input=password + "\n", capture_output=True,
                                 text=True, timeout=20, check=True).stdout.strip()
            lines.append("%s %s\n" % (user, out))
        creds = self.conf / "creds"
        creds.write_text("".join(lines))
        os.chmod(creds, 0o600)  # read by its lookup process, which stays root
        (self.conf / "vmailbox").write_text(
            "".join("%s@%s vmail\n" % (m, DOMAIN) for m in MAILBOXES))
        p = self.ports
        (self.conf / "smtpd.conf").write_text("""\
pki localhost cert "{conf}/cert.pem"
pki localhost key "{conf}/key.pem"
table creds file:{conf}/creds
table vmailbox file:{conf}/vmailbox
smtp max-message-size {size}
listen on 127.0.0.1 port {plain} tls pki localhost
listen on 127.0.0.1 port {submission} tls-require pki localhost auth <creds>
listen on 127.0.0.1 port {implicit} smtps pki localhost auth <creds>
action "deliver" maildir "{mail}/%{{rcpt.user:lowercase}}" virtual <vmailbox>
match from any for domain "{domain}" action "deliver"
""".format(conf=self.conf, size=SIZE_LIMIT, mail=self.mail, domain=DOMAIN, **p))
        # The namespace: overlays over the fixed paths (see the top of this file), then
        # smtpd itself in this shell's place (so the pid in the pid file is smtpd's).
        r, u = self.root, UNPACKED
        ro = ((etc, "/etc"), (u / "usr/libexec", "/usr/libexec"), (u / "var/lib", "/var/lib"))
        rw = ("/var/spool", "spool"), ("/run", "run")
        script = ["set -e"]
        script += ["mount -t overlay overlay -o lowerdir=%s:%s %s" % (mine, path, path)
                   for mine, path in ro]
        script += ["mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s" % (
            path, r / name, r / "work" / name, path) for path, name in rw]
        script += ["echo $$ > %s" % self.pid_file,
                   "exec %s -d -v -T smtp -f %s" % (SMTPD, self.conf / "smtpd.conf")]
        (self.root / "namespace.sh").write_text("\n".join(script) + "\n")

    # --- start, stop ---------------------------------------------------------------------

    def start(self, deadline=30):
        self.mark_log()
        self.pid_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            # start_new_session: smtpd and all it forks in a process group of their own,
            # which stop() ends as a whole.
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh",
                 str(self.root / "namespace.sh")], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_listening("OpenSMTPD", deadline, lambda: self.proc.poll() is not None)
        # The probes' sessions end in the log a little later: wait, so that they are in no
        # test's log.
        self.wait_log(" smtp disconnected ", len(self.ports), deadline)
        self.mark_log()

    def pid(self):
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, deadline=20):
        """SIGTERM to the pid in the pid file (smtpd's parent, which ends its children),
        then wait until its whole process group is gone; what is left at the deadline is
        killed, and that is an error."""
        pid = self.pid()
        if pid and mta_checks.alive(pid):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + deadline
        pgid = self.proc.pid if self.proc else pid
        if self.proc:
            try:
                self.proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while pgid and _group_alive(pgid):
            if time.monotonic() > end:
                os.killpg(pgid, signal.SIGKILL)
                if self.proc:
                    self.proc.wait(5)
                raise RuntimeError("OpenSMTPD (process group %d) still running %d s after "
                                   "SIGTERM: killed" % (pgid, deadline))
            time.sleep(0.05)
        self.proc = None

    # --- what it did ---------------------------------------------------------------------

    def commands(self, log=None):
        """The client's commands in `log` (default log()), as -T smtp traces them."""
        return re.findall(r"^smtp: 0x[0-9a-f]+: <<< (.*)$", self.log() if log is None else log,
                          re.M)

    def maildir(self, mailbox="ops"):
        return self.mail / mailbox / "new"

    def queued(self):
        """How many messages its spool holds, not yet delivered (0: all delivered)."""
        return sum(len(files) for _, _, files in os.walk(self.root / "spool" / "smtpd" /
                                                         "queue"))


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


DELIVERED = "result=Ok stat=Delivered"


def delivered_one(srv, mailbox="ops"):
    """The one message OpenSMTPD delivered (raw bytes, parsed), once its log says it was
    delivered, and there is exactly one in the Maildir."""
    log = srv.wait_log(DELIVERED)
    assert log.count(DELIVERED) == 1, log
    files = srv.wait_messages(1, mailbox)
    assert len(files) == 1, files
    raw = files[0].read_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def send_config(srv, port, **options):
    return mta_checks.send_config(srv, port, USER, PASSWORD, **options)


def private(root):
    """An OpenSMTPD (not started) under the folder `root` with a certificate for localhost
    from a new trustme CA, whose file is .ca_pem, and AUTH user USER (PASSWORD)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    srv = OpenSMTPD(root, b"".join(p.bytes() for p in cert.cert_chain_pems),
                    cert.private_key_pem.bytes(), {USER: PASSWORD})
    srv.ca_pem = os.path.join(root, "ca.pem")
    ca.cert_pem.write_to_path(srv.ca_pem)
    return srv
