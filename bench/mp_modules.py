# MicroPython side of `make bench`'s import breakdown: the heap each microsmtp module holds
# once imported. bench/bench.py runs it over a copy of the package whose __init__ is empty,
# so each module loads alone, in an order where its own imports are already loaded (the
# real __init__ imports the plain path at once). Prints one JSON object.
import gc
import json

import microsmtp  # noqa: F401 - the empty package: no module of it is loaded yet

ORDER = ("status", "pool", "native", "message", "protocol", "transport", "auth", "secure",
         "session", "literal", "utf8", "outbox", "mime", "outbox_rich", "trace")
held = {}
gc.collect()
before = gc.mem_alloc()
for name in ORDER:
    __import__("microsmtp." + name)
    gc.collect()
    now = gc.mem_alloc()
    held[name] = now - before
    before = now
print(json.dumps({"modules": held}))
