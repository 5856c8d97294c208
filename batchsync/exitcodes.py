"""The exit codes of every command, in one place: the README's table."""

EXIT_OK = 0  # every selected integration is in its desired state
EXIT_FAILED = 1  # some integrations failed
EXIT_NOT_STARTED = 2  # nothing was sent: usage error or invalid inventory
EXIT_INTERRUPTED = 3  # stopped by a signal or --max-failures
EXIT_CHANGES = 4  # plan --detailed-exitcode found changes
EXIT_OUTPUT_LOST = 5  # the run was done, but an output (--report, --junit, --metrics) could not be written
EXIT_LOCKED = 75  # another apply holds the inventory's lock (EX_TEMPFAIL)
