"""``python -m rnnlab.runs ...`` = ``rnnlab runs ...``."""

import sys

from rnnlab.runs.cli import runs_main

sys.exit(runs_main(prog="python -m rnnlab.runs"))
