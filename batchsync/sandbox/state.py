"""What the sandbox knows: accounts, integrations, their statuses and mappings, and how it is seeded.

A :class:`Seed` is plain data (for unit tests); :func:`seed_from_inventory` builds one
from an inventory, starting a chosen fraction of integrations in sync and the rest drifted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import msgspec

from batchsync.inventory import Inventory, Limits
from batchsync.wire import STATUS_CATEGORIES, Status, Statuses, Translation

PRESTASHOP_V2 = "prestashop_v2"
"""The ``system`` of a PrestaShop V2 integration, the only kind the endpoints accept.

Sendcloud does not document the literal; this is the sandbox's choice.
"""
OTHER_SYSTEM = "woocommerce"
"""The ``system`` given to integrations listed in ``SandboxConfig.other_system_ids``."""

EXTRA_STATUS_ID = "sandbox-legacy"
"""external_id of the undesired status a drifted integration starts with."""


def utc_now() -> str:
    """An ISO 8601 UTC timestamp to the second, as the API's examples show them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AccountSeed(msgspec.Struct, frozen=True):
    name: str
    public_key: str
    secret_key: str
    limits: Limits = Limits()


class IntegrationSeed(msgspec.Struct, frozen=True):
    id: int
    account: str
    statuses: Statuses = ()
    deleted_statuses: Statuses = ()
    system: str = PRESTASHOP_V2
    shop_name: str | None = None
    shop_url: str | None = None


class Seed(msgspec.Struct, frozen=True):
    """A whole starting state, independent of any inventory file."""

    accounts: tuple[AccountSeed, ...]
    integrations: tuple[IntegrationSeed, ...] = ()


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
    """One integration: its description, statuses (in first-posted order) and mapping."""

    __slots__ = ("_cache", "account", "info", "mapping", "statuses")

    def __init__(self, info: OutIntegration, account: str) -> None:
        self.info = info
        self.account = account
        self.statuses: dict[str, StoredStatus] = {}
        self.mapping: dict[str, str | None] = dict.fromkeys(STATUS_CATEGORIES)
        # Encoded GET answers by (language, show_deleted); a change clears it.
        self._cache: dict[tuple[str | None, bool], bytes] = {}

    @property
    def id(self) -> int:
        return self.info.id

    def view(self, language: str | None = None, show_deleted: bool = False) -> list[OutStatus]:
        return [
            OutStatus(ext, pick_name(s.translations, language), s.deleted_at, s.translations)
            for ext, s in self.statuses.items()
            if show_deleted or s.deleted_at is None
        ]

    def encoded_view(self, language: str | None, show_deleted: bool) -> bytes:
        key = (language, show_deleted)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = _ENCODER.encode({"data": self.view(language, show_deleted)})
        return found

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
            self._cache.clear()
        return changed

    def set_mapping(self, items: Iterable[tuple[str, str | None]]) -> None:
        for category, external_id in items:
            self.mapping[category] = external_id

    def mapping_view(self) -> dict[str, object]:
        out = []
        for category in STATUS_CATEGORIES:
            ext = self.mapping[category]
            stored = self.statuses.get(ext) if ext is not None else None
            valid = ext is None or (stored is not None and stored.deleted_at is None)
            out.append({"status_category": category, "external_id": ext, "is_valid": valid})
        return {"integration_id": self.id, "mapping": out}


_ENCODER = msgspec.json.Encoder()


class Store:
    """All accounts and integrations of one sandbox."""

    def __init__(self, seed: Seed) -> None:
        self.accounts: dict[str, AccountSeed] = {a.name: a for a in seed.accounts}
        self.integrations: dict[int, IntegrationState] = {}
        started = utc_now()
        for spec in seed.integrations:
            if spec.account not in self.accounts:
                raise ValueError(f"integration {spec.id}: unknown account {spec.account!r}")
            if spec.id in self.integrations:
                raise ValueError(f"integration {spec.id} is seeded twice")
            info = OutIntegration(
                id=spec.id,
                shop_name=spec.shop_name or f"Sandbox shop {spec.id}",
                shop_url=spec.shop_url or f"https://shop-{spec.id}.example.com",
                system=spec.system,
                failing_since=None,
                last_fetch=started,
            )
            state = IntegrationState(info, spec.account)
            state.overwrite(spec.deleted_statuses, started)
            state.overwrite((), started)
            for s in spec.statuses:
                state.statuses[s.external_id] = StoredStatus(s.translations)
            self.integrations[spec.id] = state

    def snapshot(self) -> dict[str, list[OutStatus]]:
        """Every integration's statuses, deleted ones included: ``GET /_sandbox/state``."""
        return {str(i): s.view(None, True) for i, s in self.integrations.items()}


def _drift(desired: Statuses, rng: random.Random) -> Statuses:
    """A believable out-of-date state: empty, or one name changed plus a stale extra status."""
    if not desired or rng.random() < 1 / 3:
        return ()
    k = rng.randrange(len(desired))
    target = desired[k]
    j = rng.randrange(len(target.translations))
    renamed = tuple(
        Translation(t.status + " (old)", t.language) if i == j else t for i, t in enumerate(target.translations)
    )
    extra = Status(EXTRA_STATUS_ID, (Translation("Legacy status", "en-gb"),))
    return (*desired[:k], Status(target.external_id, renamed), *desired[k + 1 :], extra)


def seed_from_inventory(
    inventory: Inventory,
    *,
    in_sync: float = 0.0,
    seed: int = 0,
    systems: dict[int, str] | None = None,
) -> Seed:
    """Every account with its credentials and every integration of the inventory.

    ``round(in_sync * n)`` integrations, picked by ``seed``, start exactly in their
    desired state; the others start drifted (see :func:`_drift`), also by ``seed``.
    ``systems`` gives some integrations another ``system`` than PrestaShop V2.
    """
    if inventory.problems:
        raise ValueError(f"{inventory.path}: the inventory has {len(inventory.problems)} problem(s)")
    if not 0.0 <= in_sync <= 1.0:
        raise ValueError("in_sync must be between 0 and 1")
    rng = random.Random(f"batchsync-sandbox-seed:{seed}")
    # MERGE: an OAuth2 account is seeded with its client id and secret as the key pair
    # until the sandbox serves tokens (issue 12).
    accounts = tuple(
        AccountSeed(a.name, a.secrets()[0].reveal(), a.secrets()[1].reveal(), a.limits)
        for a in inventory.accounts.values()
    )
    jobs = sorted(inventory.jobs, key=lambda j: j.integration_id)
    order = list(range(len(jobs)))
    rng.shuffle(order)
    synced = set(order[: round(in_sync * len(jobs))])
    systems = systems or {}
    integrations = tuple(
        IntegrationSeed(
            id=job.integration_id,
            account=job.account,
            statuses=job.desired.statuses if i in synced else _drift(job.desired.statuses, rng),
            system=systems.get(job.integration_id, PRESTASHOP_V2),
        )
        for i, job in enumerate(jobs)
    )
    return Seed(accounts, integrations)


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
