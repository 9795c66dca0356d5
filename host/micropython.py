"""CPython's `micropython`: a stand-in that says how to run microsmtp here. Never on a board.

MicroPython has `micropython` built in, and firmware/microsmtp imports it first thing
(`from micropython import const`); CPython has none, so a bare `import microsmtp` on a
computer would stop at "No module named 'micropython'". This module, installed with the host
tools, stops it with the fix instead. microsmtp_host.shim.install() puts the real stand-in
(const, viper) in sys.modules first, and this file is then never imported. It raises
ImportError, so code that tries `import micropython` to tell MicroPython apart still can.
"""

raise ImportError("microsmtp runs on CPython through its host shim: use `from microsmtp_host "
                  "import Client`, or call microsmtp_host.shim.install() before `import "
                  "microsmtp`")
