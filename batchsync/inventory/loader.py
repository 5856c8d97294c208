"""The inventory: loading, validation and expansion of one file into the model.

:func:`load` reads one inventory file and returns every problem it finds (never just
the first), each naming the file, the integration and the path inside the file; when
there are none, it also returns one immutable :class:`Job` per integration. A status
set shared by many integrations becomes one :class:`Desired` (and one
:class:`DesiredMapping`), shared by their jobs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from batchsync import files
from batchsync.files import FileProblem
from batchsync.inventory import documents
from batchsync.inventory.accounts import AccountsPart, with_account_tags
from batchsync.inventory.documents import fast_json, key_part
from batchsync.inventory.problems import (
    convert_strict,
    every_problem,
    guess_id,
    kind_name,
    limit_problem,
    name_problem,
    nearest,
    suggest,
)
from batchsync.inventory.spec import (
    TOP_KEYS,
    UNKNOWN,
    DefaultsSpec,
    HistorySpec,
    IntegrationSpec,
    JsonIntegrationSpec,
    MappingSpec,
    StatusesFileBody,
    StatusesFileGet,
    StatusSetSpec,
    is_given,
    mapping_categories,
    merge_statuses,
)
from batchsync.model import (
    Account,
    Desired,
    DesiredMapping,
    Inventory,
    InventoryProblem,
    Job,
    Limits,
    pack,
    unpack,
)
from batchsync.secrets import Secret, SecretError, check_reference, resolve
from batchsync.text import control_in, escape_controls
from batchsync.urls import history_url_problem, insecure_http, sqlite_path, url_problem
from batchsync.wire import (
    STATUS_CATEGORIES,
    Loc,
    Status,
    Statuses,
    check_statuses,
    to_jsonpath,
)


def sqlite_literal(url: str) -> str | None:
    """``url`` stripped when it names a SQLite file as it is (``sqlite:///PATH`` or a plain
    path), which an inventory may hold literally; None for a reference and for anything that
    may hold a credential (a ``postgresql://`` URL, a libpq ``password=`` string)."""
    text = url.strip()
    low = text.lower()
    # "@" or "password": a credential, however it is spelled (postgresql:/user:pw@host is
    # no URL batchsync reads, and taken as a path it would put the password on disk).
    if not text or low.startswith(("env:", "file:")) or "password" in low or "@" in text:
        return None
    if low.startswith("sqlite:") or _SCHEME.match(low) is None:
        return text
    return None


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")  # postgresql:, mysql:, https: (a path has none)


class _Set(msgspec.Struct, frozen=True):
    """A status set after its own checks: what its integrations start from."""

    name: str
    statuses: Statuses
    desired: Desired
    mapping: dict[str, str | None] | None  # every category; None: the set declares no mapping
    unknown: frozenset[str]  # categories given wrong (reported): not checked again per integration
    desired_mapping: DesiredMapping | None  # None: no mapping, or the set's own is wrong


class _Loader(AccountsPart):
    def __init__(
        self, path: Path, environ: dict[str, str] | None, max_file_size: int, isolate_credentials: bool = False
    ) -> None:
        self.path = path
        self.isolate = isolate_credentials
        self.unresolved: dict[str, str] = {}  # account -> why its credentials cannot be resolved
        self.account_tags: dict[str, tuple[str, ...]] = {}
        self.name = escape_controls(str(path))
        self.base_dir = path.parent
        self.environ = environ
        self.max_file_size = max_file_size
        self.problems: list[InventoryProblem] = []
        self.warnings: list[InventoryProblem] = []
        self.confine: Path | None = self.base_dir  # where file: secrets must stay
        self._files: dict[Path, tuple[Statuses | None, int | None]] = {}
        self.referenced: list[str] = []  # file: secrets
        self._interned: dict[bytes, Desired] = {}
        self._values: dict[object, object] = {}  # see same()
        self._mappings: dict[tuple[tuple[str, str | None], ...], DesiredMapping] = {}
        self.no_accounts = False  # the accounts section is missing or not a mapping
        self.no_sets = False  # likewise status_sets
        self.good_tags: set[str] = set()  # tags found to obey the rule of names

    def problem(self, loc: Loc, message: str, integration_id: int | None = None, file: str | None = None) -> None:
        path = escape_controls(to_jsonpath(loc))
        self.problems.append(InventoryProblem(file or self.name, integration_id, path, escape_controls(message)))

    def warning(self, loc: Loc, message: str, integration_id: int | None = None) -> None:
        self.warnings.append(InventoryProblem(self.name, integration_id, escape_controls(to_jsonpath(loc)), message))

    def convert(self, raw: Any, kind: type[Any], loc: Loc, integration_id: int | None = None) -> Any:
        try:
            return convert_strict(raw, kind)
        except msgspec.ValidationError:
            for inner, message in every_problem(raw, kind):
                self.problem((*loc, *inner), message, integration_id)
            return None

    def partial(self, raw: Any, kind: type[Any]) -> tuple[dict[str, Any], set[str]]:
        """The fields of a mapping that failed to convert as a whole which convert on
        their own, and the names of those that do not (their problems are already
        reported): what is left to check references with."""
        good: dict[str, Any] = {}
        bad: set[str] = set()
        if not isinstance(raw, dict):
            return good, {f.name for f in msgspec.structs.fields(kind)}
        fields = msgspec.structs.fields(kind)
        if any(key not in {f.encode_name for f in fields} for key in raw):
            bad.add(UNKNOWN)
        for f in fields:
            if f.encode_name not in raw:
                if f.required:
                    bad.add(f.name)
                continue
            try:
                good[f.name] = convert_strict(raw[f.encode_name], f.type)
            except msgspec.ValidationError:
                bad.add(f.name)
        return good, bad

    def check(self, statuses: Statuses, loc: Loc, integration_id: int | None, file: str | None = None) -> bool:
        found = check_statuses(statuses, loc)
        for p in found:
            self.problem(p.loc, p.message, integration_id, file)
        return not found

    def same(self, value: Any) -> Any:
        """The first value equal to ``value`` this load has seen: an account name or a
        tuple of tags that 100,000 integrations repeat is then held once, not once each."""
        return self._values.setdefault(value, value)

    def desired(self, statuses: Statuses, packed: bytes | None = None) -> Desired:
        # Interned by the list's compact form (equal lists, equal bytes), not by the structs:
        # a key would keep them alive, and the compact form is what the run holds.
        # ``packed``: pack(statuses), when the caller has it.
        if packed is None:
            packed = pack(statuses)
        found = self._interned.get(packed)
        if found is None:
            found = self._interned[packed] = Desired(statuses, packed=packed)
        else:
            found.shared = True
        return found

    def desired_mapping(self, mapping: dict[str, str | None]) -> DesiredMapping:
        items = tuple((c, mapping.get(c)) for c in STATUS_CATEGORIES)
        found = self._mappings.get(items)
        if found is None:
            found = self._mappings[items] = DesiredMapping(items)
        return found

    # -- files ------------------------------------------------------------------------

    def read_inventory(self) -> tuple[Any, list[documents.KeyProblem]]:
        if self.path.suffix.lower() not in documents.SUFFIXES and os.path.isdir(self.path):
            raise FileProblem("is a directory, not a file")
        suffix = documents.check_suffix(self.path)
        hint = " (--max-file-size raises it)"
        data = files.read_regular(self.path, self.max_file_size, hint)
        if suffix == ".json":
            fast = fast_json(data)
            if fast is not None:
                return fast, []
        return documents.parse(suffix, data)

    def key_problems(
        self, found: list[documents.KeyProblem], raw: Any, file: str | None = None, iid: int | None = None
    ) -> None:
        for loc, message in found:
            which = iid
            if file is None and len(loc) > 1 and loc[0] == "integrations" and isinstance(loc[1], int):
                entries = raw.get("integrations") if isinstance(raw, dict) else None
                if isinstance(entries, list) and loc[1] < len(entries):
                    which = guess_id(entries[loc[1]])
            self.problem(loc, message, which, file)

    def statuses_file(self, ref: str, loc: Loc, integration_id: int | None) -> tuple[Statuses | None, int | None]:
        """(statuses, the file's integration_id) or (None, None) after reporting why not."""
        target = files.user_path(ref, self.base_dir)
        cached = self._files.get(target)
        if cached is not None:
            if cached[0] is None:
                # The file's own problems were reported for its first user; every other
                # user is named too, or it would silently drop out of the run.
                why = f"statuses_file {ref}: is not usable (see the problems reported for it)"
                self.problem(loc, why, integration_id)
            return cached
        result: tuple[Statuses | None, int | None] = (None, None)
        self._files[target] = result
        try:
            suffix = documents.check_suffix(target)
            raw, dups = documents.parse(suffix, files.read_regular(target, files.STATUSES_FILE_LIMIT))
        except FileProblem as exc:
            self.problem(loc, f"statuses_file {ref}: {exc.message}", integration_id)
            return result
        file = escape_controls(str(target))
        self.key_problems(dups, raw, file, integration_id)
        kind: type[Any]
        if isinstance(raw, list):
            kind = Statuses
        elif isinstance(raw, dict) and "data" in raw:
            kind = StatusesFileGet
        else:
            kind = StatusesFileBody
        try:
            value = convert_strict(raw, kind)
        except msgspec.ValidationError:
            for inner, message in every_problem(raw, kind):
                self.problem(inner, message, integration_id, file)
            return result
        positions: list[int] | None = None
        inner_loc: Loc
        if isinstance(value, StatusesFileGet):
            kept = [(i, s) for i, s in enumerate(value.data) if s.deleted_at is None]
            positions = [i for i, _ in kept]
            statuses, file_id, inner_loc = (
                tuple(Status(s.external_id, s.translations) for _, s in kept),
                None,
                ("data",),
            )
        elif isinstance(value, StatusesFileBody):
            statuses, file_id, inner_loc = value.statuses, value.integration_id, ("statuses",)
        else:
            statuses, file_id, inner_loc = value, None, ()
        found = check_statuses(statuses, inner_loc, positions)
        for p in found:
            self.problem(p.loc, p.message, integration_id, file)
        if not found and not dups:
            result = (statuses, file_id)
            self._files[target] = result
        return result

    def secret(self, ref: str, loc: Loc) -> Secret | None:
        bad = check_reference(ref)
        if bad is not None:  # a literal value: named by where it is, never quoted
            self.problem(loc, bad)
            return None
        if ref.startswith("file:"):
            self.referenced.append(str(files.user_path(ref[5:], self.base_dir)))
        try:
            return resolve(ref, self.base_dir, self.environ, confine=self.confine)
        except SecretError as exc:
            self.problem(loc, f"cannot resolve {ref}: {exc}")
            return None

    # -- the document -----------------------------------------------------------------

    def load(self) -> Inventory:
        try:
            raw, dups = self.read_inventory()
        except FileProblem as exc:
            self.problem((), exc.message)
            return Inventory(self.name, {}, [], self.problems)
        if not isinstance(raw, dict):
            self.problem((), f"an inventory is a mapping with keys {', '.join(TOP_KEYS[:4])}, not {type(raw).__name__}")
            return Inventory(self.name, {}, [], self.problems)
        self.key_problems(dups, raw)
        for key in raw:
            if key not in TOP_KEYS:
                hint = suggest(str(key), TOP_KEYS).replace("`", "")
                self.problem((key_part(key),), f"unknown key {key!r}: expected one of {', '.join(TOP_KEYS)}{hint}")
        outside = raw.get("allow_secret_files_outside", False)
        if not isinstance(outside, bool):
            self.problem(("allow_secret_files_outside",), f"must be true or false, not {kind_name(outside)}")
        elif outside:
            self.confine = None

        defaults = self.convert(raw.get("defaults", {}), DefaultsSpec, ("defaults",)) or DefaultsSpec()
        raw_defaults = raw.get("defaults")
        if isinstance(raw_defaults, dict) and "base_url" in raw_defaults:
            self.check_url(defaults.base_url, ("defaults", "base_url"), "every account without its own base_url")
        base_limits = defaults.limits.over(Limits())
        accounts, broken_accounts = self.accounts(raw.get("accounts"), defaults, base_limits)
        sets, broken_sets = self.status_sets(raw.get("status_sets", {}))
        jobs = self.integrations(raw.get("integrations"), accounts, broken_accounts, sets, broken_sets)
        routes = self.notify_routes(raw.get("notify"), accounts, jobs)
        entries = raw.get("integrations")
        declared = len(entries) if isinstance(entries, list) else 0
        history = self.history(raw.get("history"))
        if self.problems:
            jobs = []
        files = tuple(dict.fromkeys([*map(str, self._files), *self.referenced]))
        secret_files = tuple(dict.fromkeys(self.referenced))
        if self.account_tags:
            jobs = with_account_tags(jobs, self.account_tags)
        return Inventory(
            self.name,
            accounts,
            jobs,
            self.problems,
            declared,
            self.warnings,
            files,
            secret_files,
            self.unresolved,
            self.account_tags,
            routes,
            history,
        )

    def history(self, raw: Any) -> Secret | None:
        """``[history] url``: a reference (a DSN is a credential), resolved like one; or a
        SQLite file as it is (a path holds no credential), relative to the inventory."""
        spec = self.convert(raw, HistorySpec, ("history",)) if raw is not None else None
        if spec is None:
            return None
        sqlite = sqlite_literal(spec.url)
        if sqlite is not None:
            if (why := history_url_problem(sqlite)) is not None:
                self.problem(("history", "url"), why)
                return None
            written = sqlite_path(sqlite)
            assert written is not None  # sqlite_literal took no PostgreSQL URL
            return Secret(str(files.user_path(written, self.base_dir)), "[history] url")
        found = self.secret(spec.url, ("history", "url"))
        if found is not None and (why := history_url_problem(found.reveal())) is not None:
            # what it holds is a URL batchsync can use (mysql:// is none)
            self.problem(("history", "url"), f"{found.source} holds no history URL batchsync can use: {why}")
        return found

    def check_tags(self, tags: Sequence[str], loc: Loc, integration_id: int | None) -> bool:
        """Whether every tag obeys the rule of names (batchsync.text); each that does
        not is a problem. A fleet repeats a few tags: each is looked at once."""
        ok = True
        for k, tag in enumerate(tags):
            if tag in self.good_tags:
                continue
            char = control_in(tag)
            why = name_problem("the tag", char) if char is not None else limit_problem(tag)
            if why is None:
                self.good_tags.add(tag)
            else:
                self.problem((*loc, k), why, integration_id)
                ok = False
        return ok

    def check_url(self, url: str, loc: Loc, who: str, api: bool = True) -> bool:
        why = url_problem(url, api=api)
        if why is not None:
            self.problem(loc, why)
            return False
        if insecure_http(url):
            self.warning(
                loc,
                f"http:// to a host that is not loopback: {who} would send its credentials unencrypted "
                "(plan and apply refuse it without --allow-insecure-http)",
            )
        return True

    # -- status sets ------------------------------------------------------------------

    def status_sets(self, raw: Any) -> tuple[dict[str, _Set], set[str]]:
        """Every set whose statuses can be used (to check its integrations with), and the
        names of those with a problem (reported here, once: their integrations get no job
        but are not blamed for the set)."""
        sets: dict[str, _Set] = {}
        broken: set[str] = set()
        if not isinstance(raw, dict):
            self.problem(("status_sets",), "must be a mapping of set name to {statuses} or {statuses_file}")
            self.no_sets = True
            return sets, broken
        for name, raw_set in raw.items():
            loc: Loc = ("status_sets", key_part(name))
            named = isinstance(name, str) and bool(name)
            if not named:
                what = "empty" if isinstance(name, str) else f"{kind_name(name)}: quote it"
                self.problem(loc, f"a status set name must be text, not {what}")
            elif (char := control_in(name)) is not None:
                self.problem(loc, name_problem("the status set name", char))
            spec: StatusSetSpec | None = self.convert(raw_set, StatusSetSpec, loc)
            bad: set[str] = set()
            if spec is None:
                if not isinstance(raw_set, dict):  # reported: nothing inside to check
                    broken.add(str(name))
                    continue
                good, bad = self.partial(raw_set, StatusSetSpec)
                spec = StatusSetSpec(**good)
            statuses = self.pick_statuses(spec, bad, loc, None)
            raw_mapping = raw_set.get("mapping") if "mapping" in bad else spec.mapping
            mapping: dict[str, str | None] | None = None
            unknown: frozenset[str] = frozenset()
            if raw_mapping is not None:
                mapping, unknown = self.set_mapping(raw_mapping, statuses, loc, str(name))
            usable = statuses is not None and named
            if not usable or bad or unknown:
                broken.add(str(name))
            if usable:
                assert statuses is not None
                whole = mapping is not None and not unknown
                desired = self.desired(statuses)
                desired.shared = True  # a set is there to be shared: its index is built once
                sets[name] = _Set(
                    name,
                    statuses,
                    desired,
                    mapping,
                    unknown,
                    self.desired_mapping(mapping) if whole and mapping is not None else None,
                )
        return sets, broken

    def set_mapping(
        self, raw: Any, statuses: Statuses | None, loc: Loc, name: str
    ) -> tuple[dict[str, str | None], frozenset[str]]:
        """A set's mapping, every category (None: not mapped), and the categories that
        are wrong (reported, here or by the convert before): not to be checked again."""
        given, wrong = mapping_categories(raw)
        if statuses is not None:
            have = {s.external_id for s in statuses}
            for category, external_id in given.items():
                if external_id is not None and external_id not in have:
                    self.problem(
                        (*loc, "mapping", category),
                        f"mapping {category} -> {external_id!r}, but status set {name!r} has no external_id "
                        f"{external_id!r}{nearest(external_id, have)}",
                    )
                    wrong.add(category)
        return {c: given.get(c) for c in STATUS_CATEGORIES}, frozenset(wrong)

    def pick_statuses(
        self, spec: StatusSetSpec | IntegrationSpec, bad: set[str], loc: Loc, integration_id: int | None
    ) -> Statuses | None:
        """The statuses a set or an integration declares inline or by file (None when
        there are none to use, after reporting why). A status_set is the caller's."""
        keys: tuple[str, ...] = ("statuses", "statuses_file")
        if isinstance(spec, IntegrationSpec):
            keys = ("status_set", *keys)
        given = [k for k in keys if k in bad or is_given(getattr(spec, k))]
        # None given next to an unknown key: that key is the typo that says it all.
        if len(given) != 1 and (given or UNKNOWN not in bad):
            choices = ", ".join(keys[:-1]) + " or " + keys[-1]
            what = "none" if not given else " and ".join(given)
            self.problem(loc, f"give exactly one of {choices} (got {what})", integration_id)
        statuses: Statuses | None = None
        if is_given(spec.statuses) and "statuses" not in bad:
            assert isinstance(spec.statuses, tuple)
            if self.check(spec.statuses, (*loc, "statuses"), integration_id):
                statuses = spec.statuses
        if is_given(spec.statuses_file) and "statuses_file" not in bad:
            assert isinstance(spec.statuses_file, str)
            from_file, file_id = self.statuses_file(spec.statuses_file, (*loc, "statuses_file"), integration_id)
            if from_file is not None and integration_id is not None and file_id not in (None, integration_id):
                self.problem(
                    (*loc, "statuses_file"),
                    f"{spec.statuses_file} is a POST body for integration {file_id}, not {integration_id}",
                    integration_id,
                )
                from_file = None
            statuses = from_file
        return statuses if len(given) == 1 else None

    # -- integrations -----------------------------------------------------------------

    def integrations(
        self,
        raw: Any,
        accounts: dict[str, Account],
        broken_accounts: set[str],
        sets: dict[str, _Set],
        broken_sets: set[str],
    ) -> list[Job]:
        jobs: list[Job] = []
        if raw is None:
            self.problem(("integrations",), "missing: list the integrations to manage")
            return jobs
        if not isinstance(raw, list):
            self.problem(("integrations",), "must be a list of integrations")
            return jobs
        good_sets = {name: s for name, s in sets.items() if name not in broken_sets}
        first_seen: dict[int, int] = {}
        seen = first_seen.setdefault
        no_bad: set[str] = set()
        for i, raw_integration in enumerate(raw):
            spec: IntegrationSpec
            bad = no_bad
            raw_mapping: Any = None
            if type(raw_integration) is JsonIntegrationSpec:  # decoded by fast_json
                spec = raw_integration
                # The common case, a set used as it is: nothing more to check or build.
                found = good_sets.get(spec.status_set)  # type: ignore[arg-type]
                if (
                    found is not None
                    and spec.statuses is UNSET
                    and spec.statuses_file is UNSET
                    and spec.override_statuses is UNSET
                    and spec.remove_statuses is UNSET
                    and spec.mapping is UNSET
                    and printable_shop(spec)
                    and spec.account in accounts
                    and seen(spec.id, i) == i
                ):
                    tags = spec.tags or ()
                    if tags:
                        self.check_tags(tags, ("integrations", i, "tags"), spec.id)
                    account, tags = self.same(spec.account), self.same(tags)
                    name = spec.name if spec.name is not UNSET else None
                    jobs.append(Job(spec.id, account, found.desired, tags, found.name, found.desired_mapping, name))
                    continue
                # The next most common: statuses inline, nothing else.
                compact: Any = spec.statuses  # fast_json's pack() of them (bytes), checked by type
                if (
                    type(compact) is bytes
                    and spec.status_set is UNSET
                    and spec.statuses_file is UNSET
                    and spec.override_statuses is UNSET
                    and spec.remove_statuses is UNSET
                    and spec.mapping is UNSET
                    and printable_shop(spec)
                    and spec.account in accounts
                    and seen(spec.id, i) == i
                ):
                    if spec.tags:
                        self.check_tags(spec.tags, ("integrations", i, "tags"), spec.id)
                    statuses = unpack(compact)
                    if self.check(statuses, ("integrations", i, "statuses"), spec.id):
                        account, tags = self.same(spec.account), self.same(spec.tags or ())
                        name = spec.name if spec.name is not UNSET else None
                        jobs.append(Job(spec.id, account, self.desired(statuses, compact), tags, name=name))
                    continue
                if type(compact) is bytes:  # the checks below want the structs
                    fields = msgspec.structs.asdict(spec)
                    spec = IntegrationSpec(**{**fields, "statuses": unpack(compact)})
            else:
                guessed = guess_id(raw_integration)
                converted = self.convert(raw_integration, IntegrationSpec, ("integrations", i), guessed)
                if converted is None:
                    if not isinstance(raw_integration, dict):
                        continue
                    good, bad = self.partial(raw_integration, IntegrationSpec)
                    good.setdefault("id", guessed if guessed is not None else 0)
                    good.setdefault("account", "")
                    converted = IntegrationSpec(**good)
                    if "mapping" in bad:
                        raw_mapping = raw_integration.get("mapping")
                spec = converted
            if raw_mapping is None and isinstance(spec.mapping, MappingSpec):
                raw_mapping = spec.mapping
            job = self.integration(i, spec, bad, raw_mapping, first_seen, accounts, broken_accounts, sets, broken_sets)
            if job is not None:
                jobs.append(job)
        self.declared_and_ignored(jobs, accounts)
        return jobs

    def declared_and_ignored(self, jobs: list[Job], accounts: dict[str, Account]) -> None:
        """A warning for each declared integration its account also lists in
        ``ignore_integrations``: it is managed (declared wins), which the list seems to deny."""
        ignored = {name: a.ignore_integrations for name, a in accounts.items() if a.ignore_integrations}
        if not ignored:
            return
        for job in jobs:
            listed = ignored.get(job.account)
            if listed is not None and job.integration_id in listed:
                self.warning(
                    ("accounts", job.account, "ignore_integrations"),
                    f"integration {job.integration_id} is declared in the inventory, so it is managed (its "
                    "statuses are written): ignore_integrations is for the account's integrations the "
                    "inventory does not declare; remove it from one of the two",
                    job.integration_id,
                )

    def integration(
        self,
        i: int,
        spec: IntegrationSpec,
        bad: set[str],
        raw_mapping: Any,
        first_seen: dict[int, int],
        accounts: dict[str, Account],
        broken_accounts: set[str],
        sets: dict[str, _Set],
        broken_sets: set[str],
    ) -> Job | None:
        """One integration's checks, all of them, whatever fails first; its job if none does.

        ``bad`` names the fields that failed their own conversion (reported already);
        every other field is checked as if they were right.
        """
        loc: Loc = ("integrations", i)
        iid: int | None = spec.id if "id" not in bad else (spec.id or None)
        ok = not bad
        if "tags" not in bad and isinstance(spec.tags, tuple) and spec.tags:
            ok = self.check_tags(spec.tags, (*loc, "tags"), iid) and ok
        if "name" not in bad and isinstance(spec.name, str) and (char := control_in(spec.name)) is not None:
            self.problem((*loc, "name"), name_problem("the name", char), iid)
            ok = False
        if "shop_url" not in bad and isinstance(spec.shop_url, str) and (char := control_in(spec.shop_url)) is not None:
            self.problem((*loc, "shop_url"), name_problem("the shop_url", char), iid)
            ok = False
        if "id" not in bad:
            before = first_seen.setdefault(spec.id, i)
            if before != i:
                self.problem(
                    (*loc, "id"), f"duplicate integration id {spec.id} (first at $.integrations[{before}])", iid
                )
                ok = False
        if "account" not in bad and spec.account not in accounts and spec.account not in self.unresolved:
            # Without a usable accounts section, the one problem reported for it says it all.
            if spec.account not in broken_accounts and not self.no_accounts:
                known = ", ".join(sorted(accounts) + sorted(broken_accounts)) or "none"
                near = nearest(spec.account, list(accounts))
                self.problem((*loc, "account"), f"unknown account {spec.account!r} (known: {known}){near}", iid)
            ok = False

        # The statuses it starts from: a set, inline or a file.
        the_set: _Set | None = None
        set_name = spec.status_set if isinstance(spec.status_set, str) and "status_set" not in bad else None
        if set_name is not None:
            the_set = sets.get(set_name)
            if set_name in broken_sets:
                ok = False  # reported with the set
            elif the_set is None and not self.no_sets:
                known = ", ".join(sorted(sets) + sorted(broken_sets)) or "none"
                near = nearest(set_name, list(sets))
                self.problem((*loc, "status_set"), f"unknown status set {set_name!r} (known: {known}){near}", iid)
        picked = self.pick_statuses(spec, bad, loc, iid)
        only_set = set_name is not None and not ({"statuses", "statuses_file"} & bad)
        only_set = only_set and not is_given(spec.statuses) and not is_given(spec.statuses_file)
        base = (the_set.statuses if the_set is not None and only_set else None) if set_name is not None else picked
        if base is None:
            ok = False
            the_set = None

        # One shop's changes, then the mapping, checked against what they leave.
        overrides: Statuses = ()
        if "override_statuses" not in bad and spec.override_statuses:
            assert isinstance(spec.override_statuses, tuple)
            if self.check(spec.override_statuses, (*loc, "override_statuses"), iid):
                overrides = spec.override_statuses
            else:
                ok = False
        removals: tuple[str, ...] = ()
        if "remove_statuses" not in bad and spec.remove_statuses:
            assert isinstance(spec.remove_statuses, tuple)
            removals = spec.remove_statuses
            if base is not None:
                have = {s.external_id for s in base}
                for k, x in enumerate(removals):
                    if x not in have:
                        self.problem(
                            (*loc, "remove_statuses", k),
                            f"external_id {x!r} is not in the statuses it would remove from{nearest(x, have)}",
                            iid,
                        )
                        ok = False
        statuses = base
        if base is not None and (overrides or removals):
            statuses = merge_statuses(base, overrides, removals)
        mapping = self.integration_mapping(spec, raw_mapping, the_set, statuses, removals, loc, iid)
        if not ok or statuses is None or isinstance(mapping, UnsetType):
            return None
        desired = the_set.desired if the_set is not None and statuses is the_set.statuses else self.desired(statuses)
        tags = spec.tags or ()
        assert isinstance(tags, tuple)
        name = spec.name if isinstance(spec.name, str) else None
        return Job(spec.id, self.same(spec.account), desired, self.same(tags), set_name or "", mapping, name)

    def integration_mapping(
        self,
        spec: IntegrationSpec,
        raw_mapping: Any,
        the_set: _Set | None,
        statuses: Statuses | None,
        removals: tuple[str, ...],
        loc: Loc,
        iid: int | None,
    ) -> DesiredMapping | UnsetType | None:
        """The integration's mapping: the set's, overridden category by category by its
        own. None when neither declares one; UNSET when it cannot be used (reported).

        Every mapped external id must be among the statuses left after the overrides
        and removals: a mapping to a status that is gone is what leaves a shop's
        mapping invalid."""
        inherited = the_set.mapping if the_set is not None else None
        if raw_mapping is None and inherited is None:
            return None
        if raw_mapping is None and the_set is not None and statuses is the_set.statuses:
            return the_set.desired_mapping if the_set.desired_mapping is not None else UNSET  # checked with the set
        own, wrong = mapping_categories(raw_mapping) if raw_mapping is not None else ({}, set())
        skip = wrong | (the_set.unknown - own.keys() if the_set is not None else set())
        if statuses is None:
            return UNSET
        mapping: dict[str, str | None] = dict(inherited) if inherited else dict.fromkeys(STATUS_CATEGORIES)
        mapping.update(own)
        have = {s.external_id for s in statuses}
        ok = not skip
        for category, external_id in mapping.items():
            if external_id is None or external_id in have or category in skip:
                continue
            ok = False
            if category in own:
                why = (
                    f"but {external_id!r} is removed by remove_statuses"
                    if external_id in removals
                    else f"but the integration's statuses have no external_id {external_id!r}"
                    + nearest(external_id, have)
                )
                self.problem((*loc, "mapping", category), f"mapping {category} -> {external_id!r}, {why}", iid)
            else:  # inherited, and the set's own check passed: only a removal can cause it
                where: Loc = (*loc, "remove_statuses", removals.index(external_id)) if external_id in removals else loc
                self.problem(
                    where,
                    f"mapping {category} -> {external_id!r} (from status set {spec.status_set!r}), but "
                    f"{external_id!r} is removed by remove_statuses: map {category} to another status in "
                    f'this integration\'s mapping, or unmap it with {category} = ""',
                    iid,
                )
        return self.desired_mapping(mapping) if ok else UNSET


def printable_shop(spec: IntegrationSpec) -> bool:
    """The shop's name and URL, where given, obey the rule of names (the slow path says why not)."""
    name, url = spec.name, spec.shop_url
    return (name is UNSET or control_in(name) is None) and (url is UNSET or control_in(url) is None)


def load(
    path: str | Path,
    environ: dict[str, str] | None = None,
    max_file_size: int = files.INVENTORY_LIMIT,
    isolate_credentials: bool = False,
    token_url_derived: bool = False,
) -> Inventory:
    """Load, validate and expand one inventory file; see :class:`Inventory`.problems.

    ``max_file_size`` caps the inventory file (bytes); the files it names have caps of
    their own (see :mod:`batchsync.files`).
    """
    # A command loads a large inventory with the cyclic GC paused (batchsync.gcpolicy):
    # that is the process's policy, not this function's to set.
    # isolate_credentials: an account whose only problem is a credential that cannot be
    # resolved is no problem of the inventory's but an entry of ``unresolved`` (plan, apply).
    # token_url_derived: the command line moves every request (--base-url, --sandbox) and
    # the token endpoint with it, so an OAuth2 account need not name its token_url.
    loader = _Loader(Path(path), environ, max_file_size, isolate_credentials)
    loader.token_url_derived = token_url_derived
    return loader.load()
