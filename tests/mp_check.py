# MicroPython runner for tests/test_injection.py: message.check(ADDRESS) on each line of the
# file argv[1]; prints 1 (accepted) or 0 (ValueError) per address.
import sys

from microsmtp import message

with open(sys.argv[1]) as f:
    for line in f:
        try:
            message.check(line[:-1], "recipient", message.ADDRESS)
            print(1)
        except ValueError:
            print(0)
