"""Properties that are the specification: diff, status set merging, --limit selection, redaction.

Each is checked on generated inputs (hypothesis), bounded so the file runs in a few
seconds. The example-based tests of the same functions sit in the modules' own test files.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsync.diff import Change, Diff, TranslationSet, diff, everything_added, translation_set
from batchsync.inventory.select import select
from batchsync.inventory.spec import merge_statuses
from batchsync.model import Desired, Job
from batchsync.redact import Redactor
from batchsync.wire import LANGUAGES, CurrentStatus, CurrentTranslation, Status, Translation

BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Few distinct ids and names, so that generated states overlap: a diff of two unrelated
# random states would be all additions and removals and test little.
ids = st.sampled_from([str(i) for i in range(8)] + ["17-B", "Send-4"])
names = st.sampled_from(["Paid", "Sent", "Delivered", "Betaald", "Verzonden", "Payé", "", "x"])


@st.composite
def translation_sets(draw: st.DrawFn) -> TranslationSet:
    """One status's translations: 1 to 7, one per language (what the inventory allows)."""
    langs = draw(st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=7, unique=True))
    return translation_set((lang, draw(names)) for lang in langs)


desired_states = st.dictionaries(ids, translation_sets(), max_size=8)


def as_current(state: dict[str, TranslationSet], order: list[int] | None = None) -> list[CurrentStatus]:
    """What GET /shop-order-statuses answers for ``state`` (statuses and translations in any order)."""
    out = [CurrentStatus(ext, tuple(sorted(trs, key=lambda t: (t.language, t.status)))) for ext, trs in state.items()]
    return [out[i] for i in order] if order is not None else out


def applied(current: list[CurrentStatus], d: Diff) -> dict[str, dict[str, str]]:
    """The live statuses after each change of ``d`` is done to ``current``, checking that
    every change starts from what is there."""
    state = {s.external_id: {t.language: t.status for t in s.translations} for s in current if s.deleted_at is None}
    for change in d.changes:
        assert change.op in ("+", "~", "-"), change
        if change.op == "+":
            assert change.external_id not in state, change
            assert change.after is not None
            state[change.external_id] = change.after
        elif change.op == "~":
            assert state[change.external_id] == change.before != change.after, change
            assert change.after is not None
            state[change.external_id] = change.after
        else:
            assert state.pop(change.external_id) == change.before, change
    return state


def named(state: dict[str, TranslationSet]) -> dict[str, dict[str, str]]:
    return {ext: {t.language: t.status for t in trs} for ext, trs in state.items()}


# -- diff ---------------------------------------------------------------------------------------


@BOUNDED
@given(desired=desired_states, data=st.data())
def test_diff_of_desired_against_itself_is_empty_in_any_order(desired: dict[str, TranslationSet], data: Any) -> None:
    order = data.draw(st.permutations(range(len(desired))))
    # Deleted statuses count as absent, whatever their id.
    deleted = [CurrentStatus(f"gone-{i}", (CurrentTranslation("Old", "en-gb"),), deleted_at="2024-01-01T00:00:00Z")
               for i in range(data.draw(st.integers(0, 2)))]  # fmt: skip
    current = as_current(desired, order) + deleted
    assert not diff(desired, current)
    assert diff(desired, current).changes == ()


@BOUNDED
@given(desired=desired_states, now=desired_states, data=st.data())
def test_diff_does_not_depend_on_order(
    desired: dict[str, TranslationSet], now: dict[str, TranslationSet], data: Any
) -> None:
    current = as_current(now)
    shuffled = data.draw(st.permutations(current))
    reordered = dict(data.draw(st.permutations(list(desired.items()))))
    first = diff(desired, current)
    # The same changes, each compared by value (before/after are dicts: order-free too).
    assert sorted(diff(reordered, shuffled).changes, key=_key) == sorted(first.changes, key=_key)


def _key(change: Change) -> tuple[str, str]:
    return change.op, change.external_id


