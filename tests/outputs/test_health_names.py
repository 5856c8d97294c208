"""The failing shops and the history's lines name each shop, as every other output does."""

from __future__ import annotations

import io

from batchsync.health import Health
from batchsync.outcome import Outcome
from batchsync.outputs.health import HealthSeen, shop_line
from batchsync.outputs.terminal import print_memory


def test_a_failing_shop_is_named_in_its_line_and_the_recap() -> None:
    health = Health(since="2026-12-03T00:00:00Z", count=3)
    assert shop_line(120102, "acme", health).startswith("integration 120102 (acme): ")
    assert shop_line(120102, "acme", health, "Café Ö").startswith('integration 120102 "Café Ö" (acme): ')
    seen = HealthSeen().extend(
        [Outcome(integration_id=120102, account="acme", result="unchanged", name="Café Ö", health=health)]
    )
    assert any('integration 120102 "Café Ö" (acme)' in line for line in seen.recap_lines())


def test_the_history_s_lines_name_the_shop() -> None:
    failed = Outcome(integration_id=7, account="acme", result="failed", name="Kiosk\x1b[2J")
    out = io.StringIO()
    print_memory({"new": [failed], "ongoing": [], "recovered": []}, out)
    assert '  ! 7 "Kiosk\\u001b[2J" (acme): new' in out.getvalue()  # the name quoted, its escape spelled out
    assert "\x1b" not in out.getvalue()
