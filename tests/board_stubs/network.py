# A board's `network` module for the MicroPython unix port, which has none: a Wi-Fi station
# that comes up on the third poll after connect(). tests/test_examples.py runs the board
# examples with it; what they asked for is printed, for the test to read.
STA_IF = 0


class WLAN:
    polls = 0

    def __init__(self, interface):
        self.interface = interface

    def active(self, on=None):
        return True

    def connect(self, ssid, password=None):
        print("network: connect to %s" % ssid)
        WLAN.polls = 0

    def isconnected(self):
        WLAN.polls += 1
        return WLAN.polls > 2

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
