"""Fleet drift as the HTML page shows it: the PrestaShop V2 integrations a declared account
has and the inventory does not declare (``Summary.undeclared``, found by the pre-flight).

Apart from :mod:`batchsync.outputs.html` only to keep that module within the house's size.
"""

from __future__ import annotations

from collections.abc import Callable

from batchsync.outcome import Summary


def undeclared_section(summary: Summary, escape: Callable[[object], str]) -> str:
    """The page's "Undeclared" section ("" when there is none): account, id, name, URL. A
    URL is shown as text, never a link: a server wrote it."""
    found = sorted(summary.undeclared, key=lambda u: (u.account, u.integration_id))
    if not found:
        return ""
    rows = "".join(
        f'<tr><td>{escape(u.account)}</td><td class="num">{u.integration_id}</td>'
        f"<td>{escape(u.name or '')}</td><td>{escape(u.shop_url or '')}</td></tr>"
        for u in found
    )
    return (
        f'<section id="undeclared"><h2>Undeclared ({len(found)})</h2>'
        '<p class="hint">PrestaShop V2 integrations of declared accounts that the inventory does not declare: '
        "declare them, or list them in the account's <code>ignore_integrations</code>.</p>"
        '<table class="undeclared"><thead><tr><th>account</th><th class="num">integration</th><th>name</th>'
        f"<th>URL</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
