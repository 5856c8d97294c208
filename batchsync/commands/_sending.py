"""What is checked before anything is sent: where each account's credentials go (never
in clear across a network) and, with ``--require-all-credentials``, whether each OAuth2
account's token endpoint accepts its client. Used by ``plan``, ``apply`` and ``health``.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchsync import eventloop
from batchsync.model import Account, Inventory, Job, OAuth2Credentials
from batchsync.urls import in_clear
from batchsync.usage import UsageError


def account_urls(account: Account, base_url: str | None) -> list[str]:
    """Every URL a run sends the account's credentials to: the API, its token endpoint."""
    if base_url is not None:  # --base-url, --sandbox: everything goes there
        return [base_url]
    creds = account.credentials
    return [account.base_url, *([creds.token_url] if isinstance(creds, OAuth2Credentials) else [])]


def check_transport(
    inv: Inventory, jobs: Sequence[Job], base_url: str | None, *, sandbox: bool, insecure: bool
) -> None:
    """Credentials never cross the network in clear: ``http://`` only to loopback, unless
    --allow-insecure-http (``insecure``). Checked before anything is sent (plan included)."""
    if sandbox or insecure:
        return
    # An account whose credentials could not be resolved sends nothing (and is no longer
    # among inv.accounts): nothing of it to check.
    for name in sorted({j.account for j in jobs if j.account in inv.accounts}):
        for url in account_urls(inv.accounts[name], base_url):
            why = in_clear(name, url)
            if why is not None:
                raise UsageError(why)


def token_refusals(
    inv: Inventory, jobs: Sequence[Job], base_url: str | None, concurrency: int, timeout: float
) -> list[str]:
    """With --require-all-credentials, each OAuth2 account's token asked for before anything
    is sent to the API: why each account whose token endpoint refuses its client was
    refused (all or nothing, as for a reference that cannot be resolved). An endpoint that
    cannot be reached is the run's to meet and retry, not a refusal."""
    oauth2 = sorted({j.account for j in jobs if isinstance(inv.accounts[j.account].credentials, OAuth2Credentials)})
    if not oauth2:
        return []
    from batchsync.sendcloud.errors import ApiError, AuthError
    from batchsync.sendcloud.transport import HttpApi

    async def ask() -> list[str]:
        urls = [url for name in oauth2 for url in account_urls(inv.accounts[name], base_url)]
        refused: list[str] = []
        async with HttpApi(concurrency=concurrency, timeout=timeout, base_url=base_url, urls=urls) as api:
            for name in oauth2:
                try:
                    await api.account(inv.accounts[name]).authenticate()
                except AuthError as exc:
                    refused.append(f"a token endpoint refused its client: {exc}")
                except ApiError:  # unreachable, a timeout: the run meets it (and retries) as before
                    pass
        return refused

    return eventloop.run(ask)
