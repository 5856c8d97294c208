"""The bounds on reading one account's ``GET /integrations``, page after page.

A server decides how long its list is: a fresh next-page link on every page, the same ids
over and over, pages of 30,000 items. Whoever reads the list (``import``, which keeps it;
the pre-flight of ``plan`` and ``apply``, which looks for its integrations in it) feeds
each page to one :class:`Listing`, which stops the list at the first bound it passes:
pages, integrations, bytes, time, or an id listed twice. Its memory is the set of ids
seen, so bounded by the integrations bound.
"""

from __future__ import annotations

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

    __slots__ = ("bounds", "bytes", "items", "links", "pages", "seen", "started")

    def __init__(self, bounds: ListBounds, started: float) -> None:
        self.bounds = bounds
        self.started = started
        self.pages = 0
        self.items = 0
        self.bytes = 0
        self.seen: dict[int, int] = {}  # id -> the page that listed it
        self.links: set[int] = set()

    def add(self, page: ListedPage, now: float) -> None:
        """Count ``page``; ListBoundError when the list has gone past a bound with it."""
        bounds = self.bounds
        self.pages += 1
        self.bytes += page.size
        self.items += len(page.items)
        where = f"at page {self.pages:,}"
        if self.items > bounds.items:
            raise ListBoundError(
                f"the list of integrations has more than {_count(bounds.items, 'integration')} ({where}); "
                "not read further",
                "items",
            )
        if self.bytes > bounds.bytes:
            raise ListBoundError(
                f"the list of integrations is larger than {bounds.bytes // (1024 * 1024):,} MB ({where}); "
                "not read further",
                "bytes",
            )
        seen = self.seen
        for item in page.items:
            first = seen.get(item.id)
            if first is not None:  # an id listed again: the list goes round in a circle
                again = "twice on page" if first == self.pages else f"on page {first:,} and again on page"
                raise ListBoundError(
                    f"the list of integrations does not end: integration {item.id} is listed {again} {self.pages:,}",
                    "repeat",
                )
            seen[item.id] = self.pages
        if page.next_url is not None:
            link = hash(page.next_url)  # a link may be long: its hash is enough to know it again
            if link in self.links:
                raise ListBoundError(
                    f"the list of integrations does not end: page {self.pages + 1:,} was asked for before",
                    "repeat",
                )
            if self.pages >= bounds.pages:
                raise ListBoundError(
                    f"the list of integrations goes on past {_count(bounds.pages, 'page')}; not read further", "pages"
                )
            self.links.add(link)
        if now - self.started > bounds.seconds and page.next_url is not None:
            raise ListBoundError(
                f"the list of integrations took more than {bounds.seconds:g} s to read ({where}); not read further",
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
