"""The one rule of what no output shows raw and no name in an inventory may hold, and the
escapes built on it.

The rule (:data:`CONTROLS`): C0 and C1 controls, DEL, the line and paragraph separators,
the bidi marks (U+061C, U+200E/F), embeddings, overrides and isolates (U+202A-E,
U+2066-9), lone surrogates, and the two non-characters XML refuses. A terminal acts on
the controls (an escape sequence retitles it, clears it, forges a line), XML refuses most
of them, and the bidi characters reorder or hide what a line says.

``validate`` refuses them in names (:func:`control_in`); every sink spells them out in
whatever it did not write itself (:func:`escape_controls`, :func:`quoted`, :func:`display`:
the terminal, JUnit, metrics, HTML, notifications, JSON); server text is made one line
once (:func:`one_line`). A sink whose format refuses more (HTML's non-characters) or
escapes its own way (XML, Slack, HTML entities) builds on these.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["CONTROLS", "control_in", "display", "escape_controls", "one_line", "quoted", "spelled"]

BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff"
SEPARATORS = "\u2028\u2029"
CONTROLS = "\x00-\x1f" + BEYOND_C0  # a character class's ranges
# Zero-width characters are no part of the rule (an emoji sequence joins with U+200D, and a
# name may hold one), but in server text, made one line, they only hide: removed there.
ZERO_WIDTH = "\u200b-\u200d"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The rule's patterns: every character of it; all but tab and line feed; what
    :func:`one_line` removes. Compiled at their first use, not at import: their ranges
    beyond Latin-1 take 1.5 ms to compile, which a run's first request need not wait for."""
    return (
        re.compile(f"[{CONTROLS}]"),
        re.compile(f"[\x00-\x08\x0b-\x1f{BEYOND_C0}]"),  # tab and line feed kept
        # The rule's characters, but for the whitespace that one_line collapses into one space
        # (tab, line feed, carriage return, the separators), and the zero-width ones.
        re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{BEYOND_C0.replace(SEPARATORS, '')}{ZERO_WIDTH}]"),
    )


def control_in(text: str) -> str | None:
    """The first character of ``text`` the rule refuses, or None."""
    if text.isascii() and text.isprintable():
        return None
    m = _patterns()[0].search(text)
    return m.group() if m else None


def spelled(char: str) -> str:
    """One character as it is shown instead of itself: ``\\x1b``, ``\\u202e``, ``\\U0010fffe``."""
    c = ord(char)
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"


def _spelled(m: re.Match[str]) -> str:
    return spelled(m.group())


def escape_controls(text: str, *, lines: bool = False) -> str:
    """``text`` with every character of the rule spelled out (``\\x1b``, ``\\u202e``): shown,
    never acted on. ``lines``: tab and line feed are kept (a multi-line text in XML)."""
    if text.isascii() and text.isprintable():
        return text
    every, but_lines, _ = _patterns()
    return (but_lines if lines else every).sub(_spelled, text)


@functools.cache
def _raw_in_json() -> re.Pattern[str]:
    """The rule's characters that JSON lets through raw: compiled at first use, not at every
    start (its ranges beyond Latin-1 cost 0.4 ms to compile)."""
    return re.compile(f"[{BEYOND_C0}]+")


def json_escape(match: re.Match[str]) -> str:
    """The matched characters as JSON's ``\\uXXXX`` escapes (UTF-16 units: a pair beyond the BMP)."""
    units = match.group().encode("utf-16-be", "surrogatepass")
    return "".join([f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2)])


def json_spelled(text: str) -> str:
    """JSON ``text`` with the rule's characters that JSON lets through raw (DEL, C1 controls,
    bidi characters: a terminal acts on some) written ``\\uXXXX``: the same JSON, as they can
    only be inside strings."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _raw_in_json().sub(json_escape, text)


def json_safe(data: bytes) -> bytes:
    """:func:`json_spelled` for encoded JSON (a file's line: ``tail -f`` a report on a
    terminal). An ASCII text (most lines) costs one scan in C."""
    if b"\x7f" not in data and (
        data.isascii()
        # Beyond ASCII, the first bytes of the rule's characters in UTF-8: C2 (the C1 controls),
        # E2 (U+200E-2069), D8 (U+061C), ED (surrogates), EF (U+FFFE, U+FFFF). Accented letters
        # (é is C3 A9), most scripts and emoji have none of them.
        or not (b"\xc2" in data or b"\xe2" in data or b"\xd8" in data or b"\xed" in data or b"\xef" in data)
    ):
        return data
    text = data.decode("utf-8", "surrogatepass")
    escaped = json_spelled(text)
    return data if escaped is text else escaped.encode("utf-8", "surrogatepass")


_json_string: Callable[[object], str] | None = None


def quoted(text: str | None) -> str:
    """``text`` as a JSON string (quotes, backslashes and line breaks escaped, so it cannot
    break the line it is in), with the rule's characters spelled out."""
    if isinstance(text, str) and text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # what JSON makes of it: nothing to escape (a name, mostly; per outcome line)
    global _json_string
    if _json_string is None:  # made once: json.dumps builds a new encoder on every call given an option
        import json

        _json_string = json.JSONEncoder(ensure_ascii=False).encode
    return escape_controls(_json_string(text))


def display(text: str) -> str:
    """A name, a path or a value as it may be printed: as it is, or :func:`quoted` when it
    holds a character of the rule (a newline or an escape in it cannot forge or hide a line)."""
    return text if control_in(text) is None else quoted(text)


def strip_controls(text: str) -> str:
    """``text`` without the characters :func:`one_line` removes."""
    return _patterns()[2].sub("", text)


def one_line(text: str, redact: Callable[[str], str] | None = None, limit: int = 1000) -> str:
    """What a server wrote, as one safe line: the rule's characters removed, whitespace
    collapsed, then redacted (a secret split by a NUL or a bidi mark is whole again by then),
    then cut (which can then leave no half of a secret) to at most ``limit``."""
    text = " ".join(strip_controls(text).split())
    if redact is not None:
        text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
