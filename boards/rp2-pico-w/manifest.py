# Freezes microsmtp into MicroPython firmware for the Raspberry Pi Pico W (README.md):
#   cd micropython/ports/rp2
#   make BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/microsmtp/boards/rp2-pico-w/manifest.py
# Relative paths below resolve from this file's folder (MicroPython's tools/manifestfile.py).

# The Pico W's own board manifest, not the port's: FROZEN_MANIFEST replaces it, and it is the
# one that adds bundle-networking (ntptime, for the Date header) to the port's modules.
include("$(BOARD_DIR)/manifest.py")

package("microsmtp", base_path="../../firmware")
# The alert app's modules, from flash (main.py stays a file on the board: it runs at boot).
module("alert_app.py", base_path="../common")
module("board.py")
