"""A believable fleet to import: families of status lists, small per-shop variations, mappings.

:func:`fleet_seed` builds a sandbox :class:`~batchsync.sandbox.state.Seed` (deterministic
for a given ``seed``) as an agency's accounts look before onboarding: most shops run one
of a few PrestaShop status lists, many with a status added, removed or renamed, most with
a mapping; a few integrations are of other systems. ``python -m batchsync.sandbox.fleet
DIR`` writes it as ``DIR/seed.json`` beside an inventory that declares only the accounts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import msgspec

from batchsync.model import PRESTASHOP_V2, Limits
from batchsync.sandbox.state import AccountSeed, IntegrationSeed, Seed
from batchsync.wire import STATUS_CATEGORIES, Status, StatusCategory, Translation

# PrestaShop's own statuses (id, en-gb name), and extras some shops add.
PRESTASHOP = (
    ("1", "Awaiting check payment"),
    ("2", "Payment accepted"),
    ("3", "Processing in progress"),
    ("4", "Shipped"),
    ("5", "Delivered"),
    ("6", "Canceled"),
    ("7", "Refunded"),
    ("8", "Payment error"),
    ("9", "On backorder (paid)"),
    ("10", "Awaiting bank wire payment"),
    ("11", "Remote payment accepted"),
    ("12", "On backorder (not paid)"),
    ("13", "Awaiting Cash On Delivery validation"),
)
EXTRAS = (
    ("click-collect", "Ready for click & collect"),
    ("picked-up", "Picked up in store"),
    ("returned", "Returned to sender"),
    ("gift-wrap", "Gift wrapping"),
    ("pre-order", "Pre-order"),
    ("partial", "Partially shipped"),
    ("b2b-review", "Awaiting B2B approval"),
    ("quality-check", "Quality check"),
)
WORDS = {  # a few names in other languages, so that lists carry translations
    "nl-nl": "Status",
    "fr-fr": "Statut",
    "de-de": "Status",
    "es-es": "Estado",
    "it-it": "Stato",
}
FAMILY_LANGUAGES = (("en-gb", "nl-nl"), ("en-gb", "fr-fr", "de-de"), ("en-gb",), ("en-gb", "es-es", "it-it"))
OTHER_SYSTEMS = ("woocommerce", "shopify", "magento_2", "lightspeed", "bigcommerce")
ACCOUNT_NAMES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")


def account_names(n: int) -> tuple[str, ...]:
    """``n`` account names: the eight above, then ``acme-2``, ``globex-2``... (any number)."""
    return tuple(
        ACCOUNT_NAMES[k % len(ACCOUNT_NAMES)] + (f"-{k // len(ACCOUNT_NAMES) + 1}" if k >= len(ACCOUNT_NAMES) else "")
        for k in range(n)
    )


def _status(external_id: str, name: str, languages: tuple[str, ...]) -> Status:
    translations = [Translation(name, "en-gb")] if "en-gb" in languages else []
    translations += [Translation(f"{WORDS[lang]}: {name}", lang) for lang in languages if lang != "en-gb"]  # type: ignore[arg-type]
    return Status(external_id, tuple(translations))


def family_lists(families: int, rng: random.Random) -> list[tuple[Status, ...]]:
    """``families`` base lists, each far enough from the others to be told apart."""
    out = []
    for f in range(families):
        languages = FAMILY_LANGUAGES[f % len(FAMILY_LANGUAGES)]
        # Each family: PrestaShop's first six, a run of the others, and extras of its own.
        core = list(PRESTASHOP[:6])
        start = 6 + (f * 3) % 7
        core += [PRESTASHOP[6 + (start - 6 + k) % 7] for k in range(2 + f % 3)]
        core += [
            (f"{EXTRAS[(2 * f + k) % len(EXTRAS)][0]}-{f}", EXTRAS[(2 * f + k) % len(EXTRAS)][1]) for k in range(3)
        ]
        out.append(tuple(_status(i, n, languages) for i, n in core))
    return out


def _vary(base: tuple[Status, ...], shop: int, rng: random.Random) -> tuple[Status, ...]:
    """One or two small changes: a status removed, one added, or a translation renamed."""
    statuses = list(base)
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.random()
        if kind < 0.35 and len(statuses) > 4:
            statuses.pop(rng.randrange(6, len(statuses)) if len(statuses) > 6 else -1)
        elif kind < 0.7:
            extra_id, extra_name = EXTRAS[rng.randrange(len(EXTRAS))]
            new = Status(f"{extra_id}-shop{shop}", (Translation(f"{extra_name} ({shop})", "en-gb"),))
            if all(s.external_id != new.external_id for s in statuses):  # drawn twice: once is enough
                statuses.append(new)
        else:
            k = rng.randrange(len(statuses))
            s = statuses[k]
            j = rng.randrange(len(s.translations))
            renamed = tuple(
                Translation(t.status + " *", t.language) if i == j else t for i, t in enumerate(s.translations)
            )
            statuses[k] = Status(s.external_id, renamed)
    return tuple(statuses)


def _mapping(statuses: tuple[Status, ...], rng: random.Random) -> dict[StatusCategory, str | None] | None:
    """Most shops map the usual four (2, 4, 5, 6); some differ in one category; some never set it up."""
    ids = [s.external_id for s in statuses]
    usual: dict[StatusCategory, str | None] = {
        "READY_TO_SEND": "2",
        "IN_TRANSIT": "4",
        "DELIVERED": "5",
        "CANCEL": "6",
    }
    mapping = {c: (e if e in ids else None) for c, e in usual.items()}
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.25:
        category: StatusCategory = STATUS_CATEGORIES[rng.randrange(4)]
        mapping[category] = rng.choice([*ids, None])
    return mapping


def fleet_seed(
    accounts: int = 3,
    integrations: int = 300,
    families: int = 4,
    others: int = 10,
    *,
    exact: float = 0.5,
    mappings: bool = True,
    seed: int = 0,
    limits: Limits | None = None,
    first_id: int = 10_000,
    oauth2: int = 0,
) -> Seed:
    """``integrations`` PrestaShop V2 shops over ``accounts`` accounts, each running one of
    ``families`` lists, as it is (a fraction ``exact``) or with one or two small changes,
    plus ``others`` integrations of other systems; without ``mappings``, no shop maps
    any category. Account ``name`` has keys ``name-public`` / ``name-secret``; the last
    ``oauth2`` accounts authenticate with OAuth2 client credentials instead
    (``name-client-id`` / ``name-client-secret``)."""
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    if not 0 <= oauth2 <= accounts:
        raise ValueError("oauth2 must be between 0 and the number of accounts")
    if families < 1:
        raise ValueError("families must be at least 1")
    rng = random.Random(f"batchsync-fleet:{seed}")
    names = account_names(accounts)
    bases = family_lists(families, rng)
    seeds = []
    for k in range(integrations):
        iid = first_id + k
        base = bases[rng.randrange(families)]
        statuses = base if rng.random() < exact else _vary(base, iid, rng)
        deleted = (Status(f"old-{iid}", (Translation("Old status", "en-gb"),)),) if rng.random() < 0.1 else ()
        seeds.append(
            IntegrationSeed(
                id=iid,
                account=names[k % accounts],
                statuses=statuses,
                deleted_statuses=deleted,
                shop_name=f"Shop {iid}",
                shop_url=f"https://shop-{iid}.example.com",
                mapping=_mapping(statuses, rng) if mappings else None,
                failing_since="2026-01-01T00:00:00Z" if rng.random() < 0.02 else None,
            )
        )
    for k in range(others):
        iid = first_id + integrations + k
        system = OTHER_SYSTEMS[k % len(OTHER_SYSTEMS)]
        seeds.append(
            IntegrationSeed(
                id=iid,
                account=names[k % accounts],
                system=system,
                shop_name=f"{system.replace('_', ' ').title()} shop {iid}",
                shop_url=f"https://{system}-{iid}.example.com",
            )
        )
    assert all(s.system != PRESTASHOP_V2 for s in seeds[integrations:])
    account_seeds = tuple(
        AccountSeed(n, f"{n}-public", f"{n}-secret", limits or Limits())
        if k < accounts - oauth2
        else AccountSeed(
            n, limits=limits or Limits(), auth="oauth2", client_id=f"{n}-client-id", client_secret=f"{n}-client-secret"
        )
        for k, n in enumerate(names)
    )
    return Seed(account_seeds, tuple(seeds))


def accounts_inventory(seed: Seed, base_url: str, limits: dict[str, float] | None = None) -> str:
    """A TOML inventory that declares only the seed's accounts, keys as env: references
    (``<NAME>_PUBLIC`` / ``<NAME>_SECRET``, see :func:`account_env`)."""
    lines = ["[defaults]", f"base_url = {json.dumps(base_url)}"]
    if limits:
        lines.append("limits = { " + ", ".join(f"{k} = {v!r}" for k, v in limits.items()) + " }")
    for acc in seed.accounts:
        env = acc.name.upper().replace("-", "_")
        key = (
            acc.name
            if acc.name.replace("-", "").replace("_", "").isalnum() and acc.name.isascii()
            else json.dumps(acc.name)
        )
        lines += ["", f"[accounts.{key}]"]
        if acc.auth == "oauth2":
            # The token endpoint is the sandbox's: off production, an OAuth2 account names it.
            token_url = json.dumps(base_url.rstrip("/") + "/oauth2/token")
            lines += [
                'auth = "oauth2"',
                f'client_id = "env:{env}_CLIENT_ID"',
                f'client_secret = "env:{env}_CLIENT_SECRET"',
            ]
            lines.append(f"token_url = {token_url}")
        else:
            lines += [f'public_key = "env:{env}_PUBLIC"', f'secret_key = "env:{env}_SECRET"']
    return "\n".join(lines) + "\n"


def account_env(seed: Seed) -> dict[str, str]:
    """The environment :func:`accounts_inventory`'s references need."""
    env = {}
    for acc in seed.accounts:
        name = acc.name.upper().replace("-", "_")
        if acc.auth == "oauth2":
            env[f"{name}_CLIENT_ID"] = acc.client_id
            env[f"{name}_CLIENT_SECRET"] = acc.client_secret
        else:
            env[f"{name}_PUBLIC"] = acc.public_key
            env[f"{name}_SECRET"] = acc.secret_key
    return env


