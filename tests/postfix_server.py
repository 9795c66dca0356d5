"""A private Postfix on loopback for tests/test_postfix.py (issue 12, items 1 and 7).

Its own config directory, queue, data directory, log (maillog_file) and virtual Maildir, all
under one folder of the test run; started with `postfix -c DIR start` and stopped with
`postfix -c DIR stop` (master's pid file in DIR/queue/pid). Never the system's instance: no
file under /etc/postfix is written, and no port below 1024 is used (the ports are free ones
chosen when it starts). Postfix's master runs as root, as it must; its daemons run as the
`postfix` user (mail_owner) with setgid_group `postdrop`, both made by Debian's package.

Ports (all on 127.0.0.1):
  plain       STARTTLS offered, no AUTH (an MTA's port 25)
  submission  smtpd_tls_security_level=encrypt, SASL AUTH (Cyrus sasldb: PLAIN LOGIN CRAM-MD5)
  implicit    smtpd_tls_wrappermode=yes, the same SASL AUTH (port 465's kind)
  discard     as plain, with smtpd_discard_ehlo_keywords hiding PIPELINING and 8BITMIME
Every port is strict: smtpd_forbid_bare_newline = reject with no exclusions,
smtpd_forbid_unauth_pipelining = yes, message_size_limit = SIZE_LIMIT."""

import email
import email.policy
import glob
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import mta_checks

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SASLPASSWD2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
INSTALL_HINT = "sudo apt-get install postfix sasl2-bin libsasl2-modules"
DOMAIN = "example.org"  # the virtual mailbox domain: every mailbox in MAILBOXES is in it
MAILBOXES = ("ops", "pager")
SASL_REALM = "mx.test.example"  # myhostname, and the users' realm (smtpd_sasl_local_domain)
SIZE_LIMIT = 200000
USER = "alice"  # a SASL user; Postfix names it alice@SASL_REALM (smtpd_sasl_local_domain)
PASSWORD = "c0rrect-h0rse-B4ttery"
# Lines of Postfix's log that fail any test that made them (issue 12): the client sent a
# bare LF, or wrote ahead where the server had not offered PIPELINING.
BAD_LOG = ("bare <LF>", "improper command pipelining")
_QUEUE_ID = re.compile(r"[0-9A-F]{6,}")  # a short queue ID: the name of a queued mail's file


