"""The one rule of what no output shows raw, and no name in an inventory may hold.

C0 and C1 controls, DEL, the line and paragraph separators, the bidi marks (U+061C,
U+200E/F), embeddings, overrides and isolates (U+202A-E, U+2066-9), lone surrogates, and
the two non-characters XML refuses: a terminal acts on the controls (an escape sequence
retitles it, clears it, forges a line), XML refuses most of them, and the bidi characters
reorder or hide what a line says. ``validate`` refuses them in names (batchsync.inventory);
every sink spells them out in whatever it did not write itself (:func:`escape_controls`:
the terminal, JUnit, metrics, HTML, notifications, JSON), and server text is stripped of
them once (batchsync.redact.printable). Kept apart from the redactor so that ``validate``
loads no more than it needs.
"""

from __future__ import annotations

import re

__all__ = ["CONTROLS", "control_in", "escape_controls"]

BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff"
SEPARATORS = "\u2028\u2029"
CONTROLS = "\x00-\x1f" + BEYOND_C0  # a character class's ranges
_CONTROL = re.compile(f"[{CONTROLS}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{BEYOND_C0}]")  # tab and line feed kept


def control_in(text: str) -> str | None:
    """The first character of ``text`` the rule refuses, or None."""
    if text.isascii() and text.isprintable():
        return None
    m = _CONTROL.search(text)
    return m.group() if m else None


def spelled(char: str) -> str:
    """One character as it is shown instead of itself: ``\\x1b``, ``\\u202e``."""
    c = ord(char)
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def _spelled(m: re.Match[str]) -> str:
    return spelled(m.group())


def escape_controls(text: str, *, lines: bool = False) -> str:
    """``text`` with every character of the rule spelled out (``\\x1b``, ``\\u202e``): shown,
    never acted on. ``lines``: tab and line feed are kept (a multi-line text in XML)."""
    if text.isascii() and text.isprintable():
        return text
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_spelled, text)
