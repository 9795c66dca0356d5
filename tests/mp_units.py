# MicroPython runner for unit_cases.py: one JSON line a case.
import json

import unit_cases

for name in unit_cases.CASES:
    try:
        unit_cases.run(name)
        print(json.dumps({"name": name, "ok": True}))
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        print(json.dumps({"name": name, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
