from batchsync.cli import entry

entry()
