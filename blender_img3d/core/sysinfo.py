"""What this machine offers the add-on: versions, packages, devices, disk, online access.

One list of :class:`CheckEntry` feeds the CLI's ``info`` command and the
system check in Blender's preferences and panel, so both say the same thing.
"""

from __future__ import annotations

import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .deps import runtime_status
from .requirements import GENERATION_MODULES


@dataclass(frozen=True)
class CheckEntry:
    """One line of the system check: ``ok`` lines are green, others say what to do."""

    name: str
    ok: bool
    detail: str
    advice: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


def python_entries() -> list[CheckEntry]:
    from .. import __version__

    return [
        CheckEntry("blender_img3d", True, __version__),
        CheckEntry("Python", True, f"{platform.python_version()} ({sys.executable})"),
        CheckEntry("Platform", True, f"{platform.system()} {platform.machine()}"),
    ]


def package_entries() -> list[CheckEntry]:
    entries = []
    for status in runtime_status():
        required = status.module in GENERATION_MODULES
        advice = "" if status.found else "Install dependencies (vendor_install.py)"
        detail = status.version or ("found" if status.found else "missing")
        entries.append(
            CheckEntry(status.distribution, status.found or not required, detail, advice)
        )
    return entries


def device_entries() -> list[CheckEntry]:
    """Torch build and accelerators; imports torch, so only call it when asked."""
    try:
        import torch
    except ImportError:
        return [CheckEntry("torch", False, "not installed", "Install dependencies first")]
    entries = [CheckEntry("torch build", True, f"{torch.__version__} (CUDA {torch.version.cuda})")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            detail = f"{name}, {_format_bytes(free)} free of {_format_bytes(total)}"
            entries.append(CheckEntry(f"cuda:{index}", True, detail))
    else:
        entries.append(
            CheckEntry("CUDA", True, "no CUDA GPU: generation runs on the CPU (slow)", "")
        )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        entries.append(CheckEntry("mps", True, "Apple GPU available"))
    return entries


def disk_entry(folder: Optional[Path]) -> Optional[CheckEntry]:
    if folder is None:
        return None
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    ok = free > 6 * 1024**3  # two Shap-E models plus headroom
    advice = "" if ok else "Free some disk space: the two models need about 5 GB"
    return CheckEntry("disk free", ok, f"{_format_bytes(free)} in {folder}", advice)


def collect(include_devices: bool = True, cache_dir: Optional[Path] = None) -> list[CheckEntry]:
    """Every check; ``include_devices`` imports torch to list GPUs."""
    entries = python_entries() + package_entries()
    if include_devices:
        entries += device_entries()
    disk = disk_entry(cache_dir)
    if disk is not None:
        entries.append(disk)
    return entries
