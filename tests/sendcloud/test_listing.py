"""The bounds on one account's list of integrations (batchsync.sendcloud.listing), page by page."""

from __future__ import annotations

import pytest

from batchsync.sendcloud.listing import ListBoundError, ListBounds, Listing
from batchsync.wire import Integration, ListedPage


def _page(ids: range | list[int], following: str | None = "next", size: int = 0) -> ListedPage:
    return ListedPage(tuple(Integration(i) for i in ids), following, size)


def _bound(listing: Listing, *pages: tuple[ListedPage, float]) -> ListBoundError:
    with pytest.raises(ListBoundError) as info:
        for page, now in pages:
            listing.add(page, now)
    return info.value


def test_a_list_within_its_bounds_is_counted() -> None:
    listing = Listing(ListBounds(pages=3, items=6), 0.0)
    listing.add(_page(range(1, 4), "p2", 100), 1.0)
    listing.add(_page(range(4, 7), None, 100), 2.0)
    assert (listing.pages, listing.items, listing.bytes) == (2, 6, 200)


def test_more_integrations_than_the_bound() -> None:
    listing = Listing(ListBounds(items=5), 0.0)
    error = _bound(listing, (_page(range(1, 4), "p2"), 0), (_page(range(4, 7), "p3"), 0))
    assert error.bound == "items" and "more than 5 integrations (at page 2)" in str(error)


def test_more_bytes_than_the_bound() -> None:
    listing = Listing(ListBounds(bytes=2 * 1024 * 1024), 0.0)
    error = _bound(listing, (_page([1], "p2", 1024 * 1024), 0), (_page([2], "p3", 1024 * 1024 + 1), 0))
    assert error.bound == "bytes" and "larger than 2 MB (at page 2)" in str(error)


def test_more_pages_than_the_bound() -> None:
    listing = Listing(ListBounds(pages=2), 0.0)
    listing.add(_page([], "p2"), 0)
    error = _bound(listing, (_page([], "p3"), 0))
    assert error.bound == "pages" and "past 2 pages" in str(error)
    # The last page of a list as long as the bound is no problem.
    done = Listing(ListBounds(pages=2), 0.0)
    done.add(_page([], "p2"), 0)
    done.add(_page([], None), 0)


def test_longer_than_the_time_bound() -> None:
    listing = Listing(ListBounds(seconds=10), 5.0)
    listing.add(_page([1], "p2"), 14.0)
    error = _bound(listing, (_page([2], "p3"), 15.5))
    assert error.bound == "time" and "more than 10 s" in str(error)


def test_an_id_listed_again_however_far_back() -> None:
    listing = Listing(ListBounds(), 0.0)
    for n in range(50):
        listing.add(_page(range(n * 10 + 1, n * 10 + 11), f"p{n + 2}"), 0)
    error = _bound(listing, (_page([999, 3], "p52"), 0))
    assert error.bound == "repeat" and "integration 3 is listed on page 1 and again on page 51" in str(error)
    twice = _bound(Listing(ListBounds(), 0.0), (_page([4, 4], "p2"), 0))
    assert "integration 4 is listed twice on page 1" in str(twice)


def test_a_next_link_asked_for_before() -> None:
    listing = Listing(ListBounds(), 0.0)
    listing.add(_page([], "a"), 0)
    listing.add(_page([], "b"), 0)
    error = _bound(listing, (_page([], "a"), 0))
    assert error.bound == "repeat" and "page 4 was asked for before" in str(error)
    assert not error.retryable