@BOUNDED
@given(desired=desired_states, now=desired_states, data=st.data())
def test_applying_the_diff_yields_desired(
    desired: dict[str, TranslationSet], now: dict[str, TranslationSet], data: Any
) -> None:
    current = as_current(now)
    if data.draw(st.booleans()):  # a deleted status with an id we want is not there yet
        current.append(CurrentStatus("Send-4", (CurrentTranslation("Old", "en-gb"),), deleted_at="2024-01-01"))
    d = diff(desired, current)
    assert applied(current, d) == named(desired)
    assert len({c.external_id for c in d.changes}) == len(d.changes)  # one change per status at most
    assert d.added + d.changed + d.removed == len(d.changes)
    assert bool(d) == (named(desired) != applied(current, Diff(())))


@BOUNDED
@given(desired=desired_states)
def test_everything_added_is_the_diff_against_nothing(desired: dict[str, TranslationSet]) -> None:
    assert everything_added(desired) == diff(desired, [])
    assert applied([], everything_added(desired)) == named(desired)


# -- status set merging ---------------------------------------------------------------------------


@st.composite
def status_lists(draw: st.DrawFn, max_size: int = 6) -> tuple[Status, ...]:
    exts = draw(st.lists(ids, max_size=max_size, unique=True))
    out = []
    for ext in exts:
        langs = draw(st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=7, unique=True))
        out.append(Status(ext, tuple(Translation(draw(names.filter(bool)), lang) for lang in langs)))
    return tuple(out)


def by_lang(status: Status) -> dict[str, str]:
    return {t.language: t.status for t in status.translations}


@BOUNDED
@given(base=status_lists(), overrides=status_lists(4), removals=st.lists(ids, max_size=4))
def test_merge_removes_first_then_overrides(
    base: tuple[Status, ...], overrides: tuple[Status, ...], removals: list[str]
) -> None:
    merged = merge_statuses(base, overrides, removals)
    got = {s.external_id: s for s in merged}
    old = {s.external_id: s for s in base}
    over = {s.external_id: s for s in overrides}
    assert len(got) == len(merged)  # no external id twice
    kept = [s.external_id for s in base if s.external_id not in removals]
    assert list(got) == kept + [ext for ext in over if ext not in kept]  # base order, new ones appended
    for ext in removals:
        # Removal comes first: an id removed and overridden is the override alone.
        assert (ext in got) == (ext in over)
        if ext in over:
            assert got[ext] == over[ext]
    for ext, status in over.items():
        if ext in old and ext not in removals:
            # Language by language: the override's translations win, the base's others stay.
            assert by_lang(got[ext]) == {**by_lang(old[ext]), **by_lang(status)}
        else:
            assert got[ext] == status
    for ext, status in old.items():
        if ext not in removals and ext not in over:
            assert got[ext] is status  # untouched


@BOUNDED
@given(statuses=status_lists())
def test_a_desired_list_diffs_empty_against_what_it_posts(statuses: tuple[Status, ...]) -> None:
    # Desired.index is what the engine diffs; a GET after posting Desired.statuses answers them.
    desired = Desired(statuses)
    posted = [
        CurrentStatus(s.external_id, tuple(CurrentTranslation(t.status, t.language) for t in reversed(s.translations)))
        for s in reversed(statuses)
    ]
    assert not diff(desired.index, posted)
    assert applied([], everything_added(desired.index)) == {s.external_id: by_lang(s) for s in statuses}


@BOUNDED
@given(base=status_lists())
def test_merge_with_nothing_is_the_base(base: tuple[Status, ...]) -> None:
    assert merge_statuses(base, (), ()) == base
    assert merge_statuses(base, base, ()) == base  # overriding a status with itself changes nothing
    assert merge_statuses(base, (), [s.external_id for s in base]) == ()


# -- --limit selection -----------------------------------------------------------------------------

ACCOUNTS = ("acme", "globex", "initech")
TAGS = ("eu", "us", "big", "beta")
EMPTY = Desired(())


