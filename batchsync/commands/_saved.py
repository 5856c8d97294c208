"""A saved plan in a run: what ``plan --out`` records, and the checks ``apply --plan``
makes before anything is sent (the plan readable and of this version, young enough, made
from this inventory's content), then the jobs it carries out and its check before each
write.

Applying a plan is the ordinary run with another source of desired state (the plan's
writes) and one step more before each write (:class:`~batchsync.inventory.plan.Checker`):
a refusal here is a usage error (exit 2, nothing sent).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from batchsync import __version__, usage
from batchsync.inventory.plan import (
    Checker,
    Plan,
    PlanError,
    Recorder,
    Selection,
    Source,
    age_problem,
    inventory_hash,
    read_plan,
)
from batchsync.model import Desired, DesiredMapping, Inventory, Job
from batchsync.outputs.plan import PlanContext
from batchsync.text import display
from batchsync.usage import UsageError

if TYPE_CHECKING:
    from batchsync.engine.steps import BeforeWrite


class Saved(NamedTuple):
    """A run's saved plan: the engine's step before each write, the sinks' header
    (``apply --plan``: the plan carried out) and what ``plan --out`` writes."""

    before_write: BeforeWrite
    header: dict[str, str] | None = None
    context: PlanContext | None = None


class Loaded(NamedTuple):
    path: str
    sha256: str
    plan: Plan


def read(path: str, max_age: float, now: dt.datetime | None = None) -> Loaded:
    """The plan to apply, or a UsageError saying why it is refused as a whole."""
    if not path.strip():  # an unset variable in a cron line: never an apply of no plan
        raise UsageError("--plan: an empty path; nothing was sent")
    try:
        plan, sha = read_plan(path, __version__)
    except PlanError as exc:
        raise UsageError(f"--plan {exc}; nothing was sent") from None
    why = age_problem(plan, max_age, now or dt.datetime.now(dt.UTC))
    if why is not None:
        raise UsageError(f"--plan {display(path)}: {why}: make a new plan; nothing was sent")
    return Loaded(path, sha, plan)


def for_apply(loaded: Loaded, inv: Inventory, quiet: bool = False) -> tuple[list[Job], Saved]:
    """The jobs the plan changes (its writes as their desired state) and its check; a
    UsageError when the plan is not this inventory's."""
    path, plan = display(loaded.path), loaded.plan
    try:
        now = inventory_hash(inv)
    except PlanError as exc:
        raise UsageError(f"--plan {path}: cannot hash the inventory: {exc}; nothing was sent") from None
    if now != plan.inventory.sha256:
        hashes = f"sha256 {plan.inventory.sha256[:12]} then, {now[:12]} now"
        if os.path.basename(plan.inventory.path) != os.path.basename(inv.path):
            raise UsageError(
                f"--plan {path}: was made from another inventory ({display(plan.inventory.path)}, not "
                f"{display(inv.path)}; {hashes}): make a new plan; nothing was sent"
            )
        raise UsageError(
            f"--plan {path}: was made from another content of the inventory (its files were edited since: "
            f"{hashes}): make a new plan; nothing was sent"
        )
    declared = {j.integration_id: j for j in inv.jobs}
    desired = {key: Desired(statuses) for key, statuses in plan.statuses.items()}  # shared, as the loader's
    jobs: list[Job] = []
    reads = {}
    same: set[tuple[str, int]] = set()
    for entry in plan.integrations:
        job = declared.get(entry.integration_id)
        if job is None or job.account != entry.account:  # one it leaves alone too: the plan was edited
            raise UsageError(
                f"--plan {path}: integration {entry.integration_id} of account {display(entry.account)} is not in "
                "the inventory; nothing was sent"
            )
        if entry.action != "change":
            continue
        assert entry.write is not None and entry.read is not None  # checked when read
        mapping = entry.write.mapping
        wanted = DesiredMapping(tuple((m.status_category, m.external_id) for m in mapping)) if mapping else None
        # The inventory is the one the plan was made from (its hash): the plan's write is what
        # it declares for the integration, or the plan was edited to write something else.
        declared_mapping = job.mapping.items if job.mapping is not None else None
        pair = (entry.write.statuses, id(job.desired))
        if pair not in same and plan.statuses[entry.write.statuses] == job.desired.statuses:
            same.add(pair)  # each (written list, declared list) compared once: a fleet shares them
        if pair not in same or declared_mapping != (wanted.items if wanted is not None else None):
            raise UsageError(
                f"--plan {path}: integration {entry.integration_id}: its write is not what the inventory declares "
                "for it (the plan was edited): make a new plan; nothing was sent"
            )
        jobs.append(msgspec.structs.replace(job, desired=desired[entry.write.statuses], mapping=wanted))
        reads[entry.integration_id] = entry.read
    if not quiet:
        left = len(plan.integrations) - len(jobs)
        cut = "" if plan.complete else " (the plan's run was cut short: only what it read is applied)"
        print(
            f"batchsync: applying the plan {path} (sha256 {loaded.sha256[:12]}): {len(jobs)} integration"
            f"{'s' if len(jobs) != 1 else ''} to change; {left} it does not change left alone{cut}",
            file=sys.stderr,
        )
    return jobs, Saved(Checker(reads), header={"path": loaded.path, "sha256": loaded.sha256})


def for_out(inventory: str, inv: Inventory, jobs: Sequence[Job], selection: Selection) -> Saved:
    """``plan --out``: the step that records what is read, and the file's context
    (``inventory``: its path as given; ``selection``: the run's, as given)."""
    try:
        sha = inventory_hash(inv)
    except PlanError as exc:
        raise UsageError(f"--out: cannot hash the inventory: {exc}") from None
    recorder = Recorder(usage.redactor())  # the run's: the credentials, their tokens as issued
    by_id = {j.integration_id: j for j in jobs}
    context = PlanContext(Source(inventory, sha), selection, by_id, recorder.reads)
    return Saved(recorder, context=context)
