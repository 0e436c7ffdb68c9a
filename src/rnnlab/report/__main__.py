"""``python -m rnnlab.report <logdir> [--out DIR]``: the comparison report of a log directory."""

import sys

from rnnlab.report import main

sys.exit(main())
