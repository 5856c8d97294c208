"""The domain: accounts, their credentials and limits, the desired state of each integration
(a :class:`Job`), and the loaded :class:`Inventory` that holds them.

What the engine, the Sendcloud client, the outputs and the sandbox share; only
:mod:`batchsync.inventory` knows the files they are read from.
"""

from __future__ import annotations

import base64

import msgspec

from batchsync.diff import TranslationSet, translation_set
from batchsync.secrets import Secret
from batchsync.wire import MappingItem, Statuses

PRODUCTION_URL = "https://panel.sendcloud.sc/api/v3"


TOKEN_URL = "https://account.sendcloud.com/oauth2/token"  # noqa: S105 - a URL, not a password


class Limits(msgspec.Struct, frozen=True):
    """One account's budgets, as Sendcloud documents them by default."""

    writes_per_minute: float = 100.0
    write_burst: int = 15
    reads_per_minute: float = 1000.0


SECRET_FIELDS = ("public_key", "secret_key", "client_id", "client_secret")


class BasicCredentials(msgspec.Struct, frozen=True):
    public_key: Secret
    secret_key: Secret


class OAuth2Credentials(msgspec.Struct, frozen=True):
    client_id: Secret
    client_secret: Secret
    token_url: str = TOKEN_URL
    scope: str = "api"


class Account(msgspec.Struct, frozen=True):
    """An account ready to use: credentials resolved, limits merged."""

    name: str
    credentials: BasicCredentials | OAuth2Credentials
    base_url: str
    limits: Limits
    tags: tuple[str, ...] = ()  # inherited by its integrations
    ignore_integrations: frozenset[int] = frozenset()  # its integrations the inventory knows and leaves alone

    @property
    def identity(self) -> Secret:
        """What names the Sendcloud account: the public key (basic) or the client id (oauth2)."""
        c = self.credentials
        return c.public_key if isinstance(c, BasicCredentials) else c.client_id

    def secrets(self) -> tuple[Secret, ...]:
        """Every credential value, for the redactor."""
        c = self.credentials
        if isinstance(c, BasicCredentials):
            return (c.public_key, c.secret_key)
        return (c.client_id, c.client_secret)

    def echoes(self) -> tuple[str, ...]:
        """Every value a server could echo of these credentials, for the redactor: each
        one, and the ``user:password`` pair a Basic header carries (the API's, or the
        token endpoint's), whose base64 is not the base64 of its parts."""
        user, password = (v.reveal() for v in self.secrets())
        pair = f"{user}:{password}"
        # The header's base64 as a secret of its own too: what the authenticators hand the
        # redactor later is then nothing new (no second part of it for a Basic-only run).
        return (user, password, pair, base64.b64encode(pair.encode()).decode("ascii"))


class _PackedTranslation(msgspec.Struct, frozen=True, array_like=True, gc=False):
    status: str
    language: str


class _PackedStatus(msgspec.Struct, frozen=True, array_like=True, gc=False):
    external_id: str
    translations: tuple[_PackedTranslation, ...]


_Packed = tuple[_PackedStatus, ...]
_packed_decoder = msgspec.json.Decoder(_Packed)


def pack(statuses: Statuses) -> bytes:
    """A valid list's compact form: JSON arrays instead of objects (``[["2",[["Shipped","en-gb"]]]]``),
    about half the bytes of the API's form; equal lists, equal bytes."""
    return msgspec.json.encode(msgspec.convert(statuses, _Packed, from_attributes=True))


def unpack(packed: bytes) -> Statuses:
    """The list :func:`pack` made ``packed`` from."""
    return msgspec.convert(_packed_decoder.decode(packed), Statuses, from_attributes=True)


class Desired:
    """A desired list of statuses, shared by every job that wants exactly it.

    Held in a compact form (:func:`pack`), not as structs: a fleet where every shop has
    its own list would otherwise hold a few kilobytes of small objects per shop for the
    whole run. ``statuses``, ``encoded`` (the API's JSON, what the POST body splices in)
    and ``index`` (what a diff compares) are made from it when asked, and kept only on a
    list that several jobs share (``shared``, set by the loader): made once for all of
    them; a list of one shop makes them when its diff or its write asks and lets them go.
    """

    __slots__ = ("_encoded", "_index", "count", "packed", "shared")

    def __init__(self, statuses: Statuses = (), *, packed: bytes | None = None) -> None:
        # packed: pack(statuses), when the caller has it (the loader interns by it).
        self.packed: bytes = pack(statuses) if packed is None else packed
        self.count: int = len(statuses)
        self.shared = False
        self._encoded: bytes | None = None
        self._index: dict[str, TranslationSet] | None = None

    @property
    def statuses(self) -> Statuses:
        """The list as structs, made anew from the compact form."""
        return unpack(self.packed) if self.count else ()

    @property
    def encoded(self) -> bytes:
        """The ``statuses`` array as the API's JSON."""
        if self._encoded is not None:
            return self._encoded
        encoded = msgspec.json.encode(self.statuses)
        if self.shared:
            self._encoded = encoded
        return encoded

    @property
    def index(self) -> dict[str, TranslationSet]:
        """external_id -> its translations as a set: what a diff compares."""
        if self._index is not None:
            return self._index
        index = {
            s.external_id: translation_set((t.language, t.status) for t in s.translations)
            for s in _packed_decoder.decode(self.packed)
        }
        if self.shared:
            self._index = index
        return index

    def body(self, integration_id: int) -> bytes:
        """The POST body for one integration, spliced around the list's encoding."""
        return b'{"integration_id":%d,"statuses":%b}' % (integration_id, self.encoded)


