"""What the sandbox knows: accounts, integrations, their statuses and mappings, and how it is seeded.

A :class:`Seed` is plain data (built in tests, or read from a JSON file by :func:`load_seed`);
:func:`seed_from_inventory` builds one from an inventory, starting a chosen fraction of
integrations in sync and the rest drifted.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import msgspec

from batchsync.files import not_utf8
from batchsync.inventory.documents import json_problem
from batchsync.model import PRESTASHOP_V2, Account, Inventory, Limits, OAuth2Credentials, pack, unpack
from batchsync.wire import STATUS_CATEGORIES, Status, StatusCategory, Statuses, Translation

OTHER_SYSTEM = "woocommerce"
"""The ``system`` given to integrations listed in ``SandboxConfig.other_system_ids``."""

EXTRA_STATUS_ID = "sandbox-legacy"
"""external_id of the undesired status a drifted integration starts with."""


def utc_now() -> str:
    """An ISO 8601 UTC timestamp to the second, as the API's examples show them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


AuthKind = Literal["basic", "oauth2"]


class AccountSeed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One account and how it authenticates.

    ``basic`` needs the API keys. ``oauth2`` needs a client id and secret (for the token
    endpoint), and then the API refuses Basic for it, as Sendcloud does for an
    integration set to OAuth2: its API keys, if given, are not accepted.
    """

    name: str
    public_key: str = ""
    secret_key: str = ""
    limits: Limits = Limits()
    auth: AuthKind = "basic"
    client_id: str = ""
    client_secret: str = ""

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError naming the account's path.
        if self.auth == "basic" and not (self.public_key and self.secret_key):
            raise ValueError(f"account {self.name!r}: auth 'basic' needs public_key and secret_key")
        if self.auth == "oauth2" and not (self.client_id and self.client_secret):
            raise ValueError(f"account {self.name!r}: auth 'oauth2' needs client_id and client_secret")


class IntegrationSeed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One integration's starting state. ``mapping``: categories left out are not mapped (null)."""

    id: int
    account: str
    statuses: Statuses = ()
    deleted_statuses: Statuses = ()
    system: str = PRESTASHOP_V2
    shop_name: str | None = None
    shop_url: str | None = None
    failing_since: str | None = None
    last_fetch: str | None = None  # None: when the sandbox started
    mapping: dict[StatusCategory, str | None] | None = None


class Seed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole starting state, independent of any inventory file."""

    accounts: tuple[AccountSeed, ...]
    integrations: tuple[IntegrationSeed, ...] = ()


def load_seed(path: str | Path) -> Seed:
    """A :class:`Seed` from a JSON file; ValueError with a printable reason (never a value) otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    problem = not_utf8(data)  # first: a value's type may be checked before its text is read
    if problem is not None:
        raise ValueError(f"{path}: {problem.message}")
    try:
        return msgspec.json.decode(data, type=Seed)
    except msgspec.ValidationError as exc:
        # A seed file holds credentials: a value msgspec quotes ('...') is not echoed.
        why = re.sub(r"'[^']*'", "…", str(exc))
        raise ValueError(f"{path}: {why}") from None
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValueError: UnicodeDecodeError (msgspec < 0.23)
        pass
    raise ValueError(f"{path}: {json_problem(data).message}")


# Output structs: field order is the order the API shows.
class OutStatus(msgspec.Struct, frozen=True):
    external_id: str
    status: str
    deleted_at: str | None
    translations: tuple[Translation, ...]


class OutIntegration(msgspec.Struct, frozen=True):
    id: int
    shop_name: str | None
    shop_url: str | None
    system: str
    failing_since: str | None
    last_fetch: str | None


class StoredStatus:
    __slots__ = ("deleted_at", "translations")

    def __init__(self, translations: tuple[Translation, ...], deleted_at: str | None = None) -> None:
        self.translations = translations
        self.deleted_at = deleted_at


