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
from typing import Optional, Sequence

from .deps import runtime_status
from .model_store import format_size
from .requirements import GENERATION_MODULES

INSTALL_ADVICE = (
    "Install Dependencies in the add-on's preferences (outside Blender: vendor_install.py --dev)"
)


@dataclass(frozen=True)
class CheckEntry:
    """One line of the system check: ``ok`` lines are green, others say what to do."""

    name: str
    ok: bool
    detail: str
    advice: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def python_entries() -> list[CheckEntry]:
    from ..version import __version__

    return [
        CheckEntry("blender_img3d", True, __version__),
        CheckEntry("Python", True, f"{platform.python_version()} ({sys.executable})"),
        CheckEntry("Platform", True, f"{platform.system()} {platform.machine()}"),
    ]


def package_entries() -> list[CheckEntry]:
    entries = []
    for status in runtime_status():
        required = status.module in GENERATION_MODULES
        advice = "" if status.found else INSTALL_ADVICE
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
    cuda_build = torch.version.cuda is not None
    build = f"CUDA {torch.version.cuda} build" if cuda_build else "CPU build"
    entries = [CheckEntry("torch build", True, f"{torch.__version__} ({build})")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            detail = f"{name}, {format_size(free)} free of {format_size(total)}"
            entries.append(CheckEntry(f"cuda:{index}", True, detail))
    elif cuda_build:
        entries.append(
            CheckEntry(
                "CUDA",
                True,
                "CUDA build but no usable NVIDIA GPU: generation runs on the CPU (slow)",
                "Update the NVIDIA driver if this machine has a GPU",
            )
        )
    else:
        entries.append(
            CheckEntry(
                "CUDA",
                True,
                "no CUDA GPU: generation runs on the CPU (slow)",
                "For an NVIDIA GPU, install the CUDA build of PyTorch",
            )
        )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        entries.append(CheckEntry("mps", True, "Apple GPU available"))
    return entries


def build_entry() -> CheckEntry:
    """Which PyTorch build Install Dependencies would pick here, and why (runs the probes)."""
    from . import hardware

    machine = hardware.probe_machine()
    try:
        build = hardware.choose_build(machine)
    except hardware.UnsupportedPlatformError as exc:
        return CheckEntry("PyTorch build for this machine", False, machine.platform_label, str(exc))
    return CheckEntry("PyTorch build for this machine", True, f"{build.label}: {build.reason}")


def disk_entry(folder: Optional[Path]) -> Optional[CheckEntry]:
    if folder is None:
        return None
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    ok = free > 6 * 1024**3  # two Shap-E models plus headroom
    advice = "" if ok else "Free some disk space: the two models need about 5 GB"
    return CheckEntry("disk free", ok, f"{format_size(free)} in {folder}", advice)


def model_entries(
    models: Sequence[tuple[str, str]],
    cache_dir: Optional[Path] = None,
    revision: str = "main",
) -> list[CheckEntry]:
    """One line per ``(mode, source)`` model: present with size and revision, or what to do."""
    from .model_store import model_status

    entries = []
    for mode, source in models:
        status = model_status(source, mode=mode, cache_dir=cache_dir, revision=revision)
        advice = (
            ""
            if status.present
            else "Download Models in the preferences (needs Allow Downloads and online access)"
        )
        entries.append(CheckEntry(f"{mode} model {source}", status.present, status.detail, advice))
    return entries


def vendor_entry(folder: Path) -> CheckEntry:
    """Whether the private dependency folder holds a finished install."""
    from .vendor import STAMP_NAME

    if (Path(folder) / STAMP_NAME).is_file():
        return CheckEntry("dependency folder", True, str(folder))
    # Not an error by itself: the packages may come from elsewhere (a venv, site-packages).
    return CheckEntry("dependency folder", True, f"{folder} (not installed there)")


def online_entry(online: bool) -> CheckEntry:
    advice = "" if online else "Enable Preferences > System > Network > Allow Online Access"
    return CheckEntry("online access", online, "on" if online else "off", advice)


def collect(
    include_devices: bool = True,
    cache_dir: Optional[Path] = None,
    models: Sequence[tuple[str, str]] = (),
    revision: str = "main",
) -> list[CheckEntry]:
    """Every check; ``include_devices`` imports torch to list GPUs; ``models`` are
    ``(mode, hub id or folder)`` pairs looked up in ``cache_dir``."""
    entries = python_entries() + package_entries()
    if include_devices:
        entries += device_entries()
        entries.append(build_entry())
    if models:
        entries += model_entries(models, cache_dir, revision)
    disk = disk_entry(cache_dir)
    if disk is not None:
        entries.append(disk)
    return entries