def parser() -> argparse.ArgumentParser:
    # The module's docstring, its Sphinx roles (:func:`x`) read as plain words in --help.
    about = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", __doc__ or "")
    p = argparse.ArgumentParser(prog="python -m batchsync.sandbox.fleet", description=about)
    p.add_argument("directory", type=Path)
    p.add_argument("--accounts", type=int, default=3, help="any number: acme, globex... then acme-2, globex-2...")
    p.add_argument("--oauth2", type=int, default=0, metavar="N", help="the last N accounts use OAuth2 (0)")
    p.add_argument("--integrations", type=int, default=300, help="PrestaShop V2 ones")
    p.add_argument("--families", type=int, default=4)
    p.add_argument("--others", type=int, default=10, help="integrations of other systems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-url", default="http://127.0.0.1:8765")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        seed = fleet_seed(
            args.accounts, args.integrations, args.families, args.others, seed=args.seed, oauth2=args.oauth2
        )
    except ValueError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    args.directory.mkdir(parents=True, exist_ok=True)
    (args.directory / "seed.json").write_bytes(msgspec.json.encode(seed))
    (args.directory / "accounts.toml").write_text(accounts_inventory(seed, args.base_url), encoding="utf-8")
    exports = " ".join(f"{k}={v}" for k, v in account_env(seed).items())
    print(f"wrote {args.directory}/seed.json and {args.directory}/accounts.toml; their keys: export {exports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
