# MicroPython runner for the scenario data: reads JSON lines from the file named by argv[1],
# the follow-up scripts from argv[1] + ".auth" / ".noauth", writes each scenario's client
# bytes to argv[2]/<name>.wire and prints one JSON result a line; with argv[3] "aio",
# through microsmtp.aio. Short argv on purpose: the unix port wheel crashes on arguments
# over 255 characters.
import gc
import json
import sys

import microsmtp
import scripted

aio = None
if sys.argv[3:] == ["aio"]:
    from microsmtp import aio


def ok_script(kind):
    with open(sys.argv[1] + "." + kind) as f:
        return json.load(f)


with open(sys.argv[1]) as f:
    for line in f:
        sc = json.loads(line)
        line = None
        gc.collect()
        with open(sys.argv[2] + "/" + sc["name"] + ".wire", "wb") as wire:
            res = scripted.run(microsmtp, sc, ok_script, wire, aio)
        sc = None
        print(json.dumps(res))
        res = None