def pick_name(translations: tuple[Translation, ...], language: str | None) -> str:
    """The asked language, else ``en-gb``, else the first language alphabetically."""
    by_lang = {t.language: t.status for t in translations}
    if language is not None and language in by_lang:
        return by_lang[language]
    if "en-gb" in by_lang:
        return by_lang["en-gb"]
    return by_lang[min(by_lang)]


class IntegrationState:
    """One integration: its description, statuses (in first-posted order) and mapping.

    As seeded, its statuses are the seed's list itself, shared with every integration
    seeded with the same list; they become its own (``StoredStatus`` each, with deletion
    times) at the first write that reaches them: a fleet that is only read (a plan
    against the embedded sandbox) is held once per distinct list."""

    __slots__ = ("_cache", "_mapping", "_seeded", "_seen", "_spec", "_started", "_stored", "account")

    def __init__(self, spec: IntegrationSeed, started: str, seeded: Statuses | bytes = ()) -> None:
        # What describes it is its seed's (its names made when asked: two strings of its
        # own per integration otherwise); ``started``: its last fetch, unless seeded.
        self._spec = spec
        self._started = started
        self.account = spec.account
        # As seeded: a list shared by several integrations, or one of its own in the
        # inventory's compact form (model.pack), unpacked when read.
        self._seeded: Statuses | bytes | None = seeded
        self._stored: dict[str, StoredStatus] | None = None
        self._mapping: dict[str, str | None] | None = None  # None: nothing mapped yet (made at the first change)
        # Encoded GET answers by (language, show_deleted), from the second read of one (the
        # first is only noted in _seen); a change clears them.
        self._cache: dict[tuple[str | None, bool], bytes] | None = None
        self._seen: tuple[str | None, bool] | None = None

    @property
    def id(self) -> int:
        return self._spec.id

    @property
    def system(self) -> str:
        return self._spec.system

    @property
    def info(self) -> OutIntegration:
        """The integration as ``GET /integrations`` shows it."""
        spec = self._spec
        return OutIntegration(
            id=spec.id,
            shop_name=spec.shop_name or f"Sandbox shop {spec.id}",
            shop_url=spec.shop_url or f"https://shop-{spec.id}.example.com",
            system=spec.system,
            failing_since=spec.failing_since,
            last_fetch=spec.last_fetch or self._started,
        )

    @property
    def mapping(self) -> dict[str, str | None]:
        """Each category's external id (None: not mapped); a copy while nothing is mapped."""
        return dict.fromkeys(STATUS_CATEGORIES) if self._mapping is None else self._mapping

    @property
    def statuses(self) -> dict[str, StoredStatus]:
        """Its own statuses by external id (made from the seeded list on first use)."""
        if self._stored is None:
            self._stored = {s.external_id: StoredStatus(s.translations) for s in self._as_seeded()}
            self._seeded = None
        return self._stored

    def _as_seeded(self) -> Statuses:
        seeded = self._seeded
        return unpack(seeded) if isinstance(seeded, bytes) else seeded or ()

    def view(self, language: str | None = None, show_deleted: bool = False) -> list[OutStatus]:
        if self._stored is None:  # as seeded: none deleted (a later duplicate id wins, in the first's place)
            seeded = {s.external_id: s.translations for s in self._as_seeded()}
            return [OutStatus(ext, pick_name(trs, language), None, trs) for ext, trs in seeded.items()]
        return [
            OutStatus(ext, pick_name(s.translations, language), s.deleted_at, s.translations)
            for ext, s in self._stored.items()
            if show_deleted or s.deleted_at is None
        ]

    def encoded_view(self, language: str | None, show_deleted: bool) -> bytes:
        """The GET's answer, kept from its second read on: a run that reads each integration
        once (a plan) must not leave a copy of every answer in memory."""
        key = (language, show_deleted)
        if self._cache is not None:
            found = self._cache.get(key)
            if found is not None:
                return found
        encoded = _ENCODER.encode({"data": self.view(language, show_deleted)})
        if self._seen == key:
            if self._cache is None:
                self._cache = {}
            self._cache[key] = encoded
        else:
            self._seen = _KEYS.get(key) or (_KEYS.setdefault(key, key) if len(_KEYS) < 64 else key)
        return encoded

    def _valid(self, external_id: str) -> bool:
        """Whether a mapping item pointing at ``external_id`` is valid: it is there, not deleted."""
        if self._stored is None:
            return any(s.external_id == external_id for s in self._as_seeded())
        stored = self._stored.get(external_id)
        return stored is not None and stored.deleted_at is None

    def overwrite(self, statuses: Iterable[Status], now: str | None = None) -> bool:
        """Apply a POST: the list replaces what is there; True if anything changed."""
        stamp = now or utc_now()
        changed = False
        posted: set[str] = set()
        for s in statuses:
            posted.add(s.external_id)
            old = self.statuses.get(s.external_id)
            if old is None:
                self.statuses[s.external_id] = StoredStatus(s.translations)
                changed = True
            elif old.translations != s.translations or old.deleted_at is not None:
                old.translations = s.translations
                old.deleted_at = None  # a re-posted deleted status is revived
                changed = True
        for ext, old in self.statuses.items():
            if ext not in posted and old.deleted_at is None:
                old.deleted_at = stamp
                changed = True
        if changed:
            self._cache = self._seen = None
        return changed

    def set_mapping(self, items: Iterable[tuple[str, str | None]]) -> bool:
        """Apply a POST of the mapping; True if anything changed."""
        changed = False
        for category, external_id in items:
            if self.mapping[category] != external_id:
                if self._mapping is None:
                    self._mapping = dict.fromkeys(STATUS_CATEGORIES)
                self._mapping[category] = external_id
                changed = True
        return changed

    def mapping_view(self) -> dict[str, object]:
        """As the API shows it: ``is_valid`` is computed on each read, never stored, so an
        item that a POST of statuses deleted turns invalid, and valid again if a later
        POST revives that status. A null item is valid (it points at nothing)."""
        out = []
        for category in STATUS_CATEGORIES:
            ext = self._mapping[category] if self._mapping is not None else None
            valid = ext is None or self._valid(ext)
            out.append({"status_category": category, "external_id": ext, "is_valid": valid})
        return {"integration_id": self.id, "mapping": out}


