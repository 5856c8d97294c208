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
import math
import re
import threading
from collections.abc import Iterable
from typing import NamedTuple
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


class _Part(NamedTuple):
    """Some secrets, their forms (lower-cased), and what the gate needs of those forms (the
    bytes they are made of, the shortest one's length): kept as they are added, so that a
    gate is made in 256 steps, whatever the number of forms."""

    secrets: frozenset[str] = frozenset()
    forms: frozenset[str] = frozenset()
    inside: frozenset[int] = frozenset()
    shortest: int = 0

    @classmethod
    def of(cls, secrets: frozenset[str]) -> _Part:
        found = frozenset(form.lower() for secret in secrets for form in forms(secret))
        encoded = [form.encode("utf-8", "surrogatepass") for form in found]
        return cls(secrets, found, frozenset(b"".join(encoded)), min(map(len, encoded), default=0))

    def __or__(self, other: object) -> _Part:
        assert isinstance(other, _Part)
        if not other.forms:
            return self
        if not self.forms:
            return other
        shortest = min(self.shortest, other.shortest)
        return _Part(self.secrets | other.secrets, self.forms | other.forms, self.inside | other.inside, shortest)


class _Compiled:
    """What one part's forms are matched with: the gate, and the automaton (built on the
    first text that passes the gate). Never changed once made, but for that automaton,
    which is made from these forms only: a thread that holds one redacts with a gate and
    an automaton that agree, whatever another thread adds meanwhile."""

    __slots__ = ("automaton", "forms", "gate")

    def __init__(self, part: _Part, gate_min: int) -> None:
        self.forms = part.forms
        self.automaton: ahocorasick.Automaton | None = None
        self.gate: tuple[bytes, bytes] | None = None  # (translation table, the run to find)
        if part.forms and part.shortest >= gate_min:
            table = bytes(0x61 if b in part.inside else 0x20 for b in range(256))
            self.gate = (table, b"a" * part.shortest)

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

    __slots__ = ("_compiled", "_lock", "_parts", "generation")

    GATE_MIN = 16  # bytes: the shortest form for which the gate is worth its cost
    EXTRA_MIN = 64  # forms the later additions may hold before they are merged into the main part...

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()  # add() against add(): no secret lost between two threads
        # The secrets in two parts: the main one, and the later additions (OAuth2 tokens,
        # issued one by one as a run goes), merged into it once they hold more forms than
        # EXTRA_MIN or the square root of the main part's (what makes adding n tokens cost
        # about n * sqrt(forms), not n * forms: at 2,000 accounts a token added and a text
        # redacted took 20 ms when every add made the one set and its gate anew). One
        # attribute, replaced whole: a reader never sees one part new and the other old.
        self._parts: tuple[_Part, _Part] = (_Part(), _Part())
        empty = _Compiled(_Part(), self.GATE_MIN)
        self._compiled = (empty, empty)  # the main part's, the additions'
        self.generation = 0  # grows with every secret added: what was clean before may not be now
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact these."""
        wanted = {s for s in secrets if s}  # an empty "secret" would match everywhere
        with self._lock:
            base, extra = self._parts
            new = frozenset(wanted - base.secrets - extra.secrets)
            if not new:
                return
            extra = extra | _Part.of(new)
            if len(extra.forms) > max(self.EXTRA_MIN, math.isqrt(len(base.forms))):
                base, extra = base | extra, _Part()
            self._parts = (base, extra)
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
            if ":" in decoded or any(s in decoded for part in self._parts for s in part.secrets):
                return m.group(1) + "***" + token[end:]
        return m.group(0)

    def __call__(self, text: str) -> str:
        if "basic" in text.lower():  # only then can the Basic pattern match
            text = _BASIC.sub(self._basic, text)
        base, extra = self._compiled
        main, more = self._parts
        if base.forms is not main.forms or extra.forms is not more.forms:  # secrets added since they were made
            base = base if base.forms is main.forms else _Compiled(main, self.GATE_MIN)
            extra = extra if extra.forms is more.forms else _Compiled(more, self.GATE_MIN)
            self._compiled = (base, extra)
        if extra.forms:  # the later additions first: a token is longer than any key it could hold
            text = self._replace(extra, text)
        return self._replace(base, text) if base.forms else text

    @staticmethod
    def _replace(compiled: _Compiled, text: str) -> str:
        low = text.lower()
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
