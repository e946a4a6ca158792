"""``python -m mnv3compile.cli ARGS``: the console script, run by a given interpreter (tests, tools)."""

import sys

from mnv3compile.cli import main

sys.exit(main())
