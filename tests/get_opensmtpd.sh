#!/bin/sh
# OpenSMTPD 7 unpacked into a folder for tests/opensmtpd_server.py (issue 12, item 2):
#   tests/get_opensmtpd.sh [DIR]          (default: build/opensmtpd, ignored by git)
# DIR/usr/sbin/smtpd, DIR/usr/libexec/opensmtpd/... and DIR/VERSION afterwards. Idempotent
# (nothing is done when DIR/VERSION is there), quiet, non-interactive; one line on stderr and
# exit 1 when it cannot.
#
# The package is never installed: it conflicts with postfix (both are mail-transport-agent),
# whose binaries other tests use, and installing it would configure and start a system MTA.
# `dpkg-deb -x` unpacks it instead. Where the system's own archive has OpenSMTPD 7 or newer
# (Debian 13, Ubuntu 24.04) it comes from there; on Debian 12 (bookworm, whose 6.8 cannot do
# TLS with OpenSSL 3) from bookworm-backports, read through a private apt state under
# DIR.apt (its own sources list, lists and cache): the system's apt configuration and lists
# are left as they are. Missing runtime libraries of the package (its Depends, e.g.
# libevent-2.1-7) are apt-get installed from the system's own archive, as root; they do not
# conflict with postfix.
set -eu
DIR=${1:-build/opensmtpd}
if [ -f "$DIR/VERSION" ] && [ -x "$DIR/usr/sbin/smtpd" ]; then
    exit 0
fi
fail() { echo "get_opensmtpd: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    fail "needs Debian or Ubuntu (apt-get, dpkg-deb)"
DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd)
APT="$DIR.apt"
rm -rf "$APT"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/deb"
# apt-get download as root drops to the _apt user, which cannot write here: stay root.
SANDBOX=""
[ "$(id -u)" != 0 ] || SANDBOX="-o APT::Sandbox::User=root"

major() { echo "${1#*:}" | sed 's/[^0-9].*//'; }
candidate() { apt-cache $* policy opensmtpd 2>/dev/null | sed -n 's/^ *Candidate: //p'; }

OPTS=""
version=$(candidate)
if [ -z "$version" ] || [ "$version" = "(none)" ] || [ "$(major "$version")" -lt 7 ]; then
    . /etc/os-release
    [ "${VERSION_CODENAME:-}" = bookworm ] ||
        fail "no OpenSMTPD 7 or newer in this system's archive (${PRETTY_NAME:-unknown}: ${version:-none})"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
        "http://deb.debian.org/debian bookworm-backports main" > "$APT/sources.list"
    OPTS="-o Dir::Etc::SourceList=$APT/sources.list -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists=$APT/lists -o Dir::Cache=$APT/cache"
    # shellcheck disable=SC2086
    apt-get -qq $OPTS update >"$APT/update.log" 2>&1 ||
        fail "apt-get update of bookworm-backports failed: $(tail -1 "$APT/update.log")"
    version=$(candidate $OPTS)
    [ -n "$version" ] && [ "$(major "$version")" -ge 7 ] ||
        fail "bookworm-backports has no OpenSMTPD 7 (${version:-none})"
fi
# shellcheck disable=SC2086
(cd "$APT/deb" && apt-get -qq $OPTS $SANDBOX download "opensmtpd=$version" \
    >"$APT/download.log" 2>&1) ||
    fail "apt-get download opensmtpd=$version failed: $(tail -1 "$APT/download.log")"
DEB=$(ls "$APT"/deb/opensmtpd_*.deb)
rm -rf "$DIR" && mkdir -p "$DIR"
dpkg-deb -x "$DEB" "$DIR"

# Its libraries: the Depends that are libraries (first of alternatives, versions dropped),
# installed when the binary does not find one of them.
if ldd "$DIR/usr/sbin/smtpd" "$DIR/usr/libexec/opensmtpd/"* 2>/dev/null | grep -q "not found"; then
    libs=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' |
        grep -E '^(lib|zlib)')
    missing=""
    for pkg in $libs; do
        dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $pkg"
    done
    [ -n "$missing" ] ||
        fail "smtpd does not find a library: $(ldd "$DIR/usr/sbin/smtpd" | grep "not found")"
    [ "$(id -u)" = 0 ] ||
        fail "OpenSMTPD needs libraries that are not installed; run 'sudo apt-get install$missing'"
    echo "setup: apt-get install$missing (Debian), for OpenSMTPD's tests/test_opensmtpd.py"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
echo "$version" > "$DIR/VERSION"
