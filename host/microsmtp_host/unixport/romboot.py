# Boot of the emulated board (MicroPython side): mount the ROMFS "flash" the launcher
# placed outside the heap, then run the module named in argv[1] with the rest as its argv.
import os
import sys

rom = os.getenv("MICROSMTP_ROM")
if rom:
    import uctypes
    import vfs

    addr, size = rom.split(":")
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(addr), int(size))), "/rom")
    sys.path.insert(0, "/rom")
    rom = addr = size = None
sys.argv.pop(0)  # the module now sees argv as if it had been run with -m itself
__import__(sys.argv[0])
