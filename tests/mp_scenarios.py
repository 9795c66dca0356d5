# MicroPython runner for the scenario data: reads JSON lines from the file named by argv[1]
# (first line: the scripts for the follow-up send), writes each scenario's client bytes to
# argv[2]/<name>.wire and prints one JSON result a line. Short argv on purpose: the unix
# port wheel crashes on arguments over 255 characters.
import gc
import json
import sys

import microsmtp
import scripted

with open(sys.argv[1]) as f:
    ok_scripts = json.loads(f.readline())
    for line in f:
        sc = json.loads(line)
        line = None
        gc.collect()
        with open(sys.argv[2] + "/" + sc["name"] + ".wire", "wb") as wire:
            res = scripted.run(microsmtp, sc, ok_scripts, wire)
        sc = None
        print(json.dumps(res))
        res = None
