# Freezes microsmtp into MicroPython firmware for ESP32, ESP32-S3 and ESP32-C3 (README.md):
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/microsmtp/boards/esp32/manifest.py
# Relative paths below resolve from this file's folder (MicroPython's tools/manifestfile.py).

# The port's own frozen modules first (asyncio, ntptime and the rest of bundle-networking):
# FROZEN_MANIFEST replaces that manifest rather than adding to it.
include("$(PORT_DIR)/boards/manifest.py")

package("microsmtp", base_path="../../firmware")
# The alert app's modules, from flash (main.py stays a file on the board: it runs at boot).
module("alert_app.py", base_path="../common")
module("board.py")
