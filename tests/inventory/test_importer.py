"""The pure part of ``batchsync import``: canonical lists, the grouping rule, names, rendering.

Rendering is checked by loading what it writes with the real loader (``inventory.load``):
the file must say exactly the statuses and mapping it was built from, whatever the names
and shop names hold (quotes, newlines, line separators, comment characters).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsync.inventory.grouping import (
    MAX_DIFFERENCES,
    UNMAPPED,
    Current,
    Entry,
    NotImportable,
    Shop,
    UnsafeAccount,
    allowed,
    build,
    canonical,
    canonical_statuses,
    copy_accounts,
    delta,
    group,
    rebase,
    set_names,
    slug,
)
from batchsync.inventory.grouping import status_index as index
from batchsync.inventory.loader import load
from batchsync.inventory.spec import merge_statuses
from batchsync.inventory.writer import comment_text, render
from batchsync.wire import (
    LANGUAGES,
    STATUS_CATEGORIES,
    CurrentMapping,
    CurrentMappingItem,
    CurrentStatus,
    CurrentTranslation,
    Status,
)
from batchsync.wire import Translation as T

CATEGORIES = STATUS_CATEGORIES
ENV = {"K_PUB": "the-public-key", "K_SEC": "the-secret-key"}
ACCOUNTS = {"acme": {"public_key": "env:K_PUB", "secret_key": "env:K_SEC"}}


def st_(external_id: str, *names: str, langs: tuple[str, ...] = ("en-gb", "nl-nl", "fr-fr")) -> Status:
    return Status(external_id, tuple(T(n, lang) for n, lang in zip(names, langs, strict=False)))  # type: ignore[arg-type]


BASE = canonical_statuses(
    [st_("1", "Awaiting payment", "Wacht"), st_("2", "Shipped"), st_("3", "Delivered"), st_("4", "Cancelled")]
)
OTHER = canonical_statuses([st_(f"x{k}", f"Other {k}") for k in range(6)])


def shop(iid: int, account: str = "acme", **kw: str | None) -> Shop:
    return Shop(iid, account, kw.get("name", f"Shop {iid}"), kw.get("url", f"https://s{iid}.example"))


def cur(iid: int, statuses: tuple[Status, ...], mapping: tuple[str | None, ...] | None = UNMAPPED) -> Current:
    return Current(shop(iid), canonical_statuses(statuses), mapping)


def current_mapping(iid: int, items: Mapping[str, tuple[str | None, bool]]) -> CurrentMapping:
    return CurrentMapping(iid, tuple(CurrentMappingItem(c, *items.get(c, (None, True))) for c in CATEGORIES))


def current_statuses(statuses: tuple[Status, ...], deleted: tuple[Status, ...] = ()) -> tuple[CurrentStatus, ...]:
    def one(s: Status, when: str | None) -> CurrentStatus:
        return CurrentStatus(
            s.external_id, tuple(CurrentTranslation(t.status, t.language) for t in s.translations), None, when
        )

    return tuple(one(s, None) for s in statuses) + tuple(one(s, "2026-01-01T00:00:00Z") for s in deleted)


# -- canonical form ---------------------------------------------------------------------------------


def test_canonical_drops_deleted_statuses_and_orders_ids_naturally() -> None:
    given = (st_("13", "B"), st_("2", "A", "Z"), st_("b", "C"))
    got = canonical(shop(1), current_statuses(given, (st_("gone", "X"),)), current_mapping(1, {}))
    assert isinstance(got, Current)
    assert [s.external_id for s in got.statuses] == ["2", "13", "b"]
    assert got.statuses[0].translations == (T("A", "en-gb"), T("Z", "nl-nl"))
    assert got.mapping == UNMAPPED


@pytest.mark.parametrize(
    ("statuses", "why"),
    [
        (
            (CurrentStatus("1", (CurrentTranslation("Shipped", "xx-xx"),)),),
            "Invalid enum value 'xx-xx' (at $.statuses[0].translations[0].language)",
        ),
        ((CurrentStatus("1", (CurrentTranslation("", "en-gb"),)),), "length >= 1"),
        ((CurrentStatus("1", ()),), "length >= 1"),
        ((CurrentStatus("1", (CurrentTranslation("A", "en-gb"),)),) * 2, "used twice"),
        ((CurrentStatus("1", (CurrentTranslation("A", "en-gb"), CurrentTranslation("B", "en-gb"))),), "used twice"),
        ((CurrentStatus("1", (CurrentTranslation("bad \ud800", "en-gb"),)),), "not valid Unicode"),
    ],
)
def test_a_state_the_inventory_cannot_declare_is_not_importable(statuses: tuple[CurrentStatus, ...], why: str) -> None:
    got = canonical(shop(1), statuses, current_mapping(1, {}))
    assert isinstance(got, NotImportable)
    assert why in got.reason


def test_a_mapping_to_a_missing_status_is_left_undeclared_with_a_note() -> None:
    statuses = current_statuses(BASE, (st_("9", "Old"),))
    for items in ({"IN_TRANSIT": ("9", False)}, {"IN_TRANSIT": ("2", False)}, {"CANCEL": ("77", True)}):
        got = canonical(shop(1), statuses, current_mapping(1, items))
        assert isinstance(got, Current) and got.mapping is None
        assert got.note is not None and "declare one to repair it" in got.note
    short = CurrentMapping(1, (CurrentMappingItem("READY_TO_SEND", "1", True),))
    got = canonical(shop(1), statuses, short)
    assert isinstance(got, Current) and got.mapping is None and "four categories" in (got.note or "")
    fine = canonical(shop(1), statuses, current_mapping(1, {"READY_TO_SEND": ("1", True), "CANCEL": ("4", True)}))
    assert isinstance(fine, Current) and fine.mapping == ("1", None, None, "4")


# -- the rule and the delta ------------------------------------------------------------------------


def test_the_rule_allows_at_most_n_differences_and_half_the_set() -> None:
    big = canonical_statuses([st_(str(k), f"S{k}") for k in range(10)])
    for n in range(MAX_DIFFERENCES + 2):
        target = canonical_statuses([*big[n:], *(st_(f"new{k}", "N") for k in range(0))])
        assert (allowed(index(big), index(target), MAX_DIFFERENCES) is not None) == (n <= MAX_DIFFERENCES)
    # A changed translation counts one, like an added or a removed status.
    renamed = canonical_statuses([st_("0", "S0 renamed"), *big[1:]])
    assert allowed(index(big), index(renamed), MAX_DIFFERENCES) == 1
    # Half the set at most: a 4-status set takes 2 differences, a 1-status set none.
    assert allowed(index(BASE), index(BASE[:2]), 3) == 2
    assert allowed(index(BASE), index(BASE[:1]), 3) is None
    assert allowed(index(BASE[:1]), index(()), 3) is None
    assert allowed(index(big), index(big[1:]), 0) is None
    assert allowed(index(big), index(big), 0) == 0


statuses_strategy = st.lists(
    st.builds(
        Status,
        st.sampled_from(["1", "2", "3", "4", "5", "a", "b"]),
        st.lists(
            st.builds(T, st.sampled_from(["A", "B", "C", "é"]), st.sampled_from(LANGUAGES)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t.language,
        ).map(tuple),
    ),
    max_size=6,
    unique_by=lambda s: s.external_id,
).map(lambda xs: canonical_statuses(xs))


@given(statuses_strategy, statuses_strategy)
def test_delta_turns_the_base_into_the_target_through_the_loaders_merge(base: tuple, target: tuple) -> None:  # type: ignore[type-arg]
    overrides, removals = delta(base, target)
    assert canonical_statuses(merge_statuses(base, overrides, removals)) == target
    assert set(removals) <= {s.external_id for s in base}
    # A status the base has as it is never appears in the delta.
    same = set(base) & set(target)
    assert not {s.external_id for s in same} & ({s.external_id for s in overrides} | set(removals))


def test_a_changed_status_lists_only_the_translation_that_differs() -> None:
    target = canonical_statuses([st_("1", "Awaiting payment", "Wacht even"), *BASE[1:]])
    assert delta(BASE, target) == ((Status("1", (T("Wacht even", "nl-nl"),)),), ())
    lost = canonical_statuses([st_("1", "Awaiting payment"), *BASE[1:]])
    assert delta(BASE, lost) == ((lost[0],), ("1",))


# -- grouping ----------------------------------------------------------------------------------------


def vary(base: tuple[Status, ...], k: int) -> tuple[Status, ...]:
    """One small change, a different one for each k."""
    if k % 3 == 0:
        return canonical_statuses([*base, st_(f"extra{k}", f"Extra {k}")])
    if k % 3 == 1:
        return tuple(s for s in base if s.external_id != base[-1 - k % 2].external_id)
    s = base[k % len(base)]
    return canonical_statuses([Status(s.external_id, (T(f"Renamed {k}", "en-gb"),)), *(x for x in base if x != s)])


def test_identical_lists_share_one_set_and_near_ones_get_it_with_overrides() -> None:
    currents = [cur(i, BASE) for i in range(1, 6)] + [cur(10 + k, vary(BASE, k)) for k in range(3)]
    g = group(currents)
    assert len(g.sets) == 1
    (the_set,) = g.sets
    assert the_set.statuses == BASE and the_set.members == 8 and the_set.with_overrides == 3
    assert all(p.base == the_set.name for p in g.placements)
    assert [bool(p.overrides or p.removals) for p in g.placements] == [False] * 5 + [True] * 3


def test_a_list_nobody_shares_is_written_inline() -> None:
    g = group([cur(1, BASE), cur(2, BASE), cur(3, OTHER)])
    assert [s.statuses for s in g.sets] == [BASE]
    assert g.placements[2].base is None
    # Two lists far from each other, one shop each: no set at all.
    g = group([cur(1, BASE), cur(2, OTHER)])
    assert g.sets == () and all(p.base is None for p in g.placements)


def test_a_family_whose_shops_all_vary_still_gets_its_common_list() -> None:
    big = canonical_statuses([st_(str(k), f"S{k}") for k in range(12)])  # 10 and 11 sort after 9
    currents = [cur(k, vary(big, k)) for k in range(12)]
    assert all(c.statuses != big for c in currents)  # nobody has the family's list itself
    g = group(currents)
    assert [s.statuses for s in g.sets] == [big]
    assert all(p.base == g.sets[0].name for p in g.placements)
    assert g.sets[0].members == g.sets[0].with_overrides == 12


def test_too_far_from_every_set_means_inline_and_the_threshold_is_a_parameter() -> None:
    big = canonical_statuses([st_(str(k), f"S{k}") for k in range(10)])
    far = big[4:]  # 4 differences: one more than the rule allows
    g = group([cur(1, big), cur(2, big), cur(3, far)])
    assert g.placements[2].base is None
    g = group([cur(1, big), cur(2, big), cur(3, far)], max_differences=4)
    assert g.placements[2].base == g.sets[0].name and g.placements[2].removals == ("0", "1", "2", "3")
    g = group([cur(1, big), cur(2, big), cur(3, big[1:])], max_differences=0)
    assert g.placements[2].base is None


def test_several_families_get_one_set_each_named_after_the_client_most_of_its_shops_share() -> None:
    a = canonical_statuses([*BASE, st_("cc", "Click & collect"), st_("p", "Picked up")])
    b = canonical_statuses([st_(str(k), f"Statut {k}", langs=("fr-fr",)) for k in range(8)])
    c = canonical_statuses([*BASE, st_("gift", "Gift wrapping"), st_("pre", "Pre-order"), st_("q", "Quality check")])
    currents = []
    accounts = ("acme", "globex", "stark")
    for f, fam in enumerate((a, b, c)):
        for k in range(6):
            # c's shops: half stark's, half initech's: no account holds more than half.
            account = accounts[f] if f < 2 or k % 2 else "initech"
            statuses = fam if k % 2 else vary(fam, k)
            currents.append(Current(shop(100 * f + k, account), canonical_statuses(statuses), UNMAPPED))
    tags = {"stark": ["client-s"], "initech": ["client-s", "de"]}
    g = group(currents, account_tags=tags)
    assert len(g.sets) == 3 and {s.statuses for s in g.sets} == {a, b, c}
    names = {s.statuses: s.name for s in g.sets}
    assert names == {a: "acme", b: "globex", c: "client-s"}
    # Without the tags, c's shops share nothing: a numbered set.
    assert {s.statuses: s.name for s in group(currents).sets}[c] == "set-1"


def test_grouping_does_not_depend_on_the_order_of_the_integrations() -> None:
    rng = random.Random(5)
    big = canonical_statuses([st_(str(k), f"S{k}") for k in range(9)])
    currents = [cur(k, vary(big, rng.randrange(30)) if rng.random() < 0.6 else big) for k in range(40)]
    currents += [cur(100 + k, vary(OTHER, k)) for k in range(5)]
    first = group(currents)
    for _ in range(5):
        rng.shuffle(currents)
        again = group(currents)
        assert sorted(first.sets, key=lambda s: s.name) == sorted(again.sets, key=lambda s: s.name)
        assert {p.current.shop.id: p for p in first.placements} == {p.current.shop.id: p for p in again.placements}


def test_the_sets_mapping_is_the_most_common_and_a_shop_writes_only_its_categories() -> None:
    usual = ("1", "2", "3", "4")
    currents = [cur(1, BASE, usual), cur(2, BASE, usual), cur(3, BASE, ("1", "3", "3", "4")), cur(4, BASE, UNMAPPED)]
    g = group(currents)
    assert g.sets[0].mapping == usual
    assert [p.mapping for p in g.placements] == [
        None,
        None,
        {"IN_TRANSIT": "3"},
        dict.fromkeys(CATEGORIES),  # declared "not mapped", each category
    ]


def test_no_shop_mapping_anything_means_no_mapping_declared() -> None:
    g = group([cur(1, BASE), cur(2, BASE), cur(3, BASE, ("1", None, None, None))])
    assert g.sets[0].mapping is None
    assert [p.mapping for p in g.placements] == [None, None, {"READY_TO_SEND": "1", **dict.fromkeys(CATEGORIES[1:])}]


def test_a_shop_whose_mapping_cannot_be_declared_goes_inline_without_one() -> None:
    g = group([cur(1, BASE, ("1", "2", None, None)), cur(2, BASE, ("1", "2", None, None)), cur(3, BASE, None)])
    assert g.placements[2].base is None and g.placements[2].mapping is None
    assert g.placements[0].base == g.sets[0].name


def test_a_set_the_inventory_declares_is_offered_first() -> None:
    from batchsync.inventory.grouping import ExistingSet

    kept = ExistingSet("ours", tuple(reversed(BASE)), None)
    g = group([cur(1, BASE), cur(2, vary(BASE, 0))], [kept])
    assert g.sets == ()
    assert [p.base for p in g.placements] == ["ours", "ours"]


def test_set_names_are_readable_unique_and_avoid_the_taken_ones() -> None:
    assert slug("Click & Collect (Paris)") == "click-collect-paris"
    assert slug("Expédié") == "expedie"
    assert slug("発送済み") == ""
    acme = [shop(1, "acme"), shop(2, "acme"), shop(3, "globex")]
    mixed = [shop(4, "acme"), shop(5, "globex"), shop(6, "stark"), shop(7, "initech")]
    tagged = [shop(8, "stark"), shop(9, "initech"), shop(10, "acme")]
    tags = {"stark": ["client-s", "nl"], "initech": ["client-s"]}
    # After the account more than half share, else the tag, else numbered in order of size.
    assert set_names([mixed, acme, tagged, mixed], tags) == ["set-1", "acme", "client-s", "set-2"]
    # Taken names are avoided: a numbered one takes the next number, a named one a suffix.
    assert set_names([acme, mixed, acme], tags, taken=["acme", "set-1"]) == ["acme-2", "set-2", "acme-3"]
    # Half is not more than half.
    assert set_names([[shop(1, "acme"), shop(2, "globex")]]) == ["set-1"]


# -- what the inventory declares, accounts and paths ----------------------------------------------------


def test_accounts_are_copied_as_references_and_a_literal_secret_is_refused() -> None:
    raw = {"a": {"public_key": "env:A", "secret_key": "file:keys/a", "limits": {"write_burst": 5}}}
    assert copy_accounts(raw, lambda p: "../" + p) == {
        "a": {"public_key": "env:A", "secret_key": "file:../keys/a", "limits": {"write_burst": 5}}
    }
    for bad in ("s3cr3t", 12, None):
        with pytest.raises(UnsafeAccount) as exc:
            copy_accounts({"a": {"public_key": "env:A", "secret_key": bad}}, str)
        assert "s3cr3t" not in str(exc.value)


def test_oauth2_accounts_are_copied_with_their_references_and_endpoint() -> None:
    raw = {
        "o": {
            "auth": "oauth2",
            "client_id": "env:O_ID",
            "client_secret": "file:o.secret",
            "token_url": "https://account.example/oauth2/token",
            "scope": "api",
        }
    }
    assert copy_accounts(raw, lambda p: "keys/" + p) == {"o": {**raw["o"], "client_secret": "file:keys/o.secret"}}
    with pytest.raises(UnsafeAccount):
        copy_accounts({"o": {**raw["o"], "client_secret": "hunter2"}}, str)


def test_relative_paths_are_rewritten_for_the_new_files_folder(tmp_path: Path) -> None:
    assert rebase("keys/a", str(tmp_path), str(tmp_path)) == "keys/a"
    assert rebase("keys/a", str(tmp_path / "in"), str(tmp_path / "out")) == "../in/keys/a"
    assert rebase("/abs/a", str(tmp_path / "in"), str(tmp_path)) == "/abs/a"
    assert rebase("~/a", str(tmp_path / "in"), str(tmp_path)) == "~/a"


def test_build_keeps_what_is_declared_and_reports_what_is_gone_moved_or_other() -> None:
    raw: dict[str, Any] = {
        "accounts": {**ACCOUNTS, "beta": {"public_key": "env:K_PUB", "secret_key": "env:K_SEC"}},
        "status_sets": {"mine": {"statuses": msgspec.to_builtins(BASE)}},
        "integrations": [
            {"id": 1, "account": "acme", "status_set": "mine", "tags": ["eu"]},
            {"id": 2, "account": "acme", "status_set": "mine"},  # gone
            {"id": 3, "account": "acme", "status_set": "mine"},  # listed by beta
            {"id": 7, "account": "beta", "status_set": "mine"},  # not PrestaShop V2
        ],
    }
    listings = {
        "acme": [shop(1), shop(4), Shop(5, "acme", "Woo", None, "woocommerce")],
        "beta": [Shop(3, "beta"), Shop(6, "beta"), Shop(7, "beta", None, None, "shopify")],
    }
    snapshots = [cur(4, BASE), Current(Shop(6, "beta"), OTHER, UNMAPPED), cur(1, OTHER)]
    doc, report = build(raw, snapshots, listings)
    assert [e.data["id"] for e in doc.integrations] == [1, 2, 3, 7, 4, 6]
    assert doc.integrations[0] == Entry(raw["integrations"][0])  # as declared, not as read
    assert doc.integrations[4].data["status_set"] == "mine"
    assert report.gone == (("acme", 2),)
    assert report.moved == (("acme", 3, "beta"),)
    assert report.unsupported == (("beta", 7, "shopify"),)
    assert [(r.shop.id, r.shop.system) for r in report.not_importable] == [(5, "woocommerce")]
    assert report.kept_integrations == 4 and report.kept_sets == 1 and report.new_sets == ()


# -- rendering: what load reads back ---------------------------------------------------------------


def write(tmp_path: Path, doc_text: str, fmt: str) -> Path:
    path = tmp_path / f"out.{fmt}"
    path.write_text(doc_text, encoding="utf-8")
    return path


def loaded_state(path: Path) -> dict[int, tuple[tuple[Status, ...], dict[str, str | None] | None]]:
    inv = load(path, environ=ENV)
    assert inv.valid, inv.problems
    return {
        j.integration_id: (
            canonical_statuses(j.desired.statuses),
            j.mapping.as_dict() if getattr(j, "mapping", None) is not None else None,  # type: ignore[union-attr]
        )
        for j in inv.jobs
    }


HOSTILE = [
    'quote " and backslash \\',
    "new\nline [[integrations]]\nid = 99",
    "nel\x85 ls\u2028 ps\u2029 tab\t cr\r",
    "# not a comment: {x} [y] 'z' &a *b !c %d @e `f`",
    "null",
    "yes",
    "  leading and trailing  ",
    "bom\ufeff and nul\x00 and del\x7f and esc\x1b[31m",
    "émoji 🚚 and 発送済み",
    "1e3",
]


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_hostile_names_and_shops_load_back_exactly(tmp_path: Path, fmt: str) -> None:
    statuses = canonical_statuses(
        [Status(f"id {k} {name}"[:40], (T(name, "en-gb"), T(name + "!", "de-de"))) for k, name in enumerate(HOSTILE)]
    )
    currents = [
        Current(Shop(k + 1, "acme", HOSTILE[k], HOSTILE[-k - 1]), statuses if k % 3 else statuses[k % 4 :], UNMAPPED)
        for k in range(len(HOSTILE))
    ]
    doc, _ = build({"accounts": ACCOUNTS}, currents, {"acme": [c.shop for c in currents]}, header=HOSTILE)
    text = render(doc, fmt)  # type: ignore[arg-type]
    path = write(tmp_path, text, fmt)
    state = loaded_state(path)
    assert state == {c.shop.id: (c.statuses, None) for c in currents}
    assert "\x00" not in text and "\x1b" not in text  # escaped, whatever the format
    if fmt == "yaml":  # line breaks to YAML 1.1, which would fold inside a quoted string
        assert "\u2028" not in text and "\x85" not in text
    # The shop's name and URL are fields now, cleaned of what the loader refuses in a name
    # (control and bidi characters), whitespace collapsed.
    from batchsync.inventory.loader import load
    from batchsync.text import control_in, one_line

    names = {j.integration_id: j.name for j in load(path, environ=ENV).jobs}
    assert names == {c.shop.id: one_line(c.shop.name or "", limit=200) or None for c in currents}
    assert all(control_in(n) is None for n in names.values() if n)
    if fmt != "json":  # the header's lines, whatever they hold, the set's, and no comment per shop
        assert text.count("\n# Written by") == 0 and text.startswith("# quote")
        assert sum(1 for line in text.splitlines() if line.lstrip().startswith("# ")) == len(HOSTILE) + 1


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_mappings_and_overrides_load_back_exactly(tmp_path: Path, fmt: str) -> None:
    usual = ("1", "2", "3", "4")
    currents = [
        cur(1, BASE, usual),
        cur(2, BASE, usual),
        cur(3, vary(BASE, 0), ("1", "extra0", None, "4")),
        cur(4, vary(BASE, 1), UNMAPPED),
        cur(5, OTHER, ("x1", "x1", "x2", None)),
        cur(6, BASE, None),
    ]
    doc, _ = build({"accounts": ACCOUNTS}, currents, {"acme": [c.shop for c in currents]})
    state = loaded_state(write(tmp_path, render(doc, fmt), fmt))  # type: ignore[arg-type]
    assert {i: statuses for i, (statuses, _) in state.items()} == {c.shop.id: c.statuses for c in currents}
    for c in currents:
        loaded = state[c.shop.id][1]
        if c.mapping is None:  # cannot be declared: none is
            assert loaded is None
        elif c.mapping == UNMAPPED:  # "not mapped" declared, or nothing declared: the same to plan
            assert loaded in (None, dict.fromkeys(CATEGORIES))
        else:
            assert loaded == dict(zip(CATEGORIES, c.mapping, strict=True))
    assert state[4][1] == dict.fromkeys(CATEGORIES)  # under a set with a mapping: declared unmapped


def test_the_same_fleet_gives_the_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    currents = [cur(k, vary(BASE, rng.randrange(9)) if k % 2 else BASE) for k in range(30)]
    listings = {"acme": [c.shop for c in currents]}
    texts = set()
    for _ in range(4):
        rng.shuffle(currents)
        for fmt in ("toml", "yaml", "json"):
            doc, _ = build({"accounts": ACCOUNTS}, list(currents), listings)
            texts.add((fmt, render(doc, fmt)))
    assert len(texts) == 3


def test_comment_text_cannot_end_its_line() -> None:
    for text in HOSTILE:
        line = comment_text(text)
        assert "\n" not in line and "\r" not in line and "\x85" not in line and "\u2028" not in line
        assert line.isprintable()


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(["1", "2", "3", "x", "é"]), names, st.sampled_from(LANGUAGES)),
            max_size=5,
            unique_by=lambda t: t[0],
        ),
        min_size=1,
        max_size=8,
    ),
    names,
    st.sampled_from(["toml", "yaml", "json"]),
)
def test_any_text_round_trips_through_every_format(
    tmp_path_factory: pytest.TempPathFactory, shops: list[list[tuple[str, str, str]]], shop_name: str, fmt: str
) -> None:
    currents = [
        cur(k + 1, tuple(Status(i, (T(name, lang),)) for i, name, lang in lists))  # type: ignore[arg-type]
        for k, lists in enumerate(shops)
    ]
    currents = [Current(Shop(c.shop.id, "acme", shop_name, shop_name), c.statuses, c.mapping) for c in currents]
    doc, _ = build({"accounts": ACCOUNTS}, currents, {"acme": [c.shop for c in currents]})
    path = write(tmp_path_factory.mktemp("rt"), render(doc, fmt), fmt)  # type: ignore[arg-type]
    assert loaded_state(path) == {c.shop.id: (c.statuses, None) for c in currents}