_ENCODER = msgspec.json.Encoder()
_KEYS: dict[tuple[str | None, bool], tuple[str | None, bool]] = {}  # the few (language, show_deleted) asked, held once


class Store:
    """All accounts and integrations of one sandbox; ValueError on a seed that contradicts itself."""

    def __init__(self, seed: Seed, seeded: Iterable[tuple[IntegrationSeed, Statuses | bytes]] | None = None) -> None:
        """``seeded``: the integrations one at a time, each with its list (then the seed's
        own are ignored): an inventory's fleet is never held twice (see :func:`fleet_of`)."""
        self.accounts: dict[str, AccountSeed] = {}
        client_ids: set[str] = set()
        for acc in seed.accounts:
            if acc.name in self.accounts:
                raise ValueError(f"account {acc.name!r} is seeded twice")
            if acc.auth == "oauth2":
                if acc.client_id in client_ids:
                    raise ValueError(f"account {acc.name!r}: another account has the same client_id")
                client_ids.add(acc.client_id)
            self.accounts[acc.name] = acc
        self.integrations: dict[int, IntegrationState] = {}
        started = utc_now()
        pairs = ((spec, spec.statuses) for spec in seed.integrations) if seeded is None else seeded
        for spec, statuses in pairs:
            if spec.account not in self.accounts:
                raise ValueError(f"integration {spec.id}: unknown account {spec.account!r}")
            if spec.id in self.integrations:
                raise ValueError(f"integration {spec.id} is seeded twice")
            if spec.deleted_statuses:  # deleted ones first, then the current list over them
                state = IntegrationState(spec, started)
                state.overwrite(spec.deleted_statuses, started)
                state.overwrite((), started)
                for s in unpack(statuses) if isinstance(statuses, bytes) else statuses:
                    state.statuses[s.external_id] = StoredStatus(s.translations)
            else:  # the seed's list itself, shared until a write
                state = IntegrationState(spec, started, statuses)
            if spec.mapping:
                unknown = sorted(set(spec.mapping) - set(STATUS_CATEGORIES))
                if unknown:
                    raise ValueError(f"integration {spec.id}: unknown mapping categories {', '.join(unknown)}")
                state.set_mapping(spec.mapping.items())
            self.integrations[spec.id] = state
        # GET /integrations pages through each account's integrations in id order.
        self.listing: dict[str, list[IntegrationState]] = {name: [] for name in self.accounts}
        for iid in sorted(self.integrations):
            state = self.integrations[iid]
            self.listing[state.account].append(state)
        self.listing_ids: dict[str, list[int]] = {a: [s.id for s in ss] for a, ss in self.listing.items()}

    def snapshot(self) -> dict[str, list[OutStatus]]:
        """Every integration's statuses, deleted ones included: ``GET /_sandbox/state``."""
        return {str(i): s.view(None, True) for i, s in self.integrations.items()}

    def mappings(self) -> dict[str, object]:
        """Every integration's mapping as the GET shows it: ``GET /_sandbox/mappings``."""
        return {str(i): s.mapping_view()["mapping"] for i, s in self.integrations.items()}


