"""The plan file's rules in-process: its schema as documented, the version rule, the age
rule, the inventory hash (secret files left out), the words of what moved."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
from inventory_factory import make_inventory

from batchsync.inventory.loader import load
from batchsync.inventory.plan import (
    Plan,
    ReadStatus,
    Selection,
    Source,
    age_problem,
    compatible,
    inventory_hash,
    json_schema,
    make_read,
    what_moved,
)
from batchsync.wire import StatusCategory

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_schema_is_the_files_own() -> None:
    # docs/plan.schema.json is what tools validate against: it must not drift from the structs.
    documented = json.loads((ROOT / "docs" / "plan.schema.json").read_text())
    assert documented == json.loads(json.dumps(json_schema()))
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_the_version_rule_is_same_major_and_minor() -> None:
    assert compatible("0.1.0", "0.1.7") and compatible("1.4.2", "1.4.0")
    assert not compatible("0.1.0", "0.2.0") and not compatible("1.4.0", "2.4.0")


def plan_made_at(when: str) -> Plan:
    return Plan("batchsync-plan", 1, "0.1.0", when, Source("i.toml", "0" * 64), Selection(), True, {}, ())


def test_the_age_rule() -> None:
    now = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    assert age_problem(plan_made_at("2026-12-01T12:00:00+00:00"), 7 * 86400, now) is None
    old = age_problem(plan_made_at("2026-11-20T12:00:00+00:00"), 7 * 86400, now)
    assert old is not None and "14d ago, more than --max-age 7d" in old
    ahead = age_problem(plan_made_at("2026-12-04T13:00:00+00:00"), 7 * 86400, now)
    assert ahead is not None and "future" in ahead


def test_the_inventory_hash_follows_the_statuses_files_not_the_secret_ones(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text(
        json.dumps([{"external_id": "1", "translations": [{"status": "A", "language": "en-gb"}]}])
    )
    (tmp_path / "key").write_text("secret-one\n")
    doc = {
        "accounts": {"a": {"public_key": "env:PK", "secret_key": "file:key"}},
        "integrations": [{"id": 1, "account": "a", "statuses_file": "set.json"}],
    }
    (tmp_path / "inv.json").write_text(json.dumps(doc))
    env = {"PK": "pk"}
    first = inventory_hash(load(tmp_path / "inv.json", env))
    (tmp_path / "key").write_text("secret-two\n")  # rotated
    assert inventory_hash(load(tmp_path / "inv.json", {"PK": "other"})) == first
    (tmp_path / "set.json").write_text(
        json.dumps([{"external_id": "1", "translations": [{"status": "B", "language": "en-gb"}]}])
    )
    assert inventory_hash(load(tmp_path / "inv.json", env)) != first
    assert len(first) == 64 and "secret" not in first


def test_what_moved_names_statuses_and_mapping(tmp_path: Path) -> None:
    mapping: dict[StatusCategory, str | None] = {
        "READY_TO_SEND": None,
        "IN_TRANSIT": None,
        "DELIVERED": "3",
        "CANCEL": None,
    }
    statuses = (ReadStatus("17-B", (("de-de", "Versandt"), ("en-gb", "Shipped"))), ReadStatus("9", (("en-gb", "x"),)))
    then = make_read(statuses, mapping)
    now_statuses = (
        ReadStatus("17-B", (("de-de", "Verschickt"), ("fr-fr", "Envoyé"))),
        ReadStatus("new", (("en-gb", "y"),)),
    )
    moved = what_moved(then, now_statuses, {**mapping, "DELIVERED": "4"})
    assert moved == [
        'status "17-B" renamed in de-de ("Versandt" -> "Verschickt")',
        'status "17-B" lost en-gb ("Shipped")',
        'status "17-B" gained fr-fr ("Envoyé")',
        'status "9" removed',
        'status "new" added',
        'mapping DELIVERED moved ("3" -> "4")',
    ]
    seven = what_moved(then, now_statuses, {**mapping, "DELIVERED": "4", "CANCEL": "9"})
    assert seven == [*moved[:5], "and 2 more"]
    few = what_moved(then, then.statuses, {**mapping, "DELIVERED": None})
    assert few == ['mapping DELIVERED moved ("3" -> unmapped)']


def test_a_plan_entry_of_a_job_that_changes_records_its_post_bodies(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"a": 1})
    from batchsync.inventory.plan import desired_statuses

    job = inv.jobs[0]
    assert [s.external_id for s in desired_statuses(job.desired)] == sorted(s.external_id for s in job.desired.statuses)


@pytest.mark.parametrize("bad", ["", "x", "-1d", "0"])
def test_max_age_must_be_a_positive_duration(bad: str) -> None:
    from batchsync.commands._arguments import duration
    from batchsync.usage import UsageError

    with pytest.raises(UsageError, match="--max-age"):
        duration(bad, "--max-age")


@pytest.mark.parametrize("where", ["name", "language", "external id", "mapping"])
def test_a_read_that_quotes_a_credential_anywhere_is_refused_not_recorded(tmp_path: Path, where: str) -> None:
    """plan --out records what was read as it was (its fingerprint is the shop's): a read
    that holds a credential value, in any text a server wrote, is refused instead."""
    from batchsync.inventory.plan import ECHOED, Recorder
    from batchsync.redact import Redactor
    from batchsync.wire import CurrentMapping, CurrentMappingItem, CurrentStatus, CurrentTranslation

    secret = "echoSecretValue-ZZZZ9999"
    job = make_inventory(tmp_path, {"acme": 1}).jobs[0]
    name, language, external_id = ("Paid", "en-gb", "1")
    if where == "name":
        name = f"Paid {secret}"
    elif where == "language":
        language = secret
    elif where == "external id":
        external_id = secret
    statuses = (CurrentStatus(external_id, (CurrentTranslation(name, language),)),)
    items = [CurrentMappingItem(c, None, True) for c in ("READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL")]
    if where == "mapping":
        items[0] = CurrentMappingItem("READY_TO_SEND", secret.upper(), False)
    recorder = Recorder(Redactor([secret]))
    refused = recorder(job, statuses, CurrentMapping(job.integration_id, tuple(items)))
    assert refused is not None and refused.kind == "refused" and refused.detail == ECHOED
    assert job.integration_id not in recorder.reads
    clean = Recorder(Redactor([secret]))
    assert clean(job, (CurrentStatus("1", (CurrentTranslation("Paid", "en-gb"),)),), CurrentMapping(1, ())) is None
    assert job.integration_id in clean.reads
