"""`python -m ravar` runs the command line."""

import sys

from ravar.cli import main

sys.exit(main())