_EXTRA = Status(EXTRA_STATUS_ID, (Translation("Legacy status", "en-gb"),))  # the stale one, held once


def drift(desired: Statuses, rng: random.Random) -> Statuses:
    """A believable out-of-date state: empty, or one name changed plus a stale extra status."""
    if not desired or rng.random() < 1 / 3:
        return ()
    k = rng.randrange(len(desired))
    target = desired[k]
    j = rng.randrange(len(target.translations))
    renamed = tuple(
        Translation(t.status + " (old)", t.language) if i == j else t for i, t in enumerate(target.translations)
    )
    return (*desired[:k], Status(target.external_id, renamed), *desired[k + 1 :], _EXTRA)


def drift_mapping(
    desired: dict[str, str | None], current: Statuses, rng: random.Random
) -> dict[str, str | None] | None:
    """The mapping of a drifted integration: a third each in sync, never set up, or one category off.

    "Off" points at the stale extra status when the drifted statuses have it (so applying
    the statuses would leave it invalid, and the declared mapping repairs it), else at nothing.
    """
    r = rng.random()
    if r < 1 / 3:
        return desired
    if r < 2 / 3 and any(v is not None for v in desired.values()):
        return None
    category = STATUS_CATEGORIES[rng.randrange(len(STATUS_CATEGORIES))]
    stale = any(s.external_id == EXTRA_STATUS_ID for s in current)
    target = EXTRA_STATUS_ID if stale or desired[category] is None else None
    return {**desired, category: target}


def _account_seed(account: Account) -> AccountSeed:
    creds = account.credentials
    if isinstance(creds, OAuth2Credentials):
        return AccountSeed(
            account.name,
            limits=account.limits,
            auth="oauth2",
            client_id=creds.client_id.reveal(),
            client_secret=creds.client_secret.reveal(),
        )
    return AccountSeed(account.name, creds.public_key.reveal(), creds.secret_key.reveal(), account.limits)


def seed_from_inventory(
    inventory: Inventory,
    *,
    in_sync: float = 0.0,
    seed: int = 0,
    systems: dict[int, str] | None = None,
    failing: Iterable[int] = (),
    absent: Iterable[int] = (),
) -> Seed:
    """Every account with its credentials and every integration of the inventory.

    ``round(in_sync * n)`` integrations, picked by ``seed``, start exactly in their
    desired state (statuses and, when the inventory declares one, mapping); the others
    start drifted (see :func:`drift` and :func:`drift_mapping`), also by ``seed``.
    ``systems`` gives some integrations another ``system`` than PrestaShop V2,
    ``failing`` ids get a ``failing_since``, and ``absent`` ids are left out (the
    account does not have them).
    """
    accounts, pairs = fleet_of(inventory, in_sync, seed, systems or {}, failing, absent)
    integrations = tuple(
        msgspec.structs.replace(spec, statuses=unpack(statuses) if isinstance(statuses, bytes) else statuses)
        for spec, statuses in pairs
    )
    return Seed(accounts, integrations)


