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
from batchsync.wire import MappingItem, Statuses


class PlanContext:
    """What the plan's sink needs beyond the outcomes: the inventory's content hash, the
    selection as given, the jobs by id and what the engine read of those to change."""

    def __init__(
        self, source: Source, selection: Selection, jobs: Mapping[int, Job], reads: Mapping[int, Read]
    ) -> None:
        self.source, self.selection, self.jobs, self.reads = source, selection, jobs, reads


class PlanFile:
    FLAG = "--out"  # how the run names it lost (a second signal cutting its close: close_all)

    def __init__(self, path: str, start: Start, lost: Lost, context: PlanContext) -> None:
        self.path, self.start, self.lost, self.context = path, start, lost, context
        self.entries: list[Entry] = []
        # Each desired list once: jobs of one status set share one Desired (the loader's).
        self.statuses: dict[str, Statuses] = {}
        self.keys: dict[int, str] = {}  # id(Desired) -> its name in the plan

    def add(self, outcome: Outcome) -> None:
        c = self.context
        job, read = c.jobs.get(outcome.integration_id), c.reads.get(outcome.integration_id)
        name = getattr(outcome, "name", None)  # an outcome that carries the shop's name
        if outcome.result != "changed" or job is None or read is None:
            self.entries.append(Entry(outcome.integration_id, outcome.account, "none", outcome, name=name))
            return
        mapping = None
        if job.mapping is not None:
            mapping = tuple(MappingItem(c, e) for c, e in job.mapping.items)  # type: ignore[arg-type]
        write = Write(self.key(job), mapping)
        self.entries.append(
            Entry(outcome.integration_id, outcome.account, "change", outcome, name=name, write=write, read=read)
        )

    def key(self, job: Job) -> str:
        """The name of the job's desired list in the plan: its status set's, else the
        integration's id (inline statuses), made unique if need be."""
        key = self.keys.get(id(job.desired))
        if key is None:
            key = base = job.source or str(job.integration_id)
            n = 1
            while key in self.statuses:
                n += 1
                key = f"{base}~{n}"
            self.keys[id(job.desired)] = key
            self.statuses[key] = job.desired.statuses
        return key

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
            statuses=self.statuses,
            integrations=tuple(sorted(self.entries, key=lambda e: (e.account, e.integration_id))),
        )
        try:
            atomic_write(self.path, encode(plan))
        except OSError as exc:
            self.lost.record("--out", self.path, exc)
