"""``batchsync sandbox``: serve a local Sendcloud-compatible sandbox until SIGINT or SIGTERM.

The sandbox is a program of its own (``python -m batchsync.sandbox``): its options and their
checks are :mod:`batchsync.sandbox.options`, which this verb offers as they are.
"""

from __future__ import annotations

from batchsync.sandbox.options import SandboxSettings as SandboxSettings
from batchsync.sandbox.options import add_arguments as add_arguments
from batchsync.sandbox.options import run as run
from batchsync.sandbox.options import settings as settings

NAME = "sandbox"
SUMMARY = "serve a local Sendcloud-compatible sandbox"
EXAMPLES = (
    "batchsync sandbox --port 0 --inventory inventories/example.toml --in-sync 0.5",
    "batchsync sandbox --fault-503 0.1 --latency 0.01:0.05",
)
