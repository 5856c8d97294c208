"""The error of a command line that cannot run, importable without anything heavy (``--version`` stays fast)."""


class UsageError(Exception):
    """A command line that cannot run: printed as ``batchsync: <message>``, exit 2."""
