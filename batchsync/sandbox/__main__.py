"""``python -m batchsync.sandbox``: the same as ``batchsync sandbox``."""

import sys

from batchsync.sandbox.options import main

sys.exit(main())
