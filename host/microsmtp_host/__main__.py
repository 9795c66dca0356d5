"""python -m microsmtp_host: the `microsmtp` command."""

import sys

from microsmtp_host.cli import main

sys.exit(main())
