# The ESP32 side of the alert app (boards/common/alert_app.py): ESP32, ESP32-S3, ESP32-C3.
# MIT licence.


def sensor():
    """A function that returns the chip's temperature in °C."""
    import esp32

    read = getattr(esp32, "mcu_temperature", None)  # S2, S3, C3, C6: °C
    if read is None:
        # The original ESP32 has only the raw reading, in °F. It is the die's temperature,
        # well above the air's: set the threshold from what the board reads when all is well.
        return lambda: (esp32.raw_temperature() - 32) / 1.8
    return read


def wifi(wlan):
    """The station interface, active, before it connects: the ESP32 needs nothing more."""
