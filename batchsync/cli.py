"""The command line: the parser built from every command's arguments, the dispatch, and
the process's standard streams. No command logic: each verb is a module of
:mod:`batchsync.commands` (``validate``, ``plan``, ``apply``, ``import``, ``report merge``,
``completion``, ``sandbox``) of one shape, listed once in :data:`VERBS`.

Heavy imports (aiohttp, the engine) happen inside the commands that need them, so
``--version`` and ``validate`` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

from batchsync import __version__, eventloop, gcpolicy
from batchsync.exitcodes import EXIT_CHANGES, EXIT_INTERRUPTED, EXIT_NOT_STARTED, EXIT_OK, EXIT_OUTPUT_LOST, describe
from batchsync.usage import UsageError, redact_with, shown
from batchsync.usage import redactor as usage_redactor

if TYPE_CHECKING:  # a type for the checker only: building a Protocol class costs every start

    class Command(Protocol):
        """The shape of every module of :mod:`batchsync.commands`."""

        NAME: str  # its words on the command line: "validate", "report merge"
        SUMMARY: str  # one line, for the list of commands and the head of its --help
        EXAMPLES: tuple[str, str]  # shown under its --help (a test parses every one)

        def add_arguments(self, parser: argparse.ArgumentParser, /) -> None: ...

        def settings(self, args: argparse.Namespace, /) -> Any:
            """Its typed, frozen settings; a UsageError when the arguments cannot run."""

        def run(self, settings: Any, /) -> int: ...


# Every verb: its first word on the command line and its module in batchsync.commands, in
# the order --help lists them. Adding a verb is a module there and a line here.
VERBS = {
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "health": "health",
    "show": "show",
    "import": "import_",  # a keyword
    "report": "report",
    "history": "history",
    "completion": "completion",
    "sandbox": "sandbox",
}


def commands(*words: str) -> list[Command]:
    """The modules of ``words`` (default: every verb), imported now: when the parser is built,
    never for ``--version``. Each imports at module level only argparse, msgspec and the
    light modules of the core."""
    modules = [importlib.import_module(f"batchsync.commands.{VERBS[word]}") for word in words or VERBS]
    return cast("list[Command]", modules)


# A command of two words ("report merge") sits under the first, which says what its group is for.
GROUPS = {"report": ("work with --report files", "merge (the only one so far)")}


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil: argparse builds a
    formatter for every argument it adds, and its default one imports shutil (with zlib,
    bz2 and lzma: 3 ms of every start, ``validate``'s included) just for this number."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    """Wraps a description; keeps an epilog (exit codes, examples) line by line as written."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# Two examples under ``batchsync --help``; each command has its own.
EXAMPLES = (
    "batchsync plan inventories/example.toml --sandbox",
    "batchsync apply inventories/prod.toml --report last.jsonl --metrics batchsync.prom",
)


def examples(command: str | None) -> tuple[str, str]:
    """The two examples under ``batchsync [COMMAND] --help``."""
    if command is None:
        return EXAMPLES
    for c in commands():
        if command == c.NAME:
            return c.EXAMPLES
        # A verb with subcommands of its own (``history runs``): each its two examples.
        subcommands: dict[str, tuple[str, str]] = getattr(c, "SUBCOMMAND_EXAMPLES", {})
        for name, pair in subcommands.items():
            if command == f"{c.NAME} {name}":
                return pair
    raise KeyError(command)


def epilog(command: str | None, shown: Sequence[str] | None = None) -> str:
    """The exit codes ``command`` can end with, then two examples (``shown``, else its own)."""
    lines = ["exit codes:"]
    lines += [f"  {code:<3} {text}" for code, text in describe(command)]
    lines += ["", "examples:"]
    lines += [f"  {example}" for example in (shown if shown is not None else examples(command))]
    return "\n".join(lines) + "\n"


_WORDS: list[str] = []  # the command line being parsed: where a usage error finds the inventory


