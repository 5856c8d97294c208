"""The bounds on reading one account's ``GET /integrations``, page after page.

A server decides how long its list is: a fresh next-page link on every page, the same ids
over and over, pages of 30,000 items. Whoever reads the list (``import``, which keeps it;
the pre-flight of ``plan`` and ``apply``, which looks for its integrations in it) feeds
each page to one :class:`Listing`, which stops the list at the first bound it passes:
pages, integrations, bytes, time, or an id listed twice. Its memory is the set of ids
seen, so bounded by the integrations bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from batchsync.sendcloud.errors import ApiError
from batchsync.wire import ListedPage

__all__ = ["ListBoundError", "ListBounds", "Listing"]


class ListBoundError(ApiError):
    """The list went past one of its bounds: ``bound`` is ``pages``, ``items``, ``bytes``,
    ``time`` or ``repeat`` (an id, or a next-page link, seen before). Not retryable: the
    same list ends the same way."""

    kind = "invalid_response"
    retryable = False

    def __init__(self, detail: str, bound: str) -> None:
        super().__init__(detail, method="GET")
        self.bound = bound

    def __str__(self) -> str:
        return self.detail


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


class Listing:
    """One account's list as it is read: :meth:`add` each page (in order) with the time it
    arrived; it raises :class:`ListBoundError` once a bound is passed."""

    __slots__ = ("bounds", "bytes", "items", "links", "pages", "seen", "started", "unit", "what")

    def __init__(
        self, bounds: ListBounds, started: float, what: str = "the list of integrations", unit: str = "integration"
    ) -> None:
        """``what`` and ``unit`` name the list in the messages (the integration exception
        logs read the same way: ``"the exception logs of account acme"``, ``"log record"``)."""
        self.bounds = bounds
        self.what = what
        self.unit = unit
        self.started = started
        self.pages = 0
        self.items = 0
        self.bytes = 0
        self.seen: dict[int, int] = {}  # id -> the page that listed it
        self.links: set[int] = set()

    def add(self, page: ListedPage, now: float) -> None:
        """Count ``page``; ListBoundError when the list has gone past a bound with it."""
        self.add_ids([item.id for item in page.items], page.next_url, page.size, now)

    def add_ids(self, ids: Sequence[int | None], next_url: str | None, size: int, now: float) -> None:
        """Count a page of ``ids`` (None: an item without one); ListBoundError as :meth:`add`."""
        bounds, what, unit = self.bounds, self.what, self.unit
        self.pages += 1
        self.bytes += size
        self.items += len(ids)
        where = f"at page {self.pages:,}"
        if self.items > bounds.items:
            raise ListBoundError(
                f"{what} has more than {_count(bounds.items, unit)} ({where}); not read further",
                "items",
            )
        if self.bytes > bounds.bytes:
            raise ListBoundError(
                f"{what} is larger than {bounds.bytes // (1024 * 1024):,} MB ({where}); not read further",
                "bytes",
            )
        seen = self.seen
        for ident in ids:
            if ident is None:
                continue
            first = seen.get(ident)
            if first is not None:  # an id listed again: the list goes round in a circle
                again = "twice on page" if first == self.pages else f"on page {first:,} and again on page"
                raise ListBoundError(
                    f"{what} does not end: {unit} {ident} is listed {again} {self.pages:,}",
                    "repeat",
                )
            seen[ident] = self.pages
        if next_url is not None:
            link = hash(next_url)  # a link may be long: its hash is enough to know it again
            if link in self.links:
                raise ListBoundError(
                    f"{what} does not end: page {self.pages + 1:,} was asked for before",
                    "repeat",
                )
            if self.pages >= bounds.pages:
                raise ListBoundError(f"{what} goes on past {_count(bounds.pages, 'page')}; not read further", "pages")
            self.links.add(link)
        if now - self.started > bounds.seconds and next_url is not None:
            raise ListBoundError(
                f"{what} took more than {bounds.seconds:g} s to read ({where}); not read further",
                "time",
            )


class ListBounds(msgspec.Struct, frozen=True):
    """How far one account's ``GET /integrations`` is read before it is taken for a list
    that does not end (batchsync.sendcloud.listing): ``import`` keeps the list, so these bound its
    memory too; the pre-flight of ``plan`` and ``apply`` stops at the same bounds."""

    pages: int = 1_000
    items: int = 50_000  # integrations
    bytes: int = 256 * 1024 * 1024  # of the pages' bodies together
    seconds: float = 90.0  # from the first page asked for
