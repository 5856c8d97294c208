"""The inventory: its file format (JSON, TOML, YAML), loading, validation and expansion.

:func:`load` reads one inventory file and returns every problem it finds (never just
the first), each naming the file, the integration and the path inside the file; when
there are none, it also returns one immutable :class:`Job` per integration. A status
set shared by many integrations becomes one :class:`Desired`, shared by their jobs.
"""

from __future__ import annotations

import difflib
import gc
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from batchsync.secrets import Secret, SecretError, check_reference, resolve
from batchsync.wire import (
    IntegrationId,
    Loc,
    NonEmpty,
    Status,
    Statuses,
    Translation,
    check_statuses,
    split_validation_error,
    to_jsonpath,
)

PRODUCTION_URL = "https://panel.sendcloud.sc/api/v3"

PositiveRate = Annotated[float, Meta(gt=0)]
Burst = Annotated[int, Meta(ge=1, le=1000)]


class Limits(msgspec.Struct, frozen=True):
    """One account's budgets, as Sendcloud documents them by default."""

    writes_per_minute: float = 100.0
    write_burst: int = 15
    reads_per_minute: float = 1000.0


class LimitsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    writes_per_minute: PositiveRate | None = None
    write_burst: Burst | None = None
    reads_per_minute: PositiveRate | None = None

    def over(self, base: Limits) -> Limits:
        return Limits(
            writes_per_minute=base.writes_per_minute if self.writes_per_minute is None else self.writes_per_minute,
            write_burst=base.write_burst if self.write_burst is None else self.write_burst,
            reads_per_minute=base.reads_per_minute if self.reads_per_minute is None else self.reads_per_minute,
        )


BASE_URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"
BaseUrl = Annotated[str, Meta(pattern=BASE_URL_PATTERN)]


class DefaultsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: BaseUrl = PRODUCTION_URL
    limits: LimitsSpec = LimitsSpec()


class AccountSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    public_key: str
    secret_key: str
    base_url: BaseUrl | None = None
    limits: LimitsSpec | None = None


class StatusSetSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    statuses: Statuses | None = None
    statuses_file: NonEmpty | None = None


class IntegrationSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: IntegrationId
    account: NonEmpty
    status_set: NonEmpty | None = None
    statuses: Statuses | None = None
    statuses_file: NonEmpty | None = None
    override_statuses: Statuses = ()
    remove_statuses: tuple[NonEmpty, ...] = ()
    tags: tuple[NonEmpty, ...] = ()
    comment: str = ""  # for people (import writes the shop's name and URL here in JSON); ignored


class StatusesFileBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A statuses file may be a whole POST body; its integration id is checked, not used."""

    statuses: Statuses
    integration_id: IntegrationId | None = None


TOP_KEYS = ("defaults", "accounts", "status_sets", "integrations")


class Account(msgspec.Struct, frozen=True):
    """An account ready to use: credentials resolved, limits merged."""

    name: str
    public_key: Secret
    secret_key: Secret
    base_url: str
    limits: Limits


class Desired:
    """A desired list of statuses, shared by every job that wants exactly it.

    The encoded JSON and the by-id index used for diffing are computed once, on first
    use, however many integrations share the list.
    """

    __slots__ = ("_encoded", "_index", "statuses")

    def __init__(self, statuses: Statuses) -> None:
        self.statuses = statuses
        self._encoded: bytes | None = None
        self._index: dict[str, frozenset[tuple[str, str]]] | None = None

    @property
    def encoded(self) -> bytes:
        """The ``statuses`` array as JSON bytes."""
        if self._encoded is None:
            self._encoded = msgspec.json.encode(self.statuses)
        return self._encoded

    @property
    def index(self) -> dict[str, frozenset[tuple[str, str]]]:
        """external_id -> {(language, name)}: what a diff compares."""
        if self._index is None:
            self._index = {
                s.external_id: frozenset((t.language, t.status) for t in s.translations) for s in self.statuses
            }
        return self._index

    def body(self, integration_id: int) -> bytes:
        """The POST body for one integration, spliced around the shared encoding."""
        return b'{"integration_id":%d,"statuses":%b}' % (integration_id, self.encoded)


class DesiredMapping:
    """A desired status mapping (all four categories), shared like :class:`Desired`."""

    __slots__ = ("_encoded", "items")

    def __init__(self, items: tuple[tuple[str, str | None], ...]) -> None:
        self.items = items  # (category, external id or None), in STATUS_CATEGORIES order
        self._encoded: bytes | None = None

    def as_dict(self) -> dict[str, str | None]:
        return dict(self.items)

    def body(self, integration_id: int) -> bytes:
        """The ``POST /shop-order-statuses/mapping`` body for one integration."""
        if self._encoded is None:
            self._encoded = msgspec.json.encode([{"status_category": c, "external_id": e} for c, e in self.items])
        return b'{"integration_id":%d,"mapping":%b}' % (integration_id, self._encoded)


class Job(msgspec.Struct, frozen=True):
    """One integration to bring into its desired state."""

    integration_id: int
    account: str
    desired: Desired
    tags: tuple[str, ...] = ()
    source: str = ""  # the status set's name, or "" for inline statuses
    mapping: DesiredMapping | None = None  # None: the inventory declares no mapping for it


class InventoryProblem(msgspec.Struct, frozen=True):
    """What `validate --format json` prints for each problem."""

    file: str
    integration_id: int | None
    path: str
    message: str


class Inventory(msgspec.Struct, frozen=True):
    path: str
    accounts: dict[str, Account]
    jobs: list[Job]  # empty when there are problems: nothing may be sent
    problems: list[InventoryProblem]
    declared: int = 0  # integration entries in the file, valid or not

    @property
    def valid(self) -> bool:
        return not self.problems


class _FileError(Exception):
    def __init__(self, message: str, loc: Loc = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


def read_document(path: Path) -> Any:
    """Parse one JSON, TOML or YAML file; _FileError with a printable reason otherwise."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise _FileError("is a directory, not a file")
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise _FileError(f"unknown file type {suffix or '(none)'!r}: use .json, .toml, .yaml or .yml")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _FileError("file does not exist") from None
    except IsADirectoryError:
        raise _FileError("is a directory, not a file") from None
    except PermissionError:
        raise _FileError("cannot be read (permission denied)") from None
    except OSError as exc:
        raise _FileError(f"cannot be read ({exc.strerror})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some Windows editors write
    if not data.strip():
        raise _FileError("file is empty")
    if b"\x00" in data:
        raise _FileError("is a binary file, not text")
    if suffix == ".json":
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise _FileError(f"invalid JSON: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _FileError(f"is not UTF-8 text (byte {exc.start})") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _FileError(f"invalid TOML: {exc}") from None
    import yaml  # only YAML users pay for importing it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise _FileError(f"invalid YAML{where}: {reason}") from None


class _JsonInventory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A JSON inventory whose integrations decode straight into structs (see _fast_json)."""

    integrations: list[IntegrationSpec]
    defaults: Any = msgspec.UNSET
    accounts: Any = msgspec.UNSET
    status_sets: Any = msgspec.UNSET


def _fast_json(path: Path) -> dict[str, Any] | None:
    """A JSON inventory decoded in one typed pass, or None to take the general path.

    Decoding the integrations straight into IntegrationSpec structs skips building a
    dict per integration and converting it: at 100k integrations, half the time and
    memory. Any problem at all (unreadable, malformed, one wrong field) returns None:
    the general path then finds and reports every problem, not just the first.
    """
    if path.suffix.lower() != ".json":
        return None
    try:
        doc = msgspec.json.decode(path.read_bytes(), type=_JsonInventory)
    except (OSError, msgspec.DecodeError):  # ValidationError is a DecodeError
        return None
    raw: dict[str, Any] = {"integrations": doc.integrations}
    for key in ("defaults", "accounts", "status_sets"):
        value = getattr(doc, key)
        if value is not msgspec.UNSET:
            raw[key] = value
    return raw


def _convert(raw: Any, kind: type[Any]) -> Any:
    # strict=True: an id written as "12" is a mistake to report, not to guess at.
    return msgspec.convert(raw, kind, strict=True)


def every_problem(raw: Any, kind: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Every place where ``raw`` does not fit ``kind``, not only the first that msgspec
    stops at: so that one run of ``validate`` names a typo, a bad language and an empty
    name in one integration together. The messages are msgspec's own."""
    try:
        _convert(raw, kind)
        return []
    except msgspec.ValidationError as exc:
        message, inner = split_validation_error(exc)
        first = [((*loc, *inner), message)]
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return [(loc, f"{message} (expected one of {', '.join(map(str, args))})")]
    found: list[tuple[Loc, str]] = []
    if origin is Annotated:  # the inner type first; then the constraint itself
        found = every_problem(raw, args[0], loc)
    elif origin in (Union, UnionType) and raw is not None:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            found = every_problem(raw, options[0], loc)
    elif origin in (tuple, list) and isinstance(raw, list) and args:
        item = args[0]
        for i, value in enumerate(raw):
            found += every_problem(value, item, (*loc, i))
    elif isinstance(kind, type) and issubclass(kind, msgspec.Struct) and isinstance(raw, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(kind)}
        for key, value in raw.items():
            field = fields.get(key)
            if field is None:
                near = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"; did you mean `{near[0]}`?" if near else ""
                found.append(((*loc, key), f"Object contains unknown field `{key}`{hint}"))
            else:
                found += every_problem(value, field.type, (*loc, key))
        for name, field in fields.items():
            if field.required and name not in raw:
                found.append(((*loc, name), f"Object missing required field `{name}`"))
    return found or first


def _guess_id(raw: Any) -> int | None:
    """The integration id a malformed entry was meant to have, for naming it."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def merge_statuses(base: Statuses, overrides: Statuses, removals: Iterable[str]) -> Statuses:
    """A set with one shop's changes: ``remove_statuses`` first, then ``override_statuses``.

    An override whose external_id is new is appended; one whose external_id exists
    replaces that status's translations language by language, keeping the others.
    """
    removed = set(removals)
    merged: dict[str, Status] = {s.external_id: s for s in base if s.external_id not in removed}
    for over in overrides:
        old = merged.get(over.external_id)
        if old is None:
            merged[over.external_id] = over
            continue
        by_lang: dict[str, Translation] = {t.language: t for t in old.translations}
        for t in over.translations:
            by_lang[t.language] = t
        merged[over.external_id] = Status(over.external_id, tuple(by_lang.values()))
    return tuple(merged.values())


class _Loader:
    def __init__(self, path: Path, environ: dict[str, str] | None) -> None:
        self.path = path
        self.name = str(path)
        self.base_dir = path.parent
        self.environ = environ
        self.problems: list[InventoryProblem] = []
        self._files: dict[Path, tuple[Statuses | None, int | None]] = {}
        self._interned: dict[Statuses, Desired] = {}
        self.no_accounts = False  # the accounts section is missing or not a mapping
        self.no_sets = False  # likewise status_sets

    def problem(self, loc: Loc, message: str, integration_id: int | None = None, file: str | None = None) -> None:
        self.problems.append(InventoryProblem(file or self.name, integration_id, to_jsonpath(loc), message))

    def convert(self, raw: Any, kind: type[Any], loc: Loc, integration_id: int | None = None) -> Any:
        try:
            return _convert(raw, kind)
        except msgspec.ValidationError:
            for inner, message in every_problem(raw, kind):
                self.problem((*loc, *inner), message, integration_id)
            return None

    def check(self, statuses: Statuses, loc: Loc, integration_id: int | None, file: str | None = None) -> bool:
        found = check_statuses(statuses, loc)
        for p in found:
            self.problem(p.loc, p.message, integration_id, file)
        return not found

    def desired(self, statuses: Statuses) -> Desired:
        found = self._interned.get(statuses)
        if found is None:
            found = self._interned[statuses] = Desired(statuses)
        return found

    def statuses_file(self, ref: str, loc: Loc, integration_id: int | None) -> tuple[Statuses | None, int | None]:
        """(statuses, the file's integration_id) or (None, None) after reporting why not."""
        target = Path(ref).expanduser()
        if not target.is_absolute():
            target = self.base_dir / target
        cached = self._files.get(target)
        if cached is not None:
            if cached[0] is None:
                # The file's own problems were reported for its first user; every other
                # user is named too, or it would silently drop out of the run.
                why = f"statuses_file {ref}: is not usable (see the problems reported for it)"
                self.problem(loc, why, integration_id)
            return cached
        result: tuple[Statuses | None, int | None] = (None, None)
        try:
            raw = read_document(target)
        except _FileError as exc:
            self.problem(loc, f"statuses_file {ref}: {exc.message}", integration_id)
            self._files[target] = result
            return result
        kind: type[Any] = Statuses if isinstance(raw, list) else StatusesFileBody
        try:
            value = _convert(raw, kind)
        except msgspec.ValidationError:
            for inner, message in every_problem(raw, kind):
                self.problem(inner, message, integration_id, str(target))
        else:
            if isinstance(value, StatusesFileBody):
                statuses, file_id = value.statuses, value.integration_id
            else:
                statuses, file_id = value, None
            inner_loc: Loc = () if isinstance(raw, list) else ("statuses",)
            if self.check(statuses, inner_loc, integration_id, str(target)):
                result = (statuses, file_id)
        self._files[target] = result
        return result

    def load(self) -> Inventory:
        try:
            raw = _fast_json(self.path)
            if raw is None:
                raw = read_document(self.path)
        except _FileError as exc:
            self.problem((), exc.message)
            return Inventory(self.name, {}, [], self.problems)
        if not isinstance(raw, dict):
            self.problem((), f"an inventory is a mapping with keys {', '.join(TOP_KEYS)}, not {type(raw).__name__}")
            return Inventory(self.name, {}, [], self.problems)
        for key in raw:
            if key not in TOP_KEYS:
                self.problem((key,), f"unknown key {key!r}: expected one of {', '.join(TOP_KEYS)}")

        defaults = self.convert(raw.get("defaults", {}), DefaultsSpec, ("defaults",)) or DefaultsSpec()
        base_limits = defaults.limits.over(Limits())
        accounts, broken_accounts = self.accounts(raw.get("accounts"), defaults, base_limits)
        sets, broken_sets = self.status_sets(raw.get("status_sets", {}))
        jobs = self.integrations(raw.get("integrations"), accounts, broken_accounts, sets, broken_sets)
        entries = raw.get("integrations")
        declared = len(entries) if isinstance(entries, list) else 0
        if self.problems:
            jobs = []
        return Inventory(self.name, accounts, jobs, self.problems, declared)

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
            loc: Loc = ("accounts", name)
            refs_ok = True
            if isinstance(raw_account, dict):
                # References are checked before the type, so that a literal secret,
                # whatever its type, is never quoted back in a message.
                for field in ("public_key", "secret_key"):
                    value = raw_account.get(field)
                    why = (
                        check_reference(value)
                        if isinstance(value, str)
                        else None
                        if value is None
                        else "must be a reference string, env:NAME or file:PATH"
                    )
                    if why is not None:
                        self.problem((*loc, field), why)
                        refs_ok = False
                        raw_account = {**raw_account, field: "env:_"}  # keep checking the rest
            spec: AccountSpec | None = self.convert(raw_account, AccountSpec, loc)
            if spec is None or not refs_ok:
                broken.add(name)
                if spec is None:
                    continue
            keys: dict[str, Secret] = {}
            for field in ("public_key", "secret_key"):
                ref = getattr(spec, field)
                if ref == "env:_" and not refs_ok:
                    continue
                try:
                    keys[field] = resolve(ref, self.base_dir, self.environ)
                except SecretError as exc:
                    self.problem((*loc, field), f"cannot resolve {ref}: {exc}")
            if len(keys) < 2:
                broken.add(name)
                continue
            limits = spec.limits.over(base_limits) if spec.limits else base_limits
            accounts[name] = Account(
                name,
                keys["public_key"],
                keys["secret_key"],
                (spec.base_url or defaults.base_url).rstrip("/"),
                limits,
            )
        if not raw:
            self.problem(("accounts",), "is empty: declare at least one account")
        # Sendcloud's limits are per account: the same account declared twice would get
        # two budgets here and be throttled there.
        owner: dict[Secret, str] = {}
        for name, account in accounts.items():
            first = owner.setdefault(account.public_key, name)
            if first != name:
                self.problem(
                    ("accounts", name, "public_key"),
                    f"the same public key as account {first!r}: declare each Sendcloud account once, "
                    "its integrations share one rate limit",
                )
        return accounts, broken

    def status_sets(self, raw: Any) -> tuple[dict[str, Statuses], set[str]]:
        sets: dict[str, Statuses] = {}
        broken: set[str] = set()
        if not isinstance(raw, dict):
            self.problem(("status_sets",), "must be a mapping of set name to {statuses} or {statuses_file}")
            self.no_sets = True
            return sets, broken
        for name, raw_set in raw.items():
            loc: Loc = ("status_sets", name)
            spec: StatusSetSpec | None = self.convert(raw_set, StatusSetSpec, loc)
            statuses = self.pick_statuses(spec, loc, None) if spec else None
            if statuses is None:
                broken.add(name)
            else:
                sets[name] = statuses
        return sets, broken

    def pick_statuses(
        self, spec: StatusSetSpec | IntegrationSpec, loc: Loc, integration_id: int | None
    ) -> Statuses | None:
        """The statuses a set or an integration declares inline or by file."""
        given = [k for k in ("statuses", "statuses_file") if getattr(spec, k) is not None]
        if isinstance(spec, IntegrationSpec) and spec.status_set is not None:
            given.insert(0, "status_set")
        if len(given) != 1:
            choices = (
                "status_set, statuses or statuses_file"
                if isinstance(spec, IntegrationSpec)
                else "statuses or statuses_file"
            )
            what = "none" if not given else " and ".join(given)
            self.problem(loc, f"give exactly one of {choices} (got {what})", integration_id)
            return None
        if spec.statuses is not None:
            ok = self.check(spec.statuses, (*loc, "statuses"), integration_id)
            return spec.statuses if ok else None
        if spec.statuses_file is not None:
            statuses, file_id = self.statuses_file(spec.statuses_file, (*loc, "statuses_file"), integration_id)
            if statuses is not None and integration_id is not None and file_id not in (None, integration_id):
                self.problem(
                    (*loc, "statuses_file"),
                    f"{spec.statuses_file} is a POST body for integration {file_id}, not {integration_id}",
                    integration_id,
                )
                return None
            return statuses
        return None  # status_set: resolved by the caller

    def integrations(
        self,
        raw: Any,
        accounts: dict[str, Account],
        broken_accounts: set[str],
        sets: dict[str, Statuses],
        broken_sets: set[str],
    ) -> list[Job]:
        jobs: list[Job] = []
        if raw is None:
            self.problem(("integrations",), "missing: list the integrations to manage")
            return jobs
        if not isinstance(raw, list):
            self.problem(("integrations",), "must be a list of integrations")
            return jobs
        first_seen: dict[int, int] = {}
        for i, raw_integration in enumerate(raw):
            loc: Loc = ("integrations", i)
            spec: IntegrationSpec | None
            if isinstance(raw_integration, IntegrationSpec):  # decoded by _fast_json
                spec = raw_integration
            else:
                guessed = _guess_id(raw_integration)
                spec = self.convert(raw_integration, IntegrationSpec, loc, guessed)
            if spec is None:
                continue
            iid = spec.id
            before = first_seen.setdefault(iid, i)
            if before != i:
                self.problem((*loc, "id"), f"duplicate integration id {iid} (first at $.integrations[{before}])", iid)
                continue
            ok = True
            if spec.account not in accounts:
                # Without a usable accounts section, the one problem reported for it says it all.
                if spec.account not in broken_accounts and not self.no_accounts:
                    known = ", ".join(sorted(accounts) + sorted(broken_accounts)) or "none"
                    self.problem((*loc, "account"), f"unknown account {spec.account!r} (known: {known})", iid)
                ok = False
            statuses: Statuses | None
            if spec.status_set is not None and spec.statuses is None and spec.statuses_file is None:
                statuses = sets.get(spec.status_set)
                if statuses is None and spec.status_set not in broken_sets and not self.no_sets:
                    known = ", ".join(sorted(sets) + sorted(broken_sets)) or "none"
                    self.problem((*loc, "status_set"), f"unknown status set {spec.status_set!r} (known: {known})", iid)
            else:
                statuses = self.pick_statuses(spec, loc, iid)
            if statuses is None:
                continue
            if spec.override_statuses or spec.remove_statuses:
                if not self.check(spec.override_statuses, (*loc, "override_statuses"), iid):
                    continue
                have = {s.external_id for s in statuses}
                missing = [x for x in spec.remove_statuses if x not in have]
                for k, x in enumerate(spec.remove_statuses):
                    if x in have:
                        continue
                    self.problem(
                        (*loc, "remove_statuses", k),
                        f"external_id {x!r} is not in the statuses it would remove from",
                        iid,
                    )
                if missing:
                    continue
                statuses = merge_statuses(statuses, spec.override_statuses, spec.remove_statuses)
            if ok:
                jobs.append(Job(iid, spec.account, self.desired(statuses), spec.tags, spec.status_set or ""))
        return jobs


def load(path: str | Path, environ: dict[str, str] | None = None) -> Inventory:
    """Load, validate and expand one inventory file; see :class:`Inventory`.problems."""
    # Decoding a large inventory allocates millions of small, acyclic containers; the
    # cyclic GC would rescan them over and over (70% of the time at 100k integrations).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(Path(path), environ).load()
    finally:
        if was_enabled:
            gc.enable()


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
        if term.isdigit():
            return job.integration_id == int(term)
        return job.account == term or term in job.tags

    unmatched = [t for t in dict.fromkeys(include + exclude) if not any(matches(j, t) for j in jobs)]
    chosen = [
        j
        for j in jobs
        if (not include or any(matches(j, t) for t in include)) and not any(matches(j, t) for t in exclude)
    ]
    return chosen, unmatched
