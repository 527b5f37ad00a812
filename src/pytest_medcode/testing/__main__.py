"""``python -m pytest_medcode.testing``: the scripted server as its own process (see testing/cli.py)."""

import sys

from pytest_medcode.testing.cli import main

sys.exit(main())