class DesiredMapping:
    """A desired status mapping, shared (like :class:`Desired`) by every job that wants it.

    ``items`` holds the four categories in ``STATUS_CATEGORIES`` order, each with the
    external id it maps to or None (not mapped), as the POST body wants them.
    """

    __slots__ = ("_encoded", "items")

    def __init__(self, items: tuple[tuple[str, str | None], ...]) -> None:
        self.items = items
        self._encoded: bytes | None = None

    def as_dict(self) -> dict[str, str | None]:
        return dict(self.items)

    @property
    def encoded(self) -> bytes:
        """The ``mapping`` array as JSON bytes."""
        if self._encoded is None:
            self._encoded = msgspec.json.encode([MappingItem(c, e) for c, e in self.items])  # type: ignore[arg-type]
        return self._encoded

    def body(self, integration_id: int) -> bytes:
        """The POST /shop-order-statuses/mapping body for one integration."""
        return b'{"integration_id":%d,"mapping":%b}' % (integration_id, self.encoded)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DesiredMapping) and other.items == self.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"DesiredMapping({self.as_dict()!r})"


class Job(msgspec.Struct, frozen=True, gc=False):
    """One integration to bring into its desired state."""

    # gc=False: a job holds no reference back to anything that holds it, and 100k of
    # them tracked by the collector would be rescanned by every collection of the run.

    integration_id: int
    account: str
    desired: Desired
    tags: tuple[str, ...] = ()
    source: str = ""  # the status set's name, or "" for inline statuses
    mapping: DesiredMapping | None = None  # None: the inventory declares no mapping for it
    name: str | None = None  # the shop's name, for people: every output shows it beside the id


class InventoryProblem(msgspec.Struct, frozen=True):
    """What `validate --format json` prints for each problem (and each warning)."""

    file: str
    integration_id: int | None
    path: str
    message: str

    def line(self) -> str:
        """The problem as one line of text: ``file: $.path: message (integration N)``; a
        problem of the whole file (the path ``$``) without it: ``file: message``."""
        where = f" (integration {self.integration_id})" if self.integration_id is not None else ""
        path = f"{self.path}: " if self.path != "$" else ""
        return f"{self.file}: {path}{self.message}{where}"


class NotifyRoute(msgspec.Struct, frozen=True):
    """A notification route of the inventory (``[[notify]]``): its webhook (a reference,
    resolved when the run starts), the integrations it reports (those of an account or
    with a tag matching one of its patterns; every one when it names none), when and how."""

    url: str  # env:NAME or file:PATH
    tags: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    on: str = "failure"  # failure, change, always, new (with the run history)
    format: str = "slack"  # slack, json


class Inventory(msgspec.Struct, frozen=True):
    path: str
    accounts: dict[str, Account]
    jobs: list[Job]  # empty when there are problems: nothing may be sent
    problems: list[InventoryProblem]
    declared: int = 0  # integration entries in the file, valid or not
    warnings: list[InventoryProblem] = msgspec.field(default_factory=list)  # worth saying, not blocking
    files: tuple[str, ...] = ()  # the files it references (statuses files, file: secrets): no output may replace them
    secret_files: tuple[str, ...] = ()  # those of ``files`` that hold a credential (file: references)
    # Accounts whose credentials could not be resolved (loaded with isolate_credentials):
    # account -> why, naming the reference and never a value. Their jobs are in ``jobs``;
    # the run fails them with kind ``credentials`` and sends nothing of theirs.
    unresolved: dict[str, str] = msgspec.field(default_factory=dict)
    # Every account's tags, the unresolved ones' included (the run's --limit reads them).
    account_tags: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    notify: list[NotifyRoute] = msgspec.field(default_factory=list)  # the [[notify]] routes
    history: Secret | None = None  # [history] url: where runs are recorded (a DSN is a credential)

    @property
    def valid(self) -> bool:
        return not self.problems


PRESTASHOP_V2 = "prestashop_v2"
"""The ``system`` of a PrestaShop V2 integration, the only kind the shop-order-status endpoints
accept (Sendcloud does not document the literal; the sandbox serves it)."""


# The lowest an account's rate goes after 429s, as a fraction of the rate its limits declare
# (the engine's buckets never go below it; the recap says when one reached it).
FLOOR = 0.1
