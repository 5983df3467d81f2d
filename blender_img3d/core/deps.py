"""Which runtime packages are importable, and at which versions — without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Iterable, Optional

from .errors import DependencyError
from .requirements import GENERATION_MODULES, RUNTIME_MODULES


@dataclass(frozen=True)
class PackageStatus:
    module: str
    distribution: str
    found: bool
    version: Optional[str]


def package_status(module: str) -> PackageStatus:
    """Whether ``module`` can be imported and its installed version (found via metadata)."""
    distribution = RUNTIME_MODULES.get(module, module)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
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
    """The distributions (pip names) among ``modules`` that can't be imported."""
    return [status.distribution for status in map(package_status, modules) if not status.found]


def require(modules: Iterable[str] = GENERATION_MODULES) -> None:
    """Raise :class:`DependencyError` listing what to install when any module is missing."""
    missing = missing_modules(modules)
    if missing:
        raise DependencyError(
            f"Missing Python packages: {', '.join(missing)}. In Blender use Preferences > "
            "Add-ons > Img3D > Install dependencies; outside Blender run "
            "'python3 vendor_install.py --dev'."
        )
