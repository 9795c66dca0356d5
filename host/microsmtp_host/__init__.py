"""Host tooling for microsmtp: runs firmware/ on CPython through the shim, and more.

`from microsmtp_host import Client, SMTPError` is microsmtp on a computer in one import: the
firmware's own code (shim installed on first use), its Client sending through the shim's
network unless told otherwise. The other public names of microsmtp (SMTPError, BufferPool,
the constants) come along, and after it `import microsmtp` works too.
"""


def __getattr__(name):
    # Lazy (PEP 562): the command-line tools import this package without loading firmware/.
    # Only microsmtp's public names (Client, SMTPError, BufferPool, the upper-case
    # constants) are answered here; a submodule's name (cli, shim) is left to the import
    # system, with no shim installed on the way.
    if name not in ("Client", "SMTPError", "BufferPool") and not name.isupper():
        raise AttributeError("module 'microsmtp_host' has no attribute %r" % name)
    from . import client

    value = client.Client if name == "Client" else getattr(client.microsmtp, name)
    globals()[name] = value
    return value
