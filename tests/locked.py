"""Reading the lock (requirements/*.txt, written by `make lock`) and comparing an
environment with it: what every install the project makes must hold, exactly."""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements"

_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*))?")


def pins(name: str) -> dict[str, tuple[str, str | None, list[str]]]:
    """Each package a lock file names: version, marker (or None) and hashes."""
    found: dict[str, tuple[str, str | None, list[str]]] = {}
    current: list[str] | None = None
    for raw in (LOCK / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("--hash=sha256:") and current is not None:
            current.append(line.removeprefix("--hash=sha256:").rstrip(" \\"))
            continue
        current = None
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        assert m, f"{name}: not a pinned requirement: {raw!r}"
        key = canonicalize_name(m["name"])
        marker = m["marker"].strip() if m["marker"] else None
        assert key not in found, f"{name}: {key} pinned twice"
        current = []
        found[key] = (m["version"], marker, current)
    return found


def expected_here(name: str) -> dict[str, str]:
    """What a lock file installs on this machine (its markers evaluated): name -> version."""
    return {key: v for key, (v, marker, _) in pins(name).items() if marker is None or Marker(marker).evaluate()}


def installed(site_packages: list[str] | None = None) -> dict[str, str]:
    """Every distribution installed in an environment: this one's site-packages (not the
    source tree's egg-info that sys.path may also reach) unless others are given."""
    if site_packages is None:
        paths = sysconfig.get_paths()
        site_packages = sorted({paths["purelib"], paths["platlib"]})
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=site_packages):
        name = canonicalize_name(dist.metadata["Name"])
        assert name not in found, f"{name} is installed twice"
        found[name] = dist.version
    return found
