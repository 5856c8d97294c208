"""The Redactor shared between threads: the event loop adds OAuth2 tokens as a run goes
(batchsync.outputs.sanitize) while the outputs' threads (the history's writer, the
notifications) redact what they write with the same instance."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import ahocorasick
import pytest

import batchsync.redact as redact_module
from batchsync.redact import Redactor


class _AddingAutomaton:
    """An automaton whose first add_word lets another secret in: what a thread that adds a
    token while this one builds its automaton does."""

    def __init__(self, redactor: Redactor, secret: str) -> None:
        self._real = ahocorasick.Automaton()
        self._redactor, self._secret = redactor, secret

    def add_word(self, word: str, value: int) -> bool:
        if self._secret:
            secret, self._secret = self._secret, ""
            self._redactor.add([secret])
        return bool(self._real.add_word(word, value))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_secret_added_while_the_automaton_is_built_neither_breaks_it_nor_is_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redactor = Redactor(["first-secret-value-1234"])
    late = "late-token-value-5678"

    class Module:
        @staticmethod
        def Automaton() -> _AddingAutomaton:  # pyahocorasick's name
            return _AddingAutomaton(redactor, late)

    monkeypatch.setattr(redact_module, "ahocorasick", Module)
    # The build that the add interrupts: it finishes with what it started from.
    assert redactor("a first-secret-value-1234 b") == "a *** b"
    monkeypatch.undo()
    # The next text is matched against both.
    assert redactor(f"x first-secret-value-1234 {late} y") == "x *** *** y"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switched as often as the interpreter can: the interleavings a busy run has."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


@pytest.mark.usefixtures("fast_switching")
def test_threads_adding_and_redacting_at_once_never_fail_nor_show_a_secret_added_before() -> None:
    redactor = Redactor(["fixed-secret-key-000000"])
    tokens = [f"token-{i:04d}-{'x' * 24}" for i in range(300)]
    added: list[str] = []  # in order; a redacting thread reads how many were in before its call
    errors: list[BaseException] = []
    leaks: list[str] = []
    done = threading.Event()

    def adder() -> None:
        try:
            for token in tokens:
                redactor.add([token])
                added.append(token)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                known = len(added)
                if not known:
                    continue
                secrets = added[max(0, known - 3) : known]
                line = "GET /x?token=" + " and ".join(secrets) + " fixed-secret-key-000000"
                out = redactor(line)
                leaks.extend(s for s in secrets if s in out)
                if "fixed-secret-key-000000" in out:
                    leaks.append("fixed-secret-key-000000")
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    adding = threading.Thread(target=adder)
    adding.start()
    adding.join(60)
    for t in readers:
        t.join(60)
    assert errors == []
    assert leaks == []
    assert len(added) == len(tokens)
    assert redactor(" ".join(tokens)) == " ".join(["***"] * len(tokens))


def test_tokens_added_one_by_one_are_all_redacted_across_the_merges_of_the_parts() -> None:
    """Tokens are added one at a time as a run goes (an OAuth2 fleet's: thousands), each to
    a small part merged into the main one now and then: whatever part a secret is in, it
    is redacted, in every form, the keys of the start too; an empty one matches nothing."""
    import base64

    keys = [f"key-{i:04d}-{'k' * 20}" for i in range(300)]
    redactor = Redactor(keys)
    tokens = [f"tok{i:05d}{'t' * 24}" for i in range(700)]
    for i, token in enumerate(tokens):
        redactor.add([token, ""])
        assert redactor(f"Bearer {token}.") == "Bearer ***.", i
        assert redactor(f"k={tokens[i // 2].upper()}") == "k=***"
    parts = redactor._parts
    assert len(parts[1].forms) < len(parts[0].forms)  # merged along the way, not one growing part
    for secret in [*keys[::37], *tokens[::53]]:
        encoded = base64.b64encode(secret.encode()).decode()
        assert redactor(f"[{secret}] [{encoded.rstrip('=')}] [{secret.swapcase()}]") == "[***] [***] [***]"
    assert redactor("nothing here") == "nothing here"