def missing():
    """Why a private Postfix cannot run here (a sentence), or None."""
    for path, pkg in ((POSTFIX, "postfix"), (SASLPASSWD2, "sasl2-bin")):
        if not os.access(path, os.X_OK):
            return "%s is not installed (%s): %s" % (os.path.basename(path), pkg,
                                                      INSTALL_HINT)
    if not glob.glob("/usr/lib/*/sasl2/libcrammd5.so*"):
        return "Cyrus SASL's LOGIN and CRAM-MD5 modules are not installed " \
               "(libsasl2-modules): " + INSTALL_HINT
    if os.geteuid() != 0:
        return "`postfix start` is for root only (its daemons then run as the postfix " \
               "user); run the tests as root, as CI does"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "no postfix user or postdrop group (Debian's postfix package makes them): " + \
            INSTALL_HINT
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Postfix's internal services, as Debian's master.cf has them, chroot off (a chroot jail
# would need /etc files copied into the queue) and nothing else: no pickup (no sendmail
# here), no local (virtual delivery only), no smtp client (nothing is relayed).
_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_AUTH = ("-o smtpd_sasl_auth_enable=yes -o smtpd_sasl_security_options=noanonymous "
         "-o smtpd_sasl_local_domain=$myhostname")


class Postfix(mta_checks.MtaLog):
    """One private Postfix under `root` (a folder), with a CA-signed certificate for
    localhost (cert_pem, key_pem: bytes), SASL users {name: password}."""

    MAILBOXES = MAILBOXES
    SESSION_WORDS = (" connect from ", " disconnect from ")  # a session in its log

    def __init__(self, root, cert_pem, key_pem, users, settings=None):
        self.root = Path(root)
        self.conf = self.root / "conf"
        self.queue = self.root / "queue"
        self.mail = self.root / "mail"
        self.log_file = self.root / "maillog"
        self.users = dict(users)
        self.ports = {name: free_port() for name in ("plain", "submission", "implicit",
                                                     "discard")}
        self._log_offset = 0
        owner = pwd.getpwnam("postfix")
        self.uid, self.gid = owner.pw_uid, owner.pw_gid
        self._write_config(cert_pem, key_pem, settings or {})

    # --- configuration -------------------------------------------------------------------

    def _write_config(self, cert_pem, key_pem, settings):
        for d in (self.conf / "sasl", self.queue, self.root / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        # The daemons (user postfix) must reach the Maildir, data directory and sasldb.
        os.chmod(self.root, 0o755)
        for d in (self.root / "data", self.mail):
            os.chown(d, self.uid, self.gid)
        # The log, the postfix user's: postsuper, run by `postfix start` with that user's
        # privileges before postlogd is up, writes its warnings itself (such as "bogus file
        # name" for a queue file cut short by a stop) and exits if it cannot.
        self.log_file.touch()
        os.chown(self.log_file, self.uid, self.gid)
        (self.conf / "cert.pem").write_bytes(cert_pem)
        key = self.conf / "key.pem"
        key.write_bytes(key_pem)
        os.chmod(key, 0o600)  # root's: smtpd and tlsmgr read it before they drop privileges
        mailboxes = "".join("%s@%s %s/%s/\n" % (m, DOMAIN, DOMAIN, m) for m in MAILBOXES)
        (self.conf / "vmailbox").write_text(mailboxes)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.root / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "myhostname": SASL_REALM,
            "mydomain": "test.example",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relay_domains": "",
            "biff": "no",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_maps": "texthash:%s" % (self.conf / "vmailbox"),
            "virtual_mailbox_base": str(self.mail),
            "virtual_uid_maps": "static:%d" % self.uid,
            "virtual_gid_maps": "static:%d" % self.gid,
            "virtual_minimum_uid": "1",
            "smtpd_tls_cert_file": str(self.conf / "cert.pem"),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "smtpd_sasl_auth_enable": "no",
            # issue 12's strict settings
            "smtpd_forbid_bare_newline": "reject",
            "smtpd_forbid_bare_newline_exclusions": "",
            "smtpd_forbid_unauth_pipelining": "yes",
            "message_size_limit": str(SIZE_LIMIT),
            # The test's mail is for example.org, never to be relayed elsewhere.
            "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                                        "reject_unauth_destination",
            "smtpd_client_connection_rate_limit": "0",
        }
        main.update(settings)  # main.cf settings of one test's own instance
        (self.conf / "main.cf").write_text("".join("%s = %s\n" % kv for kv in main.items()))
        p = self.ports
        master = _SERVICES + "".join(
            "127.0.0.1:%d inet n - n - - smtpd%s\n" % (port, opts) for port, opts in (
                (p["plain"], ""),
                (p["submission"], " -o smtpd_tls_security_level=encrypt " + _AUTH),
                (p["implicit"], " -o smtpd_tls_wrappermode=yes " + _AUTH),
                (p["discard"], " -o smtpd_discard_ehlo_keywords=pipelining,8bitmime"),
            ))
        (self.conf / "master.cf").write_text(master)
        # Debian's Postfix reads Cyrus SASL's settings from $config_directory/sasl/smtpd.conf
        # (not cyrus_sasl_config_path). auxprop + sasldb: CRAM-MD5 needs the plaintext
        # secret, which sasldb keeps.
        sasldb = self.conf / "sasldb"
        (self.conf / "sasl" / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
            "mech_list: PLAIN LOGIN CRAM-MD5\nsasldb_path: %s\n" % sasldb)
        for user, password in self.users.items():
            subprocess.run([SASLPASSWD2, "-f", str(sasldb), "-c", "-p", "-u", SASL_REALM,
                            user], input=password.encode(), check=True, timeout=10)
        # Read by smtpd as the postfix user (Cyrus opens it at AUTH, privileges dropped).
        os.chown(sasldb, 0, self.gid)
        os.chmod(sasldb, 0o640)

    # --- start, stop ---------------------------------------------------------------------

    def _postfix(self, *args, timeout=30):
        return subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=timeout)

    def start(self, deadline=30):
        self.mark_log()  # the probes below are logged after this (also on a restart)
        proc = self._postfix("start")
        if proc.returncode:
            raise RuntimeError("postfix -c %s start: exit %d: %s %s" % (
                self.conf, proc.returncode, proc.stdout, proc.stderr))
        self.wait_listening("Postfix", deadline)
        # The probes' sessions are logged (through postlogd) a little later: wait for them,
        # so that they are in no test's log.
        self.wait_log(" disconnect from ", len(self.ports), deadline)
        self.mark_log()

    def master_pid(self):
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, deadline=20):
        """postfix stop, then wait until master's pid is gone (its children go with it)."""
        pid = self.master_pid()
        self._postfix("stop")
        end = time.monotonic() + deadline
        while pid and mta_checks.alive(pid):
            if time.monotonic() > end:
                raise RuntimeError("Postfix master %d still running after stop" % pid)
            time.sleep(0.05)

    def restart(self, deadline=30):
        """stop(), then start() again on the same ports, the queue kept: what was accepted
        before the stop is delivered after the start."""
        self.stop(deadline)
        self.start(deadline)

    # --- what it did ---------------------------------------------------------------------

    def maildir(self, mailbox="ops"):
        return self.mail / DOMAIN / mailbox / "new"

    def queue_files(self):
        """The files of the mails Postfix holds in its queue, not yet delivered: those named
        by a queue ID (short IDs, hex: enable_long_queue_ids is off). Not the empty
        "<inode>.<pid>" file that cleanup(8) makes first and renames to a queue ID once it
        has a mail: a stop that kills it in between leaves that file behind, which
        postsuper(1) logs as a "bogus file name" at the next start; no mail is in it."""
        return [os.path.join(top, name)
                for sub in ("maildrop", "incoming", "active", "deferred", "hold")
                for top, _, files in os.walk(self.queue / sub) for name in files
                if _QUEUE_ID.fullmatch(name)]

    def queued(self):
        """How many mails Postfix holds in its queue (0: all delivered)."""
        return len(self.queue_files())

    def queue_report(self):
        """What a failing test shows of the mails still queued: each file (its folder, mode,
        size) and the log lines that name its queue ID."""
        log = self.read_log().splitlines()
        out = []
        for path in self.queue_files():
            try:
                st = os.stat(path)
                out.append("%s %o %d B" % (os.path.relpath(path, self.queue), st.st_mode,
                                           st.st_size))
            except OSError:  # delivered since it was listed
                continue
            name = os.path.basename(path)
            out.extend("    " + line for line in log if name in line)
        return "\n".join(out)


# --- sending through it on both runtimes, and reading what it delivered ----------------------
# (tests/test_postfix.py and tests/test_swaks.py; the fixtures pf and postfix_send in
# conftest.py call these). Sending is tests/mta_checks.py's, shared with the OpenSMTPD tests.

SENDER, RCPT, HOST, TLS_HEAP = mta_checks.SENDER, mta_checks.RCPT, mta_checks.HOST, \
    mta_checks.TLS_HEAP
send_cpython, send_micropython = mta_checks.send_cpython, mta_checks.send_micropython
normalised = mta_checks.normalised


def send_config(pf, port, **options):
    """The mp_send.py config of one send to `pf`'s port `port` as USER (see conftest's
    postfix_send for the options)."""
    return mta_checks.send_config(pf, port, USER, PASSWORD, **options)


def delivered_one(pf, mailbox="ops"):
    """The one message Postfix delivered (raw bytes, parsed), once its log says it was
    delivered, and there is exactly one in the Maildir."""
    log = pf.wait_log("status=sent")
    assert log.count("status=sent (delivered to maildir)") == 1, log
    files = pf.wait_messages(1, mailbox)
    assert len(files) == 1, files
    raw = files[0].read_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)
