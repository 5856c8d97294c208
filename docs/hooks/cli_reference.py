"""The command reference, written from the parser at build time (a ProperDocs/MkDocs hook).

A page holds a marker where generated Markdown goes:

- ``<!-- generated: exit codes -->``: every exit code and its meaning (``batchsync.exitcodes``);
- ``<!-- generated: command reference -->``: every command and subcommand of
  ``batchsync.cli.build_parser()``: its usage, its arguments and options with their help
  text, and its exit codes from ``batchsync.exitcodes.describe(command)``.

Nothing generated is committed, so an option cannot be added without appearing here;
tests/test_docs_site.py checks every long option of every ``--help`` is in it.
"""

from __future__ import annotations

import argparse
import html
import re
from dataclasses import dataclass
from typing import Any

MARKERS = ("<!-- generated: exit codes -->", "<!-- generated: command reference -->")
USAGE_WIDTH = 88  # the usage lines are wrapped here, whatever the terminal that builds the site


@dataclass
class Command:
    name: str  # "plan", "report merge"; "" for batchsync itself
    parser: argparse.ArgumentParser
    summary: str

    @property
    def title(self) -> str:
        return f"batchsync {self.name}".strip()

    @property
    def anchor(self) -> str:
        return "batchsync-" + self.name.replace(" ", "-") if self.name else "batchsync"


def commands(parser: argparse.ArgumentParser | None = None) -> list[Command]:
    """Every command of the parser, depth first, in the order ``--help`` lists them."""
    if parser is None:
        from batchsync.cli import build_parser

        parser = build_parser()
    found = [Command("", parser, parser.description or "")]
    found += _subcommands(parser, "")
    return found


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> list[Command]:
    found: list[Command] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias
                continue
            seen.add(id(sub))
            full = f"{prefix} {name}".strip()
            found.append(Command(full, sub, helps.get(name, "")))
            found += _subcommands(sub, full)
    return found


def exit_codes(command: str | None) -> list[tuple[int, str]]:
    """The exit codes of ``command`` (None: every code), from the table the code uses."""
    from batchsync.exitcodes import BY_COMMAND, describe

    if command is not None and command not in BY_COMMAND:
        return []  # a group of subcommands (``report``): its subcommands have their own
    return describe(command)


def _text(text: str) -> str:
    """Plain text (a help string) made safe for a Markdown table cell."""
    text = html.escape(" ".join(text.split()), quote=False)
    return re.sub(r"([\\`*_\[\]|#~])", r"\\\1", text)


def _code(text: str) -> str:
    """Literal text in a Markdown table cell: code, its pipes escaped for the table."""
    return "`" + text.replace("|", "\\|") + "`"


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)  # type: ignore[call-arg]


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = _formatter(parser)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter: Any = _formatter(parser)
    if not action.option_strings:
        return str(formatter._format_args(action, action.dest))
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {args}" for option in action.option_strings)


def arguments(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(invocation, help) of each argument ``--help`` shows, in its order. The help text says a
    default where it matters, in the user's units (argparse's stored default may be in bytes)."""
    formatter: Any = _formatter(parser)
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        text = formatter._expand_help(action) if action.help else ""
        rows.append((_invocation(parser, action), text))
    return rows


def command_markdown(command: Command) -> str:
    parser = command.parser
    out = [f"### `{command.title}` {{#{command.anchor}}}", ""]
    description = parser.description or command.summary
    if description:
        out += [_text(description), ""]
    out += ["```text", f"{usage(parser)}", "```", ""]
    subs = [c for c in _subcommands(parser, command.name)]
    direct = [c for c in subs if c.name.count(" ") == command.name.count(" ") + (1 if command.name else 0)]
    if direct:
        out += ["| command | what it does |", "| --- | --- |"]
        out += [f"| [`{c.title}`](#{c.anchor}) | {_text(c.summary)} |" for c in direct]
        out.append("")
    rows = arguments(parser)
    if rows:
        out += ["| argument | meaning |", "| --- | --- |"]
        out += [f"| {_code(inv)} | {_text(text)} |" for inv, text in rows]
        out.append("")
    codes = exit_codes(command.name) if command.name else []
    if codes:
        out += ["| exit code | meaning |", "| --- | --- |"]
        out += [f"| {code} | {_text(text)} |" for code, text in codes]
        out.append("")
    elif command.name:
        out += ["Exit codes: those of its subcommands.", ""]
    return "\n".join(out)


def reference_markdown() -> str:
    return "\n".join(command_markdown(c) for c in commands())


def exit_codes_markdown() -> str:
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| {code} | {_text(text)} |" for code, text in exit_codes(None)]
    return "\n".join(rows) + "\n"


def expand(markdown: str) -> str:
    """``markdown`` with each marker replaced by what it stands for."""
    if MARKERS[0] in markdown:
        markdown = markdown.replace(MARKERS[0], exit_codes_markdown())
    if MARKERS[1] in markdown:
        markdown = markdown.replace(MARKERS[1], reference_markdown())
    return markdown


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # the hook
    return expand(markdown)
