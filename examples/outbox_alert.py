# An alert that outlives an outage (ESP32, Pico W): written to the outbox on flash first, then
# sent; one that cannot go now (Wi-Fi or the server down) stays queued through resets and
# power cuts and goes with a later flush, here at the next boot. config.json as for
# board_alert.py (docs/CONFIG.md). MIT licence.
import json
import time

import microsmtp
import network
from microsmtp.outbox import Outbox

cfg = json.load(open("config.json"))
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
start = time.ticks_ms()
while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), start) < 20000:
    time.sleep_ms(200)
smtp = cfg["smtp"]
client = microsmtp.Client(smtp["server"], smtp["port"], from_address=smtp["from"],
                          username=smtp.get("username"), password=smtp.get("password"),
                          cadata=smtp.get("cadata"))
box = Outbox(client, "outbox")  # a folder beside this file; on a board: /outbox
box.put(smtp["to"], "Door opened", "Back door opened %d s after boot.\n"
        % (time.ticks_ms() // 1000), microsmtp.PRIORITY_HIGH)
sent = box.flush()  # every mail due, this one and any left from before, over one session
print("outbox: %d sent, %d waiting" % (sent, len(box.pending())))
if box.last_error:
    print(box.last_error)  # the reason they wait; a mail refused for good is in outbox/dead/
