"""``--limit``: which integrations of an inventory a run takes, by id, account or tag."""

from __future__ import annotations

from collections.abc import Sequence

from batchsync.model import Job


def select(jobs: Sequence[Job], selectors: Sequence[str]) -> tuple[list[Job], list[str]]:
    """Jobs matching any selector (an integration id, an account name or a tag), and the
    selector terms that matched no job at all (a typo, most likely).

    Like Ansible's ``--limit``: ``acme``, ``1234``, ``tag:eu`` or ``eu``; several
    selectors (repeated or comma-separated) add up. ``!X`` excludes. An empty term is a
    ValueError: ``--limit '!'`` must not quietly mean everything.
    """
    if not selectors:
        return list(jobs), []
    include: list[str] = []
    exclude: list[str] = []
    for sel in selectors:
        for part in sel.split(","):
            part = part.strip()
            term = part.removeprefix("!").strip()
            if not term or term in ("tag:", "account:"):
                raise ValueError(f"empty selector in {sel!r}")
            (exclude if part.startswith("!") else include).append(term)

    def matches(job: Job, term: str) -> bool:
        if term.startswith("tag:"):
            return term[4:] in job.tags
        if term.startswith("account:"):
            return job.account == term[8:]
        if term.isascii() and term.isdigit():
            return job.integration_id == int(term)
        return job.account == term or term in job.tags

    unmatched = [t for t in dict.fromkeys(include + exclude) if not any(matches(j, t) for j in jobs)]
    chosen = [
        j
        for j in jobs
        if (not include or any(matches(j, t) for t in include)) and not any(matches(j, t) for t in exclude)
    ]
    return chosen, unmatched
