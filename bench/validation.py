"""Part 3: loading and validating a 100,000-integration inventory, against jsonschema and pydantic.

batchsync: ``batchsync.inventory.load`` in-process (read, decode, validate, expand) and
``batchsync validate`` as a whole process. References: the same 100,000 POST payloads
(built beforehand, not timed) checked one by one with jsonschema's Draft202012Validator on
the official schema's ``post-shop-order-statuses`` component, and with pydantic v2 models
equivalent to it. jsonschema runs on a subset and is compared per payload.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from bench.common import PYTHON, SPEC, WORK, Row, big_inventory, log, run_measured

N = 100_000
INLINE = 0.1  # fraction of integrations with inline statuses (the rest share status sets)
RUNS = 5
REF_RUNS = 3
JSONSCHEMA_SUBSET = 2_000
PYDANTIC_SUBSET = 20_000

Language = Literal["en-us", "en-gb", "fr-fr", "de-de", "nl-nl", "es-es", "it-it"]


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """JSON Schema's uniqueItems: no two items equal (frozen models hash by value)."""
    if len(set(items)) != len(items):
        raise ValueError("items are not unique")
    return items


class PTranslation(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str
    language: Language


class PStatus(BaseModel):
    model_config = ConfigDict(frozen=True)
    external_id: str
    translations: Annotated[tuple[PTranslation, ...], Field(min_length=1, max_length=7), AfterValidator(_unique)]


class PPost(BaseModel):
    integration_id: int
    statuses: Annotated[tuple[PStatus, ...], AfterValidator(_unique)]


def schema() -> dict[str, Any]:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    found: dict[str, Any] = spec["components"]["schemas"]["post-shop-order-statuses"]
    return found


def payloads(path: str) -> list[dict[str, Any]]:
    """Every integration's POST body as JSON data; one decoded list per distinct status list."""
    from batchsync.inventory.loader import load

    inv = load(path)
    if inv.problems:
        raise RuntimeError(f"{path}: {len(inv.problems)} problems, first: {inv.problems[0]}")
    decoded: dict[int, Any] = {}
    out = []
    for job in inv.jobs:
        key = id(job.desired)
        if key not in decoded:
            decoded[key] = msgspec.json.decode(job.desired.encoded)
        out.append({"integration_id": job.integration_id, "statuses": decoded[key]})
    return out


def run(notes: list[str]) -> list[Row]:
    from jsonschema import Draft202012Validator

    from batchsync.gcpolicy import paused
    from batchsync.inventory.loader import load

    path, generator = big_inventory(WORK / "p3.json", N, INLINE)
    inventory = str(path)
    size_mb = path.stat().st_size / 1e6
    bodies = payloads(inventory)
    validator = Draft202012Validator(schema())
    adapter = TypeAdapter(PPost)
    for p in bodies[:100]:  # the references accept what batchsync accepts
        assert validator.is_valid(p), p
        adapter.validate_python(p)

    loads: list[float] = []
    procs: list[float] = []
    for i in range(RUNS):
        t0 = time.perf_counter()
        with paused():  # as every command loads an inventory (batchsync.gcpolicy)
            inv = load(inventory)
        loads.append(time.perf_counter() - t0)
        assert inv.valid and len(inv.jobs) == N, inv.problems[:3]
        del inv
        m = run_measured([PYTHON, "-m", "batchsync", "validate", inventory], timeout=120)
        if m.returncode != 0:
            raise RuntimeError(f"batchsync validate exited {m.returncode}: {m.stdout[-300:]} {m.stderr[-500:]}")
        procs.append(m.wall)
        log(f"part 3 run {i + 1}: load {loads[-1]:.2f}s, validate process {m.wall:.2f}s")

    js: list[float] = []
    pd: list[float] = []
    subset = bodies[:JSONSCHEMA_SUBSET]
    for i in range(REF_RUNS):
        t0 = time.perf_counter()
        ok = all(validator.is_valid(p) for p in subset)
        js.append((time.perf_counter() - t0) / len(subset) * N)
        t0 = time.perf_counter()
        for p in bodies[:PYDANTIC_SUBSET]:
            adapter.validate_python(p)
        pd.append((time.perf_counter() - t0) / PYDANTIC_SUBSET * N)
        assert ok
        log(f"part 3 ref run {i + 1}: jsonschema {js[-1]:.1f}s, pydantic {pd[-1]:.2f}s (extrapolated)")

    notes.append(
        f"Part 3: one JSON inventory of {N:,} integrations ({size_mb:.0f} MB, made by {generator}, "
        f"{INLINE:.0%} with inline statuses, the rest on shared status sets). batchsync's figure is the "
        f"whole load: read, decode, validate, expand into jobs; `batchsync validate` adds the process start. "
        f"The references only validate the {N:,} POST payloads, already built as Python data (not timed), "
        f"one by one: batchsync checks a shared status set once, they check it for every integration that "
        f"uses it. jsonschema (Draft202012Validator.is_valid on the official post-shop-order-statuses "
        f"schema) ran on the first {JSONSCHEMA_SUBSET:,} payloads and is extrapolated per payload to "
        f"{N:,}; pydantic (v2 models equivalent to the schema, uniqueItems included) likewise on the first "
        f"{PYDANTIC_SUBSET:,}."
    )
    rows = [
        Row("3", f"load + validate {N:,} (in-process)", loads, js, "jsonschema", "≤ 0.10 (≥ 10× faster)", None),
        Row("3", f"`batchsync validate` {N:,} (process)", procs, js, "jsonschema", "≤ 0.10 (≥ 10× faster)",
            None),
        Row("3", f"load + validate {N:,} (in-process)", loads, pd, "pydantic v2", "(info)", None),
    ]  # fmt: skip
    rows[0].met = rows[0].ratio <= 0.10
    rows[1].met = rows[1].ratio <= 0.10
    return rows
