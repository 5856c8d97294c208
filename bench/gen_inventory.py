"""Generate a large, valid inventory for benchmarks.

    python -m bench.gen_inventory N OUT.json [--accounts A] [--zipf S] [--inline-fraction F]
                                             [--override-fraction F] [--credentials file|env|mixed]
                                             [--seed S]

N integrations over A accounts whose sizes follow a Zipf law (a few big accounts, a long
tail of small ones), most on shared status sets, a fraction with inline statuses or a
per-shop override. Credentials are ``file:`` references to dummy secret files written
next to OUT (in OUT's ``<stem>-secrets/``), or ``env:`` references whose values are
written to ``<stem>.env`` (``set -a; . OUT.env``). Same seed, same file.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import msgspec

LANGS = ("en-gb", "nl-nl", "de-de", "fr-fr")
PRESTASHOP = [
    (
        "1",
        (
            "Awaiting check payment",
            "Wachten op betaling per cheque",
            "Scheckzahlung wird erwartet",
            "En attente du paiement par chèque",
        ),
    ),
    ("2", ("Payment accepted", "Betaling aanvaard", "Zahlung eingegangen", "Paiement accepté")),
    ("3", ("Processing in progress", "Wordt voorbereid", "In Bearbeitung", "En cours de préparation")),
    ("4", ("Shipped", "Verzonden", "Versandt", "Expédié")),
    ("5", ("Delivered", "Afgeleverd", "Zugestellt", "Livré")),
    ("6", ("Canceled", "Geannuleerd", "Storniert", "Annulé")),
    ("7", ("Refunded", "Terugbetaald", "Erstattet", "Remboursé")),
    ("8", ("Payment error", "Betalingsfout", "Fehler bei der Bezahlung", "Erreur de paiement")),
    (
        "9",
        (
            "On backorder (paid)",
            "In nabestelling (betaald)",
            "Nicht auf Lager (bezahlt)",
            "En réapprovisionnement (payé)",
        ),
    ),
    (
        "10",
        ("Awaiting bank wire payment", "Wachten op overschrijving", "Warten auf Überweisung", "En attente de virement"),
    ),
    (
        "11",
        (
            "Remote payment accepted",
            "Betaling op afstand aanvaard",
            "Fernzahlung eingegangen",
            "Paiement à distance accepté",
        ),
    ),
    ("12", ("On backorder (not paid)", "In nabestelling", "Nicht auf Lager", "En réapprovisionnement")),
    (
        "13",
        (
            "Awaiting cash on delivery",
            "Wachten op rembours",
            "Warten auf Nachnahme",
            "En attente du paiement à la livraison",
        ),
    ),
]
COUNTRIES = ("nl", "be", "de", "fr", "at", "ch", "lu", "es", "it")


def status(external_id: str, names: tuple[str, ...], langs: tuple[str, ...] = LANGS) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "translations": [{"status": n, "language": lang} for n, lang in zip(names, langs, strict=False)],
    }


def status_sets() -> dict[str, Any]:
    full = [status(eid, names) for eid, names in PRESTASHOP]
    minimal = [status(eid, names) for eid, names in PRESTASHOP if eid in ("2", "4", "5", "6")]
    english = [status(eid, names[:1], ("en-gb",)) for eid, names in PRESTASHOP]
    return {
        "prestashop-default": {"statuses": full},
        "prestashop-minimal": {"statuses": minimal},
        "prestashop-english": {"statuses": english},
    }


def zipf_sizes(n: int, accounts: int, s: float) -> list[int]:
    """n split over ``accounts`` proportionally to 1/rank**s, each at least 1 (if n allows)."""
    accounts = max(1, min(accounts, n)) if n else 1
    weights = [1.0 / (rank**s) for rank in range(1, accounts + 1)]
    total = sum(weights)
    floor = 1 if n >= accounts else 0
    rest = n - floor * accounts
    exact = [rest * w / total for w in weights]
    sizes = [floor + int(x) for x in exact]
    # Largest remainders get the integrations rounding left over.
    order = sorted(range(accounts), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def generate(
    n: int,
    out: Path,
    *,
    accounts: int = 20,
    zipf: float = 1.1,
    inline_fraction: float = 0.05,
    override_fraction: float = 0.05,
    credentials: str = "file",
    seed: int = 0,
) -> dict[str, Any]:
    """Write the inventory (and its secrets) and return the document."""
    rng = random.Random(seed)
    sizes = zipf_sizes(n, accounts, zipf)
    secrets_dir = out.parent / f"{out.stem}-secrets"
    env_lines: list[str] = []
    doc_accounts: dict[str, Any] = {}
    for a in range(len(sizes)):
        name = f"account-{a:03d}"
        use_env = credentials == "env" or (credentials == "mixed" and a % 2 == 1)
        refs = {}
        for field in ("public_key", "secret_key"):
            value = f"dummy-{name}-{field}-{rng.getrandbits(64):016x}"
            if use_env:
                var = f"BENCH_{a:03d}_{field.upper()}"
                env_lines.append(f"{var}={value}")
                refs[field] = f"env:{var}"
            else:
                secrets_dir.mkdir(parents=True, exist_ok=True)
                (secrets_dir / f"{name}.{field}").write_text(value + "\n")
                refs[field] = f"file:{secrets_dir.name}/{name}.{field}"
        doc_accounts[name] = refs
    if env_lines:
        out.with_suffix(".env").write_text("\n".join(env_lines) + "\n")

    sets = status_sets()
    set_names = list(sets)
    ids = rng.sample(range(100_000, 100_000 + 20 * max(n, 1)), n)
    integrations: list[dict[str, Any]] = []
    k = 0
    for a, size in enumerate(sizes):
        account = f"account-{a:03d}"
        for _ in range(size):
            entry: dict[str, Any] = {
                "id": ids[k],
                "account": account,
                "tags": [rng.choice(COUNTRIES), f"client-{a:03d}"],
            }
            k += 1
            roll = rng.random()
            if roll < inline_fraction:
                picked = rng.sample(PRESTASHOP, rng.randint(3, 8))
                entry["statuses"] = [status(eid, names) for eid, names in picked]
            else:
                entry["status_set"] = set_names[0] if rng.random() < 0.7 else rng.choice(set_names[1:])
                if roll < inline_fraction + override_fraction:
                    kind = rng.randrange(3)
                    if kind == 0:
                        entry["override_statuses"] = [
                            status(f"x{rng.randrange(100)}", ("Ready for pickup",), ("en-gb",))
                        ]
                    elif kind == 1:
                        entry["override_statuses"] = [status("4", ("Onderweg",), ("nl-nl",))]
                    else:
                        entry["remove_statuses"] = ["6"]
            integrations.append(entry)
    doc = {
        "defaults": {"limits": {"writes_per_minute": 100, "write_burst": 15}},
        "accounts": doc_accounts,
        "status_sets": sets,
        "integrations": integrations,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.encode(doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gen_inventory", description=__doc__.splitlines()[0])
    p.add_argument("n", type=int, metavar="N", help="number of integrations")
    p.add_argument("out", type=Path, metavar="OUT.json")
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of account sizes (0: even)")
    p.add_argument("--inline-fraction", type=float, default=0.05)
    p.add_argument("--override-fraction", type=float, default=0.05)
    p.add_argument("--credentials", choices=("file", "env", "mixed"), default="file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.out.suffix != ".json":
        p.error("OUT must end in .json")
    doc = generate(
        args.n,
        args.out,
        accounts=args.accounts,
        zipf=args.zipf,
        inline_fraction=args.inline_fraction,
        override_fraction=args.override_fraction,
        credentials=args.credentials,
        seed=args.seed,
    )
    sizes = [sum(1 for i in doc["integrations"] if i["account"] == a) for a in doc["accounts"]]
    print(
        f"{args.out}: {args.n} integrations over {len(sizes)} accounts "
        f"(largest {max(sizes, default=0)}, smallest {min(sizes, default=0)})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
