"""``python -m include.simulator``: see include/simulator/cli.py."""

import sys

from include.simulator.cli import main

sys.exit(main())
