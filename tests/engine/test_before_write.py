"""The engine's one step for saved plans (``before_write``), against the in-memory API.

Called once for each integration with something to change, after its reads, with its
mapping read too; its ErrorInfo fails that integration alone, before any write; without
it (an ordinary run) nothing changes: no extra read, the same requests.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
from fake_api import FakeApi, run_virtual
from inventory_factory import make_inventory

from batchsync.engine.engine import Engine
from batchsync.engine.options import Options
from batchsync.inventory.plan import Checker, Recorder
from batchsync.model import DesiredMapping, Inventory, Job
from batchsync.outcome import ErrorInfo, Outcome
from batchsync.wire import CurrentMapping, CurrentStatus

Seen = list[tuple[int, "tuple[CurrentStatus, ...] | None", CurrentMapping]]


def go(inv: Inventory, api: FakeApi, write: bool, hook: object = None, jobs: list[Job] | None = None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    engine = Engine(
        inv.accounts,
        api,
        Options(write=write),
        outcomes.append,
        rng=random.Random(1),
        before_write=hook,  # type: ignore[arg-type]
    )
    run_virtual(engine.run, inv.jobs if jobs is None else jobs)
    return outcomes


def test_the_step_sees_each_integration_to_change_once_with_its_mapping(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"a": 6})
    drifted = [j.integration_id for j in inv.jobs[:3]]
    api = FakeApi.from_inventory(inv, drifted=drifted)
    seen: Seen = []

    def hook(job: Job, current: tuple[CurrentStatus, ...] | None, mapping: CurrentMapping) -> ErrorInfo | None:
        seen.append((job.integration_id, current, mapping))
        return ErrorInfo("stale_plan", detail="moved") if job.integration_id == drifted[0] else None

    outcomes = {o.integration_id: o for o in go(inv, api, write=True, hook=hook)}
    assert sorted(i for i, _, _ in seen) == sorted(drifted)
    assert all(current == () and mapping.integration_id == i for i, current, mapping in seen)
    error = outcomes[drifted[0]].error
    assert outcomes[drifted[0]].result == "failed" and error is not None and error.kind == "stale_plan"
    assert {outcomes[i].result for i in drifted[1:]} == {"changed"}
    assert api.live(drifted[0]) == {}  # refused before any write
    assert api.count("post_statuses") == 2
    assert api.count("get_mapping") == 3  # read for each integration to change, none else


def test_without_the_step_an_ordinary_run_reads_no_mapping_more(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"a": 6})
    api = FakeApi.from_inventory(inv, drifted=[j.integration_id for j in inv.jobs[:3]])
    go(inv, api, write=True)
    assert api.count("get_mapping") == 0 and api.count("post_statuses") == 3


def test_recorder_then_checker_pass_an_unmoved_shop_and_stop_a_moved_one(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"a": 4})
    drifted = [j.integration_id for j in inv.jobs]
    api = FakeApi.from_inventory(inv, drifted=drifted)
    recorder = Recorder()
    planned = go(inv, api, write=False, hook=recorder)
    assert {o.result for o in planned} == {"changed"} and sorted(recorder.reads) == sorted(drifted)
    # A person adds a status to one shop between plan and apply.
    moved = drifted[0]
    api.shops[moved].statuses["X-1"] = (("de-de", "Von Hand"),)
    outcomes = {o.integration_id: o for o in go(inv, api, write=True, hook=Checker(recorder.reads))}
    error = outcomes[moved].error
    assert error is not None and error.kind == "stale_plan"
    assert error.detail.startswith('the shop changed since the plan was made: status "X-1" added')
    assert {outcomes[i].result for i in drifted[1:]} == {"changed"}
    # Applied again: what was written is found done (unchanged), the moved one stays stale.
    again = {o.integration_id: o for o in go(inv, api, write=True, hook=Checker(recorder.reads))}
    assert {again[i].result for i in drifted[1:]} == {"unchanged"} and again[moved].result == "failed"


def test_a_status_write_already_done_but_a_mapping_still_to_write_is_checked_too(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"a": 1})
    job = inv.jobs[0]
    mapped = msgspec.structs.replace(
        job,
        mapping=DesiredMapping((("READY_TO_SEND", None), ("IN_TRANSIT", None), ("DELIVERED", "1"), ("CANCEL", None))),
    )
    api = FakeApi.from_inventory(inv)  # statuses in sync, mapping not
    recorder = Recorder()
    go(inv, api, write=False, hook=recorder, jobs=[mapped])
    read = recorder.reads[job.integration_id]
    assert read.mapping["DELIVERED"] is None  # the statuses came from the desired ones: nothing to change there
    api.shops[job.integration_id].mapping["DELIVERED"] = "2"
    out = go(inv, api, write=True, hook=Checker(recorder.reads), jobs=[mapped])
    assert out[0].error is not None and 'mapping DELIVERED moved (unmapped -> "2")' in out[0].error.detail
