"""microsmtp.Client on CPython: the firmware's class, on the shim's network by default."""

from . import shim

shim.install()

import microsmtp  # noqa: E402  (after the shim: the firmware imports micropython first)

from .shim import net as _net  # noqa: E402


class Client(microsmtp.Client):
    """microsmtp.Client with `net` defaulting to microsmtp_host.shim.net (CPython's sockets
    with MicroPython's stream methods); every other argument and method is the firmware's."""

    def __init__(self, server, port=25, *, net=None, **kwargs):
        super().__init__(server, port, net=_net if net is None else net, **kwargs)