def fleet_of(
    inventory: Inventory,
    in_sync: float,
    seed: int,
    systems: dict[int, str],
    failing: Iterable[int],
    absent: Iterable[int],
) -> tuple[tuple[AccountSeed, ...], Iterator[tuple[IntegrationSeed, Statuses | bytes]]]:
    """What :func:`seed_from_inventory` seeds (its arguments), one integration at a time:
    its seed (its ``statuses`` left empty) and its list, a list several integrations share
    once for all of them, a list of its own in the compact form (model.pack): what a
    sandbox inside the run holds of a fleet. ValueError at once on an inventory with problems."""
    if inventory.problems:
        raise ValueError(f"{inventory.path}: the inventory has {len(inventory.problems)} problem(s)")
    if not 0.0 <= in_sync <= 1.0:
        raise ValueError("in_sync must be between 0 and 1")
    accounts = tuple(_account_seed(a) for a in inventory.accounts.values())
    return accounts, _fleet(inventory, in_sync, seed, systems, frozenset(failing), frozenset(absent))


def _fleet(
    inventory: Inventory,
    in_sync: float,
    seed: int,
    systems: dict[int, str],
    failing: frozenset[int],
    absent: frozenset[int],
) -> Iterator[tuple[IntegrationSeed, Statuses | bytes]]:
    rng = random.Random(f"batchsync-sandbox-seed:{seed}")
    # A second stream, so that declaring mappings does not change how the statuses drift.
    mapping_rng = random.Random(f"batchsync-sandbox-mapping:{seed}")
    jobs = sorted(inventory.jobs, key=lambda j: j.integration_id)
    order = list(range(len(jobs)))
    rng.shuffle(order)
    synced = set(order[: round(in_sync * len(jobs))])
    since = utc_now()
    # A list several integrations share, unpacked once for all of them; one of its own
    # stays packed (the inventory's bytes when in sync, its drift packed anew).
    unpacked: dict[bytes, Statuses] = {}
    for i, job in enumerate(jobs):
        desired = job.desired
        wanted = unpacked.get(desired.packed)
        if wanted is None:
            wanted = desired.statuses
            if desired.shared:
                unpacked[desired.packed] = wanted
        statuses = wanted if i in synced else drift(wanted, rng)
        declared = job.mapping
        mapping = None
        if declared is not None:
            want: dict[str, str | None] = declared.as_dict()
            mapping = want if i in synced else drift_mapping(want, statuses, mapping_rng)
        if job.integration_id in absent:
            continue
        spec = IntegrationSeed(
            id=job.integration_id,
            account=job.account,
            system=systems.get(job.integration_id, PRESTASHOP_V2),
            failing_since=since if job.integration_id in failing else None,
            mapping=mapping,  # type: ignore[arg-type]  # the inventory checked the categories
        )
        if desired.shared or not statuses:
            yield spec, statuses
        else:
            yield spec, desired.packed if statuses is wanted else pack(statuses)


DEMO_PUBLIC_KEY = "demo-public-key"
DEMO_SECRET_KEY = "demo-secret-key"  # noqa: S105 - a published demo credential


def demo_seed() -> Seed:
    """The built-in state used without an inventory: one ``demo`` account, three shops.

    1001 and 1002 are PrestaShop V2 (1002 already has two statuses); 1003 is a
    WooCommerce shop, to show the "only PrestaShop V2" refusal.
    """
    shipped = Status("shipped", (Translation("Shipped", "en-gb"), Translation("Verzonden", "nl-nl")))
    paid = Status("paid", (Translation("Paid", "en-gb"),))
    return Seed(
        accounts=(AccountSeed("demo", DEMO_PUBLIC_KEY, DEMO_SECRET_KEY),),
        integrations=(
            IntegrationSeed(1001, "demo"),
            IntegrationSeed(1002, "demo", statuses=(paid, shipped)),
            IntegrationSeed(1003, "demo", system=OTHER_SYSTEM),
        ),
    )
