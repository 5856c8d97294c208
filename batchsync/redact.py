"""Credentials replaced by ``***`` in whatever is printed or written.

One :class:`Redactor` per run knows every credential in each form a server or a log
line could show it (raw, JSON-escaped, base64, percent-encoded, any letter case) and
matches them all in one pass whose cost does not grow with the number of accounts: an
Aho-Corasick automaton (pyahocorasick, in C) over the lower-cased forms. It also hides
any ``Basic`` credential it sees, known or not. (What a server wrote is then made one
safe line by :func:`batchsync.text.one_line`.)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

import ahocorasick

__all__ = ["Redactor"]


# "Basic <token>" as in an Authorization header; the token is base64 of "user:password".
_BASIC = re.compile(r"(\bBasic\s+)([A-Za-z0-9+/_-]{4,}={0,2})", re.IGNORECASE)


def forms(secret: str) -> set[str]:
    """The ways ``secret`` may appear in a text: as is, inside a JSON string (either way
    non-ASCII is escaped), base64-encoded (either alphabet, padded or not), percent-encoded."""
    b64 = base64.b64encode(secret.encode()).decode("ascii")
    out = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        b64,
        # Its padding may be percent-encoded (a query string) or cut, and its alphabet the
        # URL-safe one: matched without the padding, whatever follows.
        b64.rstrip("="),
        b64.rstrip("=").replace("+", "-").replace("/", "_"),
        quote(secret, safe=""),
    }
    return {f for f in out if f}


class _Compiled:
    """What one set of forms is matched with: the gate, and the automaton (built on the
    first text that passes the gate). Never changed once made, but for that automaton,
    which is made from these forms only: a thread that holds one redacts with a gate and
    an automaton that agree, whatever another thread adds meanwhile."""

    __slots__ = ("automaton", "forms", "gate")

    def __init__(self, forms: frozenset[str], gate_min: int) -> None:
        self.forms = forms
        self.automaton: ahocorasick.Automaton | None = None
        self.gate: tuple[bytes, bytes] | None = None  # (translation table, the run to find)
        if forms:
            encoded = [form.encode("utf-8", "surrogatepass") for form in forms]
            shortest = min(len(form) for form in encoded)
            inside = {b for form in encoded for b in form}
            table = bytes(0x61 if b in inside else 0x20 for b in range(256))
            self.gate = (table, b"a" * shortest) if shortest >= gate_min else None

    def build(self) -> ahocorasick.Automaton:
        automaton = ahocorasick.Automaton()
        for form in self.forms:
            automaton.add_word(form, len(form))
        automaton.make_automaton()
        self.automaton = automaton  # two threads may build it at once: either result is right
        return automaton


class Redactor:
    """Replaces known secrets (and any Basic credential) with ``***``.

    Matching is case-insensitive (a server may upper-case what it echoes, or its
    percent-encoding) and longest-first, so a secret containing another goes whole.
    Secrets may be added at any time, from any thread (OAuth2 tokens are issued as a run
    goes, while the outputs' threads redact what they write): the secrets and their forms
    are replaced, never changed in place, and what they are matched with is made again on
    the next use (:class:`_Compiled`).

    The gate: a form can only occur inside a run of bytes that forms are made of, at
    least as long as the shortest form. Most texts (a request logged with -v: a URL,
    numbers, an account's name; a status name) have no such run, and finding one (bytes
    translated through a table, then a search for the run: both in C, under a
    microsecond) costs less than a walk through an automaton of thousands of random keys,
    whose nodes do not fit in the processor's caches: at 2,000 accounts of 32-character
    keys, 8 us a line without the gate, 2 us with it (3 us for one account). UTF-8 keeps
    every occurrence of a form an occurrence of its bytes. Short forms (under GATE_MIN
    bytes) pass the gate on common words: no gate then.

    The automaton is built only when a text passes the gate: with 2,000 accounts of long
    keys it holds a million nodes (40 MB), and a run whose texts never come near a
    credential never needs it.
    """

    __slots__ = ("_compiled", "_forms", "_lock", "_secrets", "generation")

    GATE_MIN = 16  # bytes: the shortest form for which the gate is worth its cost

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()  # add() against add(): no secret lost between two threads
        self._secrets: frozenset[str] = frozenset()
        self._forms: frozenset[str] = frozenset()  # lower-cased
        self._compiled = _Compiled(self._forms, self.GATE_MIN)
        self.generation = 0  # grows with every secret added: what was clean before may not be now
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact these."""
        wanted = {s for s in secrets if s}  # an empty "secret" would match everywhere
        with self._lock:
            new = wanted - self._secrets
            if not new:
                return
            found = {form.lower() for secret in new for form in forms(secret)}
            self._secrets = self._secrets | new
            self._forms = self._forms | found  # last: a reader that sees them sees the secrets too
            self.generation += 1

    def _basic(self, m: re.Match[str]) -> str:
        token = m.group(2)
        # A token followed by more base64-looking characters ("Basic MDow0") is tried
        # whole, then cut to each length a base64 text can have, longest first.
        for end in [len(token), *range(len(token) - len(token) % 4, 3, -4)]:
            try:
                decoded = base64.b64decode(token[:end], validate=False).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            # A token that decodes to "user:password" is a credential, whoever's it is.
            if ":" in decoded or any(s in decoded for s in self._secrets):
                return m.group(1) + "***" + token[end:]
        return m.group(0)

    def __call__(self, text: str) -> str:
        low = text.lower()
        if "basic" in low:  # only then can the Basic pattern match
            text = _BASIC.sub(self._basic, text)
            low = text.lower()
        compiled = self._compiled
        if compiled.forms is not self._forms:  # secrets added since it was made
            compiled = self._compiled = _Compiled(self._forms, self.GATE_MIN)
        if not compiled.forms:
            return text
        if len(low) != len(text):
            # A few characters lower-case to two (U+0130): keep every position where it is.
            low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        gate = compiled.gate
        if gate is not None and gate[1] not in low.encode("utf-8", "surrogatepass").translate(gate[0]):
            return text
        automaton = compiled.automaton if compiled.automaton is not None else compiled.build()
        out: list[str] = []
        last = 0
        for end, length in automaton.iter_long(low):
            start = end - length + 1
            out.append(text[last:start])
            out.append("***")
            last = end + 1
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)