@st.composite
def job_lists(draw: st.DrawFn) -> list[Job]:
    iids = draw(st.lists(st.integers(1, 60), max_size=12, unique=True))
    return [
        Job(
            integration_id=iid,
            account=draw(st.sampled_from(ACCOUNTS)),
            desired=EMPTY,
            tags=tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True))),
        )
        for iid in iids
    ]


# One selector term: an id, an account or a tag, bare or prefixed (some match nothing).
terms = st.one_of(
    st.integers(1, 60).map(str),
    st.sampled_from(ACCOUNTS + TAGS + ("nosuch",)),
    st.sampled_from((*ACCOUNTS, "nosuch")).map("account:{}".format),
    st.sampled_from((*TAGS, "nosuch")).map("tag:{}".format),
)
selectors = st.lists(st.one_of(terms, terms.map("!{}".format)), min_size=1, max_size=3)


def ids_of(jobs: list[Job]) -> list[int]:
    return [j.integration_id for j in jobs]


def chosen(jobs: list[Job], sel: list[str]) -> list[int]:
    return ids_of(select(jobs, sel)[0])


@BOUNDED
@given(jobs=job_lists(), term=terms)
def test_one_term_selects_what_it_names(jobs: list[Job], term: str) -> None:
    kind, _, value = term.rpartition(":")
    if term.isdigit():
        want = [j for j in jobs if j.integration_id == int(term)]
    elif kind == "account":
        want = [j for j in jobs if j.account == value]
    elif kind == "tag":
        want = [j for j in jobs if value in j.tags]
    else:  # a bare name: an account or a tag
        want = [j for j in jobs if j.account == term or term in j.tags]
    got, unmatched = select(jobs, [term])
    assert got == want
    assert unmatched == ([] if want else [term])


@BOUNDED
@given(jobs=job_lists(), sel=selectors, term=terms)
def test_an_exclusion_removes_exactly_what_the_term_selects(jobs: list[Job], sel: list[str], term: str) -> None:
    excluded = set(chosen(jobs, [term]))
    assert chosen(jobs, [*sel, f"!{term}"]) == [i for i in chosen(jobs, sel) if i not in excluded]
    assert chosen(jobs, [f"!{term}"]) == [i for i in ids_of(jobs) if i not in excluded]


@BOUNDED
@given(jobs=job_lists(), included=st.lists(terms, min_size=1, max_size=4))
def test_commas_and_repeated_selectors_are_a_union(jobs: list[Job], included: list[str]) -> None:
    union = set().union(*(chosen(jobs, [t]) for t in included))
    expected = [i for i in ids_of(jobs) if i in union]  # in inventory order, each once
    assert chosen(jobs, included) == expected
    assert chosen(jobs, [",".join(included)]) == expected
    assert chosen(jobs, [" , ".join(included)]) == expected  # spaces around terms do not matter


@BOUNDED
@given(jobs=job_lists(), sel=selectors)
def test_commas_mean_the_same_as_repeating(jobs: list[Job], sel: list[str]) -> None:
    assert select(jobs, sel) == select(jobs, [",".join(sel)])
    _, unmatched = select(jobs, sel)
    for term in unmatched:
        assert chosen(jobs, [term.removeprefix("!")]) == []  # a named typo matches nothing on its own


@pytest.mark.parametrize("sel", ["", "!", " ! ", "a,,b", "tag:", "!account:", "eu,"])
def test_an_empty_term_is_refused(sel: str) -> None:
    with pytest.raises(ValueError, match="empty selector"):
        select([], [sel])


# -- the redactor --------------------------------------------------------------------------------

# Secrets of any characters but "*", the mask itself (a secret "*a" is still found in "***a").
secrets = st.text(st.characters(blacklist_characters="*", blacklist_categories=["Cs"]), min_size=1, max_size=24)
texts = st.text(max_size=30)
# Real credentials look like this: the alphabet the surrounding text is most likely to extend.
keys = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+/=", min_size=1, max_size=40)
any_secret = st.one_of(keys, secrets)


