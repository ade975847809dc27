"""``python -m experiments``: run every experiment, figure and the README table (see :mod:`experiments.run_all`)."""

import sys

from experiments.run_all import main

sys.exit(main())
