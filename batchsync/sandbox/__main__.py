"""``python -m batchsync.sandbox``: the same as ``batchsync sandbox``."""

import sys

from batchsync.sandbox.cli import main_sandbox

sys.exit(main_sandbox())
