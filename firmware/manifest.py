# Freezes microsmtp into a MicroPython firmware build:
#   make BOARD=... FROZEN_MANIFEST=/path/to/firmware/manifest.py  (or include() it from a board's)
metadata(description="SMTP client for ESP32 / Pico W on a static buffer pool", version="0.1.0")

package("microsmtp")