def usage_text(text: str, words: Sequence[str] | None = None) -> str:
    """A usage error's message as it may be printed: through the run's redactor once there
    is one; before that (argparse's own errors, a setting checked before the inventory is
    read) through one made from the credentials of the inventory the command line names,
    so that a value given by mistake (``--shard "$SECRET"``) never comes out. Control
    characters are spelled out: a value typed with an escape sequence acts on no terminal."""
    from batchsync.text import escape_controls

    if usage_redactor() is not None:
        return shown(text)
    for word in words if words is not None else _WORDS:
        redact = _inventory_redactor(word)
        if redact is not None:
            return escape_controls(redact(text))
    return escape_controls(text)


def _inventory_redactor(word: str) -> Callable[[str], str] | None:
    """A redactor of the credentials of the inventory ``word`` names, if it names one."""
    if word.startswith("-") or not os.path.isfile(word):
        return None
    try:
        from batchsync.inventory.loader import load
        from batchsync.redact import Redactor

        inv = load(word, isolate_credentials=True)
        secrets = [v for a in inv.accounts.values() for v in a.echoes()]
    except Exception:  # no inventory after all: a file the command reads otherwise
        return None
    return Redactor(secrets) if secrets else None


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its errors (which quote the value given) printed as :func:`usage_text`."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {usage_text(message)}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line's parser (the docs' command reference is generated from it);
    with ``only`` (a verb), the same parser with that verb's branch alone: what a command
    line that starts with it needs, without importing every other command."""
    parser = _Parser(
        prog="batchsync",
        description="Keep the shop order statuses of many Sendcloud integrations in their desired state.",
        epilog=epilog(None),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"batchsync {__version__}")
    parser.set_defaults(parser=parser)  # for the completion script, which is written from it
    # ``prog`` given: argparse would otherwise build a help formatter to work it out, and
    # a formatter imports shutil (and with it bz2 and lzma) on every start, --version too.
    sub = parser.add_subparsers(
        prog="batchsync",
        dest="command",
        metavar="COMMAND",
        required=True,
        help="one of these; batchsync COMMAND --help for its own",
    )
    groups: dict[str, argparse._SubParsersAction[_Parser]] = {}
    for command in commands(*filter(None, [only])):
        *group, name = command.NAME.split()
        into = sub
        if group:
            (first,) = group
            if first not in groups:
                summary, choices = GROUPS[first]
                g = sub.add_parser(
                    first,
                    help=summary,
                    description=summary[:1].upper() + summary[1:] + ".",
                    epilog=epilog(command.NAME, command.EXAMPLES),
                    formatter_class=_Formatter,
                )
                groups[first] = g.add_subparsers(
                    prog=f"batchsync {first}",
                    dest=f"{first}_command",
                    metavar="SUBCOMMAND",
                    required=True,
                    help=choices,
                )
            into = groups[first]
        p = into.add_parser(
            name,
            help=command.SUMMARY,
            description=command.SUMMARY[:1].upper() + command.SUMMARY[1:] + ".",
            epilog=epilog(command.NAME, command.EXAMPLES),
            formatter_class=_Formatter,
        )
        command.add_arguments(p)
        for action in p._actions:  # a verb's own subcommands (history runs): their codes and examples
            if isinstance(action, argparse._SubParsersAction):
                for word, subparser in action.choices.items():
                    subparser.epilog = epilog(f"{command.NAME} {word}")
                    subparser.formatter_class = _Formatter
        p.set_defaults(command_module=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the parser is built or the arguments read: before any work
        print("batchsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `batchsync ... | head`: the reader left; say nothing more
        from batchsync.outputs.streams import discard_stdout

        discard_stdout()
        return EXIT_OK
    except OSError as exc:
        # A write to stdout that failed: unbuffered (PYTHONUNBUFFERED), the write itself
        # raises; buffered, the flush does, and stdout still cannot take what it holds.
        if exc.filename is not None or not (exc.errno in _DISK_FULL or _stdout_failing()):
            raise
        return _stdout_lost(exc, EXIT_OK)
    finally:
        logs = sys.modules.get("batchsync.outputs.logs")  # loaded by the commands that log
        if logs is not None:
            logs.flush_logs()  # the lines a buffered handler still holds


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Each command line starts with no run's redactor: one an earlier command in this process
    # registered (main called twice, as the tests do) knows another inventory's credentials,
    # and would let this one's usage error print its own.
    redact_with(None)
    if words == ["--version"]:  # without building every subcommand's parser
        print(f"batchsync {__version__}")
        return EXIT_OK
    # A command line that starts with a verb parses the same with that verb's branch alone;
    # the completion script is the whole parser's.
    verb = words[0] if words and words[0] in VERBS and words[0] != "completion" else None
    parser = build_parser(verb)
    _WORDS[:] = words
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    command: Command = args.command_module
    try:
        # The one place a Namespace is read: each command turns it into its typed settings.
        settings = command.settings(args)
        eventloop.choice()  # a $BATCHSYNC_EVENT_LOOP that names no loop: a usage error before anything runs
        gcpolicy.started()  # start-up is over (see entry): the command's own policy from here
        return int(command.run(settings))
    except UsageError as exc:
        print(f"batchsync: {usage_text(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except KeyboardInterrupt:
        print("batchsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``batchsync`` command: :func:`main`, then exit without the interpreter's teardown.

    Every output is complete by then (the report fsynced, JUnit and metrics renamed into
    place, stdout and stderr flushed below); tearing down the modules and objects of a
    large run only delays the exit (0.1 s at 3,000 integrations, more at 100,000), which
    is the time a scheduler waits for the next job.
    """
    # No cyclic collection while the command's modules are imported and its settings made;
    # what that makes is frozen once the command starts (batchsync.gcpolicy.started).
    gcpolicy.starting()
    _standard_streams()
    from batchsync.outputs.streams import SafeStderr, stderr_failure

    sys.stderr = SafeStderr(sys.stderr)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A locale whose encoding lacks a character of a status name (Latin-1, ASCII):
        # escaped, as on stderr, not a traceback half way through a run.
        sys.stdout.reconfigure(errors="backslashreplace")
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the reader left: nothing more to say
    except (OSError, ValueError) as exc:  # a full disk: what a command printed last is lost
        code = _stdout_lost(exc, code)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    if stderr_failure() is not None and code in (EXIT_OK, EXIT_CHANGES):
        code = EXIT_OUTPUT_LOST  # what it said is lost: a failure or a stop says more, and stays
    os._exit(code)


def _stdout_failing() -> bool:
    """Whether stdout cannot take what it buffers (a full disk, an I/O error)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _stdout_lost(exc: OSError | ValueError, code: int) -> int:
    """Says on stderr that stdout was not written in full; the exit code that says so too
    (a failure or a stop says more, and stays)."""
    from batchsync.outputs.streams import discard_stdout

    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    with contextlib.suppress(OSError, ValueError):
        print(f"batchsync: stdout was not written: {why}", file=sys.stderr, flush=True)
    discard_stdout()
    return EXIT_OUTPUT_LOST if code in (EXIT_OK, EXIT_CHANGES) else code


def _standard_streams() -> None:
    """A closed stdin, stdout or stderr (``2>&-``) becomes ``/dev/null``.

    Python starts with ``sys.stderr = None`` then, and the first socket the run opens
    would take the free descriptor: a line written to "stderr" would go to a server. A
    run with stderr closed exited 1 although every integration converged (flushing None
    at the end raised, and the traceback had nowhere to go)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        opened = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
        if opened != fd:
            os.dup2(opened, fd)
            os.close(opened)
        if getattr(sys, name) is None:  # the process's stream, open until it exits
            stream = open(fd, mode, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
