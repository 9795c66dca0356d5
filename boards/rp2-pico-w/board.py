# The Raspberry Pi Pico W side of the alert app (boards/common/alert_app.py). MIT licence.


def sensor():
    """A function that returns the RP2040's temperature in °C."""
    from machine import ADC

    adc = ADC(4)  # the RP2040's temperature sensor
    # RP2040 datasheet, 4.9.5: 0.706 V at 27 °C, -1.721 mV per degree; 3.3 V full scale.
    return lambda: 27 - (adc.read_u16() * 3.3 / 65535 - 0.706) / 0.001721


def wifi(wlan):
    """The station interface, active, before it connects."""
    # The CYW43's power saving makes the link slow to answer and lose packets (Peter Hinch,
    # mqtt_as): off. 0xA11140 is the value the Pico W documentation gives for that.
    wlan.config(pm=0xA11140)
