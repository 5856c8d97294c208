"""Every outcome made safe once, before any sink sees it: secrets out, control characters out.

A new sink cannot forget to: the engine hands each outcome through :class:`Sanitizer`.
"""

from __future__ import annotations

import msgspec

from batchsync.diff import Change, MappingChange
from batchsync.outcome import ErrorInfo, Outcome
from batchsync.redact import Redactor
from batchsync.text import one_line


class Sanitizer:
    """Makes outcomes safe to print: secrets out, control characters out.

    ``redactor`` is the run's: it knows the accounts' credentials from the load and each
    OAuth2 token the moment it is issued (:class:`batchsync.sendcloud.transport.HttpApi`).
    """

    CLEAN_MAX = 10_000  # server texts remembered clean (a fleet's shops share their status names)

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        # The diffs' server texts (joined) the redactor found nothing in, while it held the
        # secrets it holds now (its generation): the same names again need no pass.
        self._clean: set[str] = set()
        self._clean_at = -1

    def text(self, value: str) -> str:
        return one_line(value, self.redactor)

    def outcome(self, outcome: Outcome) -> Outcome:
        changes, mapping_changes = self._diffs(outcome)
        error = outcome.error
        if error is None and not outcome.reason and not outcome.warnings:  # a diff alone: most of a run
            if changes is outcome.changes and mapping_changes is outcome.mapping_changes:
                return outcome
            return msgspec.structs.replace(outcome, changes=changes, mapping_changes=mapping_changes)
        if error is not None:
            error = ErrorInfo(
                error.kind,
                error.http_status,
                one_line(error.code, self.redactor, 64) if error.code else error.code,
                self.text(error.detail),
                one_line(error.pointer, self.redactor, 200) if error.pointer else error.pointer,
            )
        return msgspec.structs.replace(
            outcome,
            error=error,
            reason=self.text(outcome.reason) if outcome.reason else outcome.reason,
            warnings=tuple(self.text(w) for w in outcome.warnings),
            changes=changes,
            mapping_changes=mapping_changes,
        )

    def _diffs(self, outcome: Outcome) -> tuple[tuple[Change, ...], tuple[MappingChange, ...]]:
        """The outcome's diffs with credentials masked: the ``before`` side (names and
        languages, a removed status's id, mapped ids) is what a server answered, and a
        server may echo a credential anywhere. That text goes through the redactor joined,
        once; only an outcome where it finds something is redacted, every field of it.
        Control characters stay: every sink quotes these values (JSON, repr, HTML), and a
        name is compared as it is."""
        changes, mapping = outcome.changes, outcome.mapping_changes
        texts: list[str] = []  # the server's side only: the rest is the inventory's
        for c in changes:
            if c.before:
                texts.extend(c.before)
                texts.extend(c.before.values())
                if c.op == "-":  # only a removed status's id is not also the inventory's
                    texts.append(c.external_id)
        if mapping:
            texts.extend(m.before for m in mapping if m.before)
        joined = "\x00".join(texts)
        if not joined:
            return changes, mapping
        r = self.redactor
        if r.generation != self._clean_at:  # a secret added since: nothing is known clean
            self._clean.clear()
            self._clean_at = r.generation
        if joined in self._clean:
            return changes, mapping
        if r(joined) == joined:
            if len(self._clean) >= self.CLEAN_MAX:
                self._clean.clear()
            self._clean.add(joined)
            return changes, mapping

        def names(d: dict[str, str] | None) -> dict[str, str] | None:
            return None if d is None else {r(k): r(v) for k, v in d.items()}

        return (
            tuple(msgspec.structs.replace(c, external_id=r(c.external_id), before=names(c.before), after=names(c.after))
                  for c in changes),
            tuple(msgspec.structs.replace(m, before=r(m.before) if m.before else m.before,
                                          after=r(m.after) if m.after else m.after)
                  for m in mapping),
        )  # fmt: skip
