"""``batchsync completion bash|zsh|fish``: print a static shell completion script.

shtab writes the script from the argparse parser itself, so it never drifts from the
options; it is imported by this command alone, so no other command starts slower (where
argcomplete would start Python and build the parser on every Tab).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import msgspec

from batchsync.exitcodes import EXIT_OK

NAME = "completion"
SUMMARY = "print a shell completion script"
EXAMPLES = (
    "batchsync completion bash > ~/.local/share/bash-completion/completions/batchsync",
    "batchsync completion fish > ~/.config/fish/completions/batchsync.fish",
)
SHELLS = ("bash", "zsh", "fish")

# Arguments whose metavar says they name a file complete file names; the rest complete
# their choices, if any.
FILE_METAVARS = frozenset({"INVENTORY", "PATH", "REPORT", "FILE"})


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from _parsers(sub)


def mark_files(parser: argparse.ArgumentParser) -> None:
    """Tell shtab which arguments name files (``action.complete``, its convention)."""
    import shtab

    for p in _parsers(parser):
        for action in p._actions:
            if action.metavar in FILE_METAVARS and not hasattr(action, "complete"):
                action.complete = shtab.FILE  # type: ignore[attr-defined]


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell`` (one of :data:`SHELLS`)."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}: choose one of {', '.join(SHELLS)}")
    import shtab

    mark_files(parser)
    text: str = shtab.complete(parser, shell=shell)
    return text if text.endswith("\n") else text + "\n"


# Where each shell looks for a script, as the manual says (for the command's help).
INSTALL = {
    "bash": "batchsync completion bash > ~/.local/share/bash-completion/completions/batchsync",
    "zsh": "mkdir -p ~/.zfunc && batchsync completion zsh > ~/.zfunc/_batchsync",
    "fish": "batchsync completion fish > ~/.config/fish/completions/batchsync.fish",
}


class CompletionSettings(msgspec.Struct, frozen=True):
    shell: str
    parser: argparse.ArgumentParser  # the whole command line's, which the script completes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell the script is for")


def settings(args: argparse.Namespace) -> CompletionSettings:
    # The parser that read this command line: batchsync.cli gives it to every command.
    parser: argparse.ArgumentParser = args.parser
    return CompletionSettings(args.shell, parser)


def run(settings: CompletionSettings) -> int:
    sys.stdout.write(script(settings.parser, settings.shell))
    return EXIT_OK
