"""Host tooling for microsmtp: runs firmware/ on CPython through the shim, and more."""