def forms(secret: str) -> list[str]:
    """Every way the secret can be written that the redactor promises to hide."""
    return [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(secret.encode()).decode(),
    ]


def leaks(out: str, known: list[str]) -> list[str]:
    return [form for s in known for form in forms(s) if form in out]


@BOUNDED
@given(secret=any_secret, others=st.lists(any_secret, max_size=2), before=texts, after=texts, form=st.integers(0, 3))
def test_no_form_of_a_secret_gets_through(secret: str, others: list[str], before: str, after: str, form: int) -> None:
    known = [secret, *others]
    out = Redactor(known)(before + forms(secret)[form] + after)
    assert leaks(out, known) == []


@BOUNDED
@given(secret=any_secret, before=texts, after=texts, key=st.text(max_size=8), ensure_ascii=st.booleans())
def test_a_secret_inside_a_json_document_does_not_get_through(
    secret: str, before: str, after: str, key: str, ensure_ascii: bool
) -> None:
    line = json.dumps({key: before + secret + after, "n": 1}, ensure_ascii=ensure_ascii)
    out = Redactor([secret])(line)
    assert leaks(out, [secret]) == []
    try:
        decoded = json.loads(out)
    except json.JSONDecodeError:
        return  # a mask cut through an escape: nothing left to decode, nothing leaked above
    assert all(secret not in str(v) for v in decoded.values())


class AlwaysGated(Redactor):
    GATE_MIN = 1  # the gate (a pre-check for a long enough run of key characters) for any secret


class NeverGated(Redactor):
    GATE_MIN = 1 << 30


@BOUNDED
@given(
    known=st.lists(any_secret, min_size=1, max_size=4),
    parts=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), texts), max_size=6),
    upper=st.booleans(),
)
def test_the_gate_never_changes_what_is_redacted(
    known: list[str], parts: list[tuple[int, int, str]], upper: bool
) -> None:
    # Texts made of the secrets' forms (a pick of 4 means none) between arbitrary text.
    text = "".join((forms(known[i % len(known)])[f] if i < 4 else "") + between for i, f, between in parts)
    if upper:
        text = text.upper()
    assert AlwaysGated(known)(text) == NeverGated(known)(text)


TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/_-=")
# Characters a case-insensitive [A-Za-z] also matches (U+0130, U+0131, U+017F, U+212A): a token
# followed by one of them is the known gap below, like one followed by a token character.
LOOKALIKES = frozenset("\u0130\u0131\u017f\u212a")
# What follows a token in a header, a log field or a JSON string: a separator, then anything.
separators = st.characters(blacklist_characters="".join(TOKEN_CHARS | LOOKALIKES), blacklist_categories=["Cs"])
after_token = st.one_of(st.just(""), st.tuples(separators, texts).map("".join))
schemes = st.sampled_from(["Basic ", "basic ", "BASIC  ", "Basic\t"])


def basic_line(user: str, secret: str, before: str, scheme: str, after: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return token, f"{before}Authorization: {scheme}{token}{after}"


@BOUNDED
@given(user=keys, secret=any_secret, before=texts, after=after_token, scheme=schemes, known_user=st.booleans())
def test_a_basic_credential_does_not_get_through(
    user: str, secret: str, before: str, after: str, scheme: str, known_user: bool
) -> None:
    token, line = basic_line(user, secret, before, scheme, after)
    known = [user, secret] if known_user else [secret]
    out = Redactor(known)(line)
    assert token not in out
    assert leaks(out, known) == []


@pytest.mark.parametrize("after", ["x", "0A", "abc", "\u0130", "\u017f"])
def test_a_basic_credential_followed_by_token_characters_does_not_get_through(after: str) -> None:
    # Found by the property above when ``after`` may start with a token character (or U+0130, U+017F).
    token, line = basic_line("acme", "s3cr3t-value1", "", "Basic ", after)
    assert not token.endswith("=")  # no padding to stop the pattern
    assert token not in Redactor(["s3cr3t-value1"])(line)
