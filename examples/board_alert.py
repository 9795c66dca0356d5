# microsmtp's smallest board app (ESP32, Pico W): Wi-Fi up, one alert mail, the error printed.
# Beside it on the board: config.json and the CA file it names, both put there by
# `microsmtp config --port PORT --ca CA_FILE` (docs/CONFIG.md). MIT licence.
import json
import time

import microsmtp
import network

cfg = json.load(open("config.json"))
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
start = time.ticks_ms()
while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), start) < 20000:
    time.sleep_ms(200)  # 20 s for Wi-Fi; if it is still down, the send says so below
smtp = cfg["smtp"]
client = microsmtp.Client(smtp["server"], smtp["port"], from_address=smtp["from"],
                          username=smtp.get("username"), password=smtp.get("password"),
                          cadata=smtp.get("cadata"))  # the CA file's path on the board
try:
    client.send(smtp["to"], "Boiler at 92 °C", "Burner still on.\n", microsmtp.PRIORITY_HIGH)
    print("sent")
except microsmtp.SMTPError as e:
    print(e)  # one sentence: the step and the server's words (e.status, e.temporary)
