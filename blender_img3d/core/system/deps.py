"""Which runtime packages are importable, and at which versions — without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from typing import Iterable, Optional

from ..errors import DependencyError
from .requirements import GENERATION_MODULES, RUNTIME_MODULES


@dataclass(frozen=True)
class PackageStatus:
    module: str
    distribution: str
    found: bool
    version: Optional[str]


# Modules known to be importable. Packages don't vanish mid-session, so a "yes"
# is remembered; a "no" is asked again, so an install counts as soon as it lands.
_IMPORTABLE: set[str] = set()


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    Cheap after the first "yes": Generate's poll and the panel ask on every redraw.
    """
    if module in _IMPORTABLE or module in sys.modules:
        return True
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        _IMPORTABLE.add(module)
    return found


def package_status(module: str) -> PackageStatus:
    """Whether ``module`` can be imported and its installed version (found via metadata)."""
    distribution = RUNTIME_MODULES.get(module, module)
    found = importable(module)
    version = None
    if found:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
    return PackageStatus(module, distribution, found, version)


def runtime_status() -> list[PackageStatus]:
    """Status of every runtime package, in a stable order."""
    return [package_status(module) for module in RUNTIME_MODULES]


def missing_modules(modules: Iterable[str] = GENERATION_MODULES) -> list[str]:
    """The distributions (pip names) among ``modules`` that can't be imported.

    Only asks whether each imports (no version metadata), so it is fit for UI polls.
    """
    return [RUNTIME_MODULES.get(module, module) for module in modules if not importable(module)]


def require(modules: Iterable[str] = GENERATION_MODULES) -> None:
    """Raise :class:`DependencyError` listing what to install when any module is missing."""
    missing = missing_modules(modules)
    if missing:
        raise DependencyError(
            f"Missing Python packages: {', '.join(missing)}. In Blender use Preferences > "
            "Add-ons > Img3D > Install dependencies; outside Blender run "
            "'python3 vendor_install.py --dev'."
        )
