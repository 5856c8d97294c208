"""What a sandbox is asked to do: how it seeds its state, its rate limits, the faults it
injects, its pages and its tokens (:class:`SandboxConfig`). Apart from the server, so that
the command line checks its options without importing aiohttp."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from batchsync.model import Limits
from batchsync.sandbox.state import OTHER_SYSTEM

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
FaultKind = Literal["500", "502", "503", "reset", "hang", "garbage_200"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "502", "503", "reset", "hang", "garbage_200")


class SandboxConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every option of a sandbox. Rates are per minute of sandbox time; delays are real seconds."""

    # Seeding (ignored when the sandbox is seeded from a plain Seed).
    in_sync: Probability = 0.0
    seed: int = 0
    other_system_ids: frozenset[int] = frozenset()  # these get system OTHER_SYSTEM
    systems: tuple[tuple[int, str], ...] = ()  # (integration id, system), wins over the above
    failing_ids: frozenset[int] = frozenset()  # these get a failing_since (a broken shop connection)
    absent_ids: frozenset[int] = frozenset()  # inventory integrations that no account has
    # Rate limits: None keeps each account's own (from the inventory).
    writes_per_minute: Annotated[float, Meta(gt=0)] | None = None
    write_burst: Annotated[int, Meta(ge=1)] | None = None
    reads_per_minute: Annotated[float, Meta(gt=0)] | None = None
    time_scale: Annotated[float, Meta(gt=0)] = 1.0  # multiplies every rate: a sped-up clock
    retry_after: bool = True  # send Retry-After on 429
    empty_429: bool = False  # 429 with an empty body, as Sendcloud may answer
    # Faults, drawn per request from random.Random(seed); their sum must be <= 1.
    fault_500: Probability = 0.0
    fault_502: Probability = 0.0
    fault_503: Probability = 0.0
    fault_reset: Probability = 0.0
    fault_hang: Probability = 0.0
    garbage_200: Probability = 0.0
    hang_seconds: Annotated[float, Meta(ge=0)] = 30.0
    # Accounts whose every API request (once authenticated) is answered 500: one client's
    # Sendcloud incident, while the other accounts are served as usual.
    down_accounts: frozenset[str] = frozenset()
    latency: tuple[float, float] | None = None  # uniform delay per admitted request
    # GET /integrations: the default and the largest page (a client asking more gets this).
    page_size: Annotated[int, Meta(ge=1)] = 100
    # Integration exception logs: (integration id, how many), one every log_interval seconds
    # back from the start; pages of logs_page_size; endless_logs: a list that never ends.
    exception_logs: tuple[tuple[int, Annotated[int, Meta(ge=0, le=100_000)]], ...] = ()  # options.MAX_SEEDED_LOGS
    log_interval: Annotated[float, Meta(gt=0)] = 600.0
    logs_page_size: Annotated[int, Meta(ge=1)] = 100
    endless_logs: bool = False
    # Lifetime of the tokens POST /oauth2/token issues, in real seconds (time_scale does not apply).
    token_lifetime: Annotated[int, Meta(ge=1)] = 3600

    def __post_init__(self) -> None:
        if sum(self.fault_weights()) > 1.0 + 1e-9:
            raise ValueError("the fault probabilities add up to more than 1")
        # Meta constraints are checked when decoding, not by the constructor.
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if self.token_lifetime < 1:
            raise ValueError("token_lifetime must be >= 1 second")
        if self.latency is not None and not 0 <= self.latency[0] <= self.latency[1]:
            raise ValueError("latency must be (min, max) with 0 <= min <= max")

    def fault_weights(self) -> tuple[float, ...]:
        """Probabilities in the order of FAULT_KINDS."""
        return (
            self.fault_500,
            self.fault_502,
            self.fault_503,
            self.fault_reset,
            self.fault_hang,
            self.garbage_200,
        )

    def system_map(self) -> dict[int, str]:
        out = dict.fromkeys(self.other_system_ids, OTHER_SYSTEM)
        out.update(self.systems)
        return out

    def limits_for(self, base: Limits) -> Limits:
        return Limits(
            writes_per_minute=self.writes_per_minute or base.writes_per_minute,
            write_burst=self.write_burst or base.write_burst,
            reads_per_minute=self.reads_per_minute or base.reads_per_minute,
        )
