"""The sink of ``plan --out``: the saved plan, written atomically once the run has ended.

Each outcome becomes an entry: ``changed`` ones with what ``apply --plan`` is to write (the
job's desired statuses and mapping) and what was read (the engine's ``before_write`` step,
a :class:`~batchsync.inventory.plan.Recorder`, recorded it); every other one ``none``. The
format is :mod:`batchsync.inventory.plan`'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from batchsync import __version__
from batchsync.files import atomic_write
from batchsync.inventory.plan import FORMAT, VERSION, Entry, Plan, Read, Selection, Source, Write, encode
from batchsync.model import Job
from batchsync.outcome import Outcome
from batchsync.outputs.sink import End, Lost, Start
from batchsync.wire import MappingItem


class PlanContext:
    """What the plan's sink needs beyond the outcomes: the inventory's content hash, the
    selection as given, the jobs by id and what the engine read of those to change."""

    def __init__(
        self, source: Source, selection: Selection, jobs: Mapping[int, Job], reads: Mapping[int, Read]
    ) -> None:
        self.source, self.selection, self.jobs, self.reads = source, selection, jobs, reads


def entry(outcome: Outcome, job: Job | None, read: Read | None) -> Entry:
    name = getattr(outcome, "name", None)  # an outcome that carries the shop's name
    if outcome.result != "changed" or job is None or read is None:
        return Entry(outcome.integration_id, outcome.account, "none", outcome, name=name)
    mapping = None
    if job.mapping is not None:
        mapping = tuple(MappingItem(c, e) for c, e in job.mapping.items)  # type: ignore[arg-type]
    write = Write(job.desired.statuses, mapping)
    return Entry(outcome.integration_id, outcome.account, "change", outcome, name=name, write=write, read=read)


class PlanFile:
    def __init__(self, path: str, start: Start, lost: Lost, context: PlanContext) -> None:
        self.path, self.start, self.lost, self.context = path, start, lost, context
        self.entries: list[Entry] = []

    def add(self, outcome: Outcome) -> None:
        c = self.context
        self.entries.append(entry(outcome, c.jobs.get(outcome.integration_id), c.reads.get(outcome.integration_id)))

    def flush(self) -> None:
        pass  # written whole at the end: half a plan is no plan

    def close(self, end: End | None) -> None:
        if end is None:
            return
        created = dt.datetime.fromtimestamp(self.start.started_at, dt.UTC).isoformat(timespec="seconds")
        plan = Plan(
            format=FORMAT,
            version=VERSION,
            batchsync=__version__,
            created_at=created,
            inventory=self.context.source,
            selection=self.context.selection,
            complete=end.summary.stopped is None,
            integrations=tuple(sorted(self.entries, key=lambda e: (e.account, e.integration_id))),
        )
        try:
            atomic_write(self.path, encode(plan))
        except OSError as exc:
            self.lost.record("--out", self.path, exc)
