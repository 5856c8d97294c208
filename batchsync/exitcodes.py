"""The exit codes of every command, in one place: the manual's tables and each ``--help``, and
the rule that gives a run (or a merge of runs) its code."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchsync.outcome import Summary

EXIT_OK = 0  # every selected integration is in its desired state
EXIT_FAILED = 1  # some integrations failed
EXIT_NOT_STARTED = 2  # nothing was sent: usage error or invalid inventory
EXIT_INTERRUPTED = 3  # stopped by a signal or --max-failures
EXIT_CHANGES = 4  # plan --detailed-exitcode found changes
EXIT_OUTPUT_LOST = 5  # the run was done, but an output (--report, --junit, --metrics, stdout) could not be written
EXIT_LOCKED = 75  # another apply holds the inventory's lock or an account's (EX_TEMPFAIL)

MEANING: dict[int, str] = {
    EXIT_OK: "every selected integration is in its desired state",
    EXIT_FAILED: "some integrations failed; the others were done",
    EXIT_NOT_STARTED: "nothing was sent: a usage error or an invalid inventory",
    EXIT_INTERRUPTED: "stopped (SIGTERM/SIGINT, --max-failures) before every integration was done",
    EXIT_CHANGES: "plan --detailed-exitcode found changes to make",
    EXIT_OUTPUT_LOST: "the run was done, but an output (--report, --html, --junit, --metrics, --out, the run history, "
    "stdout, stderr) could not be written (a full disk, a database out of reach): it is named on stderr (if stderr "
    "itself can be written); 1 and 3 take precedence",
    EXIT_LOCKED: "another apply holds the lock of the same inventory, or of a Sendcloud account this run needs, "
    "or another run writes the same --report file (the message names which): try again later",
}

# The codes each command can end with; a text where a code means something narrower there.
_MERGED = "the code one unsharded run would have had"
_HISTORY_UNREAD = "a usage error, or the store cannot be opened or read (named on stderr)"
_STDOUT_LOST = "stdout or stderr could not be written (a full disk): said on stderr where it can be"
BY_COMMAND: dict[str, dict[int, str | None]] = {
    "validate": {
        EXIT_OK: "the inventory is valid",
        EXIT_NOT_STARTED: "the inventory is invalid, or a usage error",
        EXIT_OUTPUT_LOST: f"the inventory is valid, but {_STDOUT_LOST}",
    },
    "plan": {
        EXIT_OK: "nothing to change (without --detailed-exitcode: changes or not)",
        EXIT_FAILED: None,
        EXIT_NOT_STARTED: None,
        EXIT_INTERRUPTED: None,
        EXIT_CHANGES: None,
        EXIT_OUTPUT_LOST: None,
        EXIT_LOCKED: "another run writes the same --report file: nothing was sent",
    },
    "apply": {
        EXIT_OK: None,
        EXIT_FAILED: None,
        EXIT_NOT_STARTED: None,
        EXIT_INTERRUPTED: None,
        EXIT_OUTPUT_LOST: None,
        EXIT_LOCKED: None,
    },
    "health": {
        EXIT_OK: "every selected account's exception logs were read (failing shops are shown, not an error)",
        EXIT_FAILED: "some account's exception logs could not be read (named on stderr and in the output); "
        "the others were read",
        EXIT_NOT_STARTED: "nothing was read: a usage error or an invalid inventory",
        EXIT_OUTPUT_LOST: _STDOUT_LOST,
    },
    "show": {
        EXIT_OK: "the plan was shown (and its HTML page written)",
        EXIT_NOT_STARTED: "the plan cannot be read (missing, malformed, of another format version), or a usage error",
        EXIT_OUTPUT_LOST: "the HTML page or stdout could not be written",
    },
    "import": {
        EXIT_OK: "the new inventory was written: every selected account listed, every integration read",
        EXIT_FAILED: "the new inventory was written, but an account's list or some integrations could not be read "
        "(named on stderr), or the written file has problems; or an account's list went past a bound "
        "(--max-list-*), or the new file could not be written (a full disk: the old one is kept): nothing was "
        "written",
        EXIT_NOT_STARTED: "nothing was read: a usage error or an invalid inventory",
        EXIT_INTERRUPTED: "stopped by SIGTERM/SIGINT: nothing was written",
        EXIT_OUTPUT_LOST: "the new inventory was written, but stdout or the run history could not be: said on stderr",
    },
    "report merge": {
        EXIT_OK: f"every integration is in its desired state: {_MERGED}",
        EXIT_FAILED: f"some integrations failed: {_MERGED}",
        EXIT_NOT_STARTED: "the reports cannot be read as one run, or a usage error",
        EXIT_INTERRUPTED: "a shard stopped early, or its report is missing or cut short",
        EXIT_CHANGES: "plan reports with --detailed-exitcode found changes",
        EXIT_OUTPUT_LOST: "the reports were merged, but an output (--junit, --metrics, --html, the run history, "
        "stdout) could not be written: it is named on stderr; 1 and 3 take precedence",
    },
    "completion": {
        EXIT_OK: "the script was printed",
        EXIT_NOT_STARTED: "a usage error",
        EXIT_OUTPUT_LOST: _STDOUT_LOST,
    },
    "sandbox": {
        EXIT_OK: "stopped by SIGTERM/SIGINT",
        EXIT_NOT_STARTED: "cannot start: a usage error, an invalid inventory or seed, a port in use",
        EXIT_OUTPUT_LOST: _STDOUT_LOST,
    },
    "history": {
        EXIT_OK: "answered (an empty answer too)",
        EXIT_FAILED: "history show: no such run",
        EXIT_NOT_STARTED: _HISTORY_UNREAD,
        EXIT_OUTPUT_LOST: _STDOUT_LOST,
    },
    **{
        f"history {verb}": {
            EXIT_OK: "answered (an empty answer too)",
            EXIT_NOT_STARTED: _HISTORY_UNREAD,
            EXIT_OUTPUT_LOST: _STDOUT_LOST,
        }
        for verb in ("runs", "integration", "failing", "prune")
    },
    "history show": {
        EXIT_OK: "the run was shown",
        EXIT_FAILED: "no run of that id in the store",
        EXIT_NOT_STARTED: _HISTORY_UNREAD,
        EXIT_OUTPUT_LOST: _STDOUT_LOST,
    },
}


def describe(command: str | None = None) -> list[tuple[int, str]]:
    """(code, meaning) for ``command`` (a key of :data:`BY_COMMAND`), or every code."""
    if command is None:
        return list(MEANING.items())
    return [(code, text or MEANING[code]) for code, text in BY_COMMAND[command].items()]


def exit_code(summary: Summary, mode: str, detailed: bool) -> int:
    """A plan's or an apply's code from its summary (``detailed``: plan --detailed-exitcode)."""
    # Stopped, but every integration got a real outcome anyway: judge it by those.
    if summary.stopped is not None and summary.total("skipped"):
        return EXIT_INTERRUPTED
    if summary.total("failed"):
        return EXIT_FAILED
    if summary.total("skipped"):
        return EXIT_INTERRUPTED
    if mode == "plan" and detailed and summary.total("changed"):
        return EXIT_CHANGES
    return EXIT_OK
