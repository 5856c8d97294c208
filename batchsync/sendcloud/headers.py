"""What batchsync reads in a response's headers: ``Retry-After`` and ``Link``'s next page.

Whatever a server writes there, parsing never raises: a header must not crash a run.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

# The longest pause a Retry-After may ask for; the engine cuts it further to what is
# left of --retry-max-time. A server saying "a billion seconds" or "inf" means "not soon".
RETRY_AFTER_MAX = 3600.0


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    A finite float in ``[0, RETRY_AFTER_MAX]``, or None when the header is absent or says
    nothing usable (``soon``, ``nan``, a malformed date). Never raises: the value comes
    from a server, and a header must not crash a run.
    """
    if not value:
        return None
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)  # also "inf", "1e400" (inf) and "nan": handled below
    except ValueError:
        seconds = _seconds_until(text, now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _seconds_until(http_date: str, now: Callable[[], float]) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(http_date).timestamp() - now()
    except Exception:  # ValueError, TypeError, OverflowError, IndexError: any malformed date
        return None


_LINK = re.compile(r"<([^>]*)>([^<]*)")


_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a ``Link`` header (RFC 8288), or None."""
    if not value:
        return None
    for match in _LINK.finditer(value):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                return match.group(1).strip()
    return None
