"""The inventory's accounts section: each account checked and made ready (credentials
resolved, limits merged, tags), or a problem; and the tags they pass to their integrations.

A part of the loader (:mod:`batchsync.inventory.loader`), whose ``_Loader`` takes these
methods in; apart only to keep each module readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgspec

from batchsync.inventory.documents import key_part
from batchsync.inventory.problems import kind_name, name_problem
from batchsync.inventory.spec import AUTH_SCHEMES, OAUTH2_ONLY, AccountSpec, DefaultsSpec, NotifySpec
from batchsync.model import (
    PRODUCTION_URL,
    SECRET_FIELDS,
    TOKEN_URL,
    Account,
    BasicCredentials,
    InventoryProblem,
    Job,
    Limits,
    NotifyRoute,
    OAuth2Credentials,
)
from batchsync.secrets import Secret, check_reference
from batchsync.text import control_in, display
from batchsync.wire import Loc

if TYPE_CHECKING:
    from collections.abc import Sequence


class AccountsPart:
    """The accounts' half of the loader (mixed into ``_Loader``, which holds the state)."""

    isolate: bool
    token_url_derived: bool = False
    unresolved: dict[str, str]
    account_tags: dict[str, tuple[str, ...]]
    problems: list[InventoryProblem]
    no_accounts: bool

    def notify_routes(
        self, raw: Any, accounts: Mapping[str, Account] | None = None, jobs: Sequence[Job] = ()
    ) -> list[NotifyRoute]:
        """The ``[[notify]]`` routes: each url a reference (an inventory is committed to
        git: a literal webhook URL, a credential, is refused), tags and accounts patterns.
        A pattern that matches no declared account, or no tag of an integration or of its
        account, is a warning: a typo would send that client an all-clear every night."""
        names = set(accounts or ())
        tags = {tag for job in jobs for tag in job.tags} | {t for ts in self.account_tags.values() for t in ts}
        routes: list[NotifyRoute] = []
        if raw is None:
            return routes
        if not isinstance(raw, list):
            self.problem(("notify",), "must be a list of routes ([[notify]] in TOML)")
            return routes
        for i, entry in enumerate(raw):
            loc: Loc = ("notify", i)
            url = entry.get("url") if isinstance(entry, dict) else None
            if isinstance(url, str) and (why := check_reference(url)) is not None:
                self.problem((*loc, "url"), f"{why} (a webhook URL is a credential: never written in the inventory)")
                continue
            spec: NotifySpec | None = self.convert(entry, NotifySpec, loc)
            if spec is None:
                continue
            ok = self.check_tags(spec.tags, (*loc, "tags"), None)
            ok = self.check_tags(spec.accounts, (*loc, "accounts"), None) and ok
            if ok:
                routes.append(NotifyRoute(spec.url, spec.tags, spec.accounts, spec.on, spec.format))
                for field, patterns, known in (("accounts", spec.accounts, names), ("tags", spec.tags, tags)):
                    what = "declared account" if field == "accounts" else "tag of an integration or its account"
                    for k, pattern in enumerate(patterns):
                        if not any(fnmatchcase(name, pattern) for name in known):
                            self.warning((*loc, field, k), f"{display(pattern)} matches no {what}: it reports nothing")
        return routes

    if TYPE_CHECKING:

        def problem(
            self, loc: Loc, message: str, integration_id: int | None = None, file: str | None = None
        ) -> None: ...
        def convert(self, raw: Any, kind: type[Any], loc: Loc, integration_id: int | None = None) -> Any: ...
        def secret(self, ref: str, loc: Loc) -> Secret | None: ...
        def check_url(self, url: str, loc: Loc, who: str, api: bool = True) -> bool: ...
        def check_tags(self, tags: Sequence[str], loc: Loc, integration_id: int | None) -> bool: ...
        def warning(self, loc: Loc, message: str, integration_id: int | None = None) -> None: ...

    def accounts(self, raw: Any, defaults: DefaultsSpec, base_limits: Limits) -> tuple[dict[str, Account], set[str]]:
        accounts: dict[str, Account] = {}
        broken: set[str] = set()
        if raw is None:
            self.problem(("accounts",), "missing: declare at least one account")
            self.no_accounts = True
            return accounts, broken
        if not isinstance(raw, dict):
            self.problem(("accounts",), "must be a mapping of account name to account")
            self.no_accounts = True
            return accounts, broken
        for name, raw_account in raw.items():
            loc: Loc = ("accounts", key_part(name))
            named = isinstance(name, str) and bool(name)
            if not named:
                what = "empty" if isinstance(name, str) else f"{kind_name(name)}: quote it"
                self.problem(loc, f"an account name must be text, not {what}")
            elif (char := control_in(name)) is not None:
                self.problem(loc, name_problem("the account name", char))
                named = False
            account = self.account(str(name), raw_account, loc, defaults, base_limits)
            if account is None or not named:
                broken.add(str(name))
            else:
                accounts[name] = account
        if not raw:
            self.problem(("accounts",), "is empty: declare at least one account")
        # Sendcloud's limits are per account: the same account declared twice would get
        # two budgets here and be throttled there.
        owner: dict[Secret, str] = {}
        for name, account in accounts.items():
            first = owner.setdefault(account.identity, name)
            if first != name:
                basic = isinstance(account.credentials, BasicCredentials)
                field, what = ("public_key", "public key") if basic else ("client_id", "client id")
                self.problem(
                    ("accounts", name, field),
                    f"the same {what} as account {first!r}: declare each Sendcloud account once, "
                    "its integrations share one rate limit",
                )
        return accounts, broken

    def account(self, name: str, raw: Any, loc: Loc, defaults: DefaultsSpec, base_limits: Limits) -> Account | None:
        if not isinstance(raw, dict):
            self.convert(raw, AccountSpec, loc)
            return None
        ok = True
        refs: dict[str, str] = {}
        checked = dict(raw)
        # References are checked before the types, so that a literal secret, whatever
        # its type, is never quoted back in a message.
        for field in SECRET_FIELDS:
            if field not in raw:
                continue
            value = raw[field]
            why = (
                check_reference(value)
                if isinstance(value, str)
                else "must be a reference string, env:NAME or file:PATH"
            )
            if why is None:
                refs[field] = value
            else:
                self.problem((*loc, field), why)
                checked[field] = "env:_"  # a valid stand-in, to keep checking the rest
                ok = False
        spec: AccountSpec | None = self.convert(checked, AccountSpec, loc)
        if spec is None:
            ok = False
        auth = spec.auth if spec is not None else raw.get("auth", "basic")
        needed: tuple[str, ...] = AUTH_SCHEMES.get(auth, ()) if isinstance(auth, str) else ()
        if needed:
            other = "oauth2" if auth == "basic" else "basic"
            foreign = OAUTH2_ONLY if auth == "basic" else AUTH_SCHEMES["basic"]
            for field in needed:
                if field not in raw:
                    scheme = f" (auth = {auth!r})" if auth != "basic" else ""
                    self.problem((*loc, field), f"Object missing required field `{field}`{scheme}")
                    ok = False
            for field in foreign:
                if field in raw:
                    self.problem(
                        (*loc, field),
                        f"{field} belongs to auth = {other!r}; this account uses auth = {auth!r} "
                        f"({' and '.join(needed)}): remove one scheme's keys",
                    )
                    ok = False
        # Every well-formed reference of the account's scheme is resolved, even when a
        # sibling field is wrong: one run of validate names all of it.
        secrets: dict[str, Secret] = {}
        before, unresolved = len(self.problems), []
        for field, ref in refs.items():
            if needed and field not in needed:
                continue
            value = self.secret(ref, (*loc, field))
            if value is None:
                why = self.problems[-1].message.split(": ", 1)[-1]
                if "outside the inventory's folder" in why:
                    ok = False  # not a missing credential: a file the inventory may not read, its problem
                else:
                    unresolved.append(f"cannot resolve {ref}: {why}")
            else:
                secrets[field] = value
        resolved_problems = self.problems[before:]
        if spec is not None and spec.tags:
            ok = self.check_tags(spec.tags, (*loc, "tags"), None) and ok
        if spec is not None:
            ok = self.check_token_url(name, spec, defaults, loc) and ok
            if spec.base_url is not None and not self.check_url(spec.base_url, (*loc, "base_url"), f"account {name!r}"):
                ok = False
            if spec.token_url is not None and not self.check_url(
                spec.token_url, (*loc, "token_url"), f"account {name!r}'s token request", api=False
            ):
                ok = False
        if ok and spec is not None and self.isolate and unresolved:
            # Only the credentials are missing: that account alone fails at run time.
            del self.problems[before : before + len(resolved_problems)]
            self.unresolved[name] = f"account {name!r}: " + "; ".join(unresolved)
            self.account_tags[name] = tuple(spec.tags or ())
            return None
        if unresolved:
            ok = False
        if not ok or spec is None:
            return None
        if spec.tags:
            self.account_tags[name] = tuple(spec.tags)
        credentials: BasicCredentials | OAuth2Credentials
        if spec.auth == "basic":
            credentials = BasicCredentials(secrets["public_key"], secrets["secret_key"])
        else:
            credentials = OAuth2Credentials(
                secrets["client_id"], secrets["client_secret"], spec.token_url or TOKEN_URL, spec.scope or "api"
            )
        limits = spec.limits.over(base_limits) if spec.limits else base_limits
        return Account(
            name,
            credentials,
            (spec.base_url or defaults.base_url).rstrip("/"),
            limits,
            tuple(spec.tags or ()),
            frozenset(spec.ignore_integrations or ()),
        )

    def check_token_url(self, name: str, spec: AccountSpec, defaults: DefaultsSpec, loc: Loc) -> bool:
        """An OAuth2 account off Sendcloud's production API names its token endpoint: the
        default one is production's, and its client secret must not go there."""
        base = (spec.base_url or defaults.base_url).rstrip("/")
        if self.token_url_derived or spec.auth != "oauth2" or spec.token_url is not None or base == PRODUCTION_URL:
            return True
        where = "its base_url" if spec.base_url is not None else "defaults.base_url"
        self.problem(
            (*loc, "token_url"),
            f"account {name!r} is OAuth2 with {where} {base} (not Sendcloud's production API), but names no "
            f"token_url: its client secret would be sent to production's {TOKEN_URL}; set token_url to the "
            "token endpoint of that server",
        )
        return False


def with_account_tags(jobs: list[Job], account_tags: dict[str, tuple[str, ...]]) -> list[Job]:
    """Each job with its account's tags first, then its own (each once); one tuple per
    distinct pair, shared by the jobs that have it."""
    merged: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
    out: list[Job] = []
    for job in jobs:
        inherited = account_tags.get(job.account)
        if not inherited:
            out.append(job)
            continue
        key = (inherited, job.tags)
        tags = merged.get(key)
        if tags is None:
            tags = merged[key] = tuple(dict.fromkeys((*inherited, *job.tags)))
        out.append(msgspec.structs.replace(job, tags=tags))
    return out
