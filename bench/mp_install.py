# MicroPython side of bench/install_heap.py: imports sys.argv[1] (microsmtp, or
# microsmtp.native beside an empty __init__) from whatever install is on the path, and
# reports the heap it holds afterwards (gc.mem_alloc() after gc.collect(), before and after).
# Prints one JSON object; too small a -X heapsize ends it with a MemoryError instead.
import gc
import json
import sys

name = sys.argv[1]
if name != "microsmtp":
    import microsmtp  # noqa: F401 - the empty package first: only `name` is measured
gc.collect()
before = gc.mem_alloc()
__import__(name)
gc.collect()
held = gc.mem_alloc() - before
print(json.dumps({"held": held, "file": sys.modules[name].__file__,
                  "version": ".".join(str(v) for v in sys.implementation.version[:3]),
                  "modules": sorted(k for k in sys.modules if k.startswith("microsmtp"))}))
