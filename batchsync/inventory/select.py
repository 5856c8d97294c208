"""``--limit``: which integrations of an inventory a run takes, by id, name, account or tag."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fnmatch import translate

from batchsync.model import Inventory, Job

PREFIXES = ("tag:", "account:", "name:", "id:")
GLOB = re.compile(r"[*?\[]")


def _matcher(pattern: str) -> Callable[[str], bool]:
    """``pattern`` as a test of one string: shell-style (``*``, ``?``, ``[..]``, case
    sensitive), or plain equality when it holds none of those."""
    if GLOB.search(pattern) is None:
        return pattern.__eq__
    match = re.compile(translate(pattern)).match
    return lambda text: match(text) is not None


def _term(term: str) -> Callable[[Job], bool]:
    """One selector term as a test of a job."""
    kind, _, pattern = term.partition(":") if term.startswith(PREFIXES) else ("", "", term)
    test = _matcher(pattern)
    if kind == "tag":
        return lambda job: any(test(t) for t in job.tags)
    if kind == "account":
        return lambda job: test(job.account)
    if kind == "name":
        return lambda job: job.name is not None and test(job.name)
    if kind == "id":
        return lambda job: test(str(job.integration_id))
    if pattern.isascii() and pattern.isdigit():
        wanted = int(pattern)
        return lambda job: job.integration_id == wanted
    return lambda job: (
        test(job.account)
        or any(test(t) for t in job.tags)
        or (job.name is not None and test(job.name))
        or test(str(job.integration_id))
    )


def select(jobs: Sequence[Job], selectors: Sequence[str]) -> tuple[list[Job], list[str]]:
    """Jobs matching the selectors, and the terms that matched no job at all (a typo, most likely).

    As Ansible composes its ``--limit``: several selectors (repeated or comma-separated);
    the union of the plain terms (every job when there is none), then kept only what
    each ``&X`` matches too, then removed what each ``!X`` matches. A term is an
    integration id, ``id:``, ``name:``, ``account:`` or ``tag:`` followed by a
    shell-style pattern (``client-*``, ``shop-?``, ``[ab]*``), or a bare pattern matched
    against the id, the name, the account and the tags. An empty term is a ValueError:
    ``--limit '!'`` must not quietly mean everything.
    """
    if not selectors:
        return list(jobs), []
    union: list[str] = []
    every: list[str] = []
    minus: list[str] = []
    for sel in selectors:
        for part in sel.split(","):
            part = part.strip()
            term = part.removeprefix("!").removeprefix("&").strip()
            if not term or term in PREFIXES:
                raise ValueError(f"empty selector in {sel!r}")
            (minus if part.startswith("!") else every if part.startswith("&") else union).append(term)
    tests = {t: _term(t) for t in dict.fromkeys(union + every + minus)}
    unmatched = [t for t, test in tests.items() if not any(test(j) for j in jobs)]
    plus = [tests[t] for t in union]
    both = [tests[t] for t in every]
    out = [tests[t] for t in minus]
    chosen = [
        j
        for j in jobs
        if (not plus or any(f(j) for f in plus)) and all(f(j) for f in both) and not any(f(j) for f in out)
    ]
    return chosen, unmatched


def declared_ids(inv: Inventory) -> dict[str, frozenset[int]]:
    """Per account, every integration id the inventory declares (selected or not): what
    the pre-flight does not call undeclared."""
    ids: dict[str, set[int]] = {name: set() for name in inv.accounts}
    for job in inv.jobs:
        ids.setdefault(job.account, set()).add(job.integration_id)
    return {name: frozenset(s) for name, s in ids.items()}


def without_integrations(inv: Inventory) -> list[str]:
    """The declared accounts the inventory declares no integration of (a new client, before
    its first import)."""
    used = {j.account for j in inv.jobs}
    return [name for name in inv.accounts if name not in used]
