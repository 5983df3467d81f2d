"""Which PyTorch build fits this machine: probe the GPU and driver, pick the wheel index.

PyPI's torch is a CUDA build on Linux (several GB of NVIDIA libraries) and a
CPU build on Windows, so "pip install torch" is wrong for most artists. The
PyTorch project publishes each build on its own index; this module chooses one:

- an NVIDIA driver (``nvidia-smi`` or NVML) → the newest CUDA build the driver runs;
- Apple Silicon → PyPI (its macOS wheel has MPS);
- Linux with an AMD GPU → the ROCm build;
- anything else → the CPU index, on Linux too, so no NVIDIA libraries arrive by accident;
- an Intel Mac → refused before anything downloads (PyTorch 2.13 has no wheel for it).

The probes run behind two small functions (:func:`run_probe` for a command's
output, :func:`nvml_probe` for the NVML library) so tests fake exactly what a
machine would print. The user's explicit choice always wins over detection.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..choices import Choice, names
from ..errors import DependencyError
from .requirements import TORCH_VERSION

logger = logging.getLogger(__name__)

PYPI_INDEX_URL = "https://pypi.org/simple"
PYTORCH_INDEX_ROOT = "https://download.pytorch.org/whl"

# The builds a user can ask for; "auto" asks the probes. (The one list: the
# preferences' menu and the command line's --build are made from it.)
TORCH_BUILDS = (
    Choice("auto", "Auto", "Detect the GPU and pick the matching PyTorch build"),
    Choice("cpu", "CPU", "PyTorch for the processor only (small; works everywhere)"),
    Choice("cuda", "CUDA", "PyTorch for NVIDIA GPUs (the build matching the driver; large)"),
    Choice("rocm", "ROCm", "PyTorch for AMD GPUs on Linux (large)"),
    Choice("mps", "Apple GPU", "PyTorch for Apple Silicon (Metal); the macOS wheel from PyPI"),
)
BUILD_NAMES = names(TORCH_BUILDS)

# CUDA builds PyTorch publishes for this torch version, newest first, with the
# CUDA version each needs from the driver (nvidia-smi's "CUDA Version").
CUDA_BUILDS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("cu130", (13, 0)),
    ("cu128", (12, 8)),
    ("cu126", (12, 6)),
)
ROCM_BUILD = "rocm6.4"

# Download sizes (compressed wheels, measured from the indexes for torch 2.13)
# and the disk space an install needs (unpacked, plus pip's temporary copies).
TORCH_DOWNLOAD_BYTES = {
    "cpu": 120 * 1024**2,
    "mps": 110 * 1024**2,
    "cuda": 3200 * 1024**2,
    "rocm": 4600 * 1024**2,
}
LIBRARIES_DOWNLOAD_BYTES = 100 * 1024**2
REQUIRED_FREE_BYTES = {
    "cpu": int(1.5 * 1024**3),
    "mps": int(1.5 * 1024**3),
    "cuda": 9 * 1024**3,
    "rocm": 14 * 1024**3,
}


class UnsupportedPlatformError(DependencyError):
    """No PyTorch build exists for this machine (Intel Mac, 32-bit, unknown system)."""


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int = 0


@dataclass(frozen=True)
class Machine:
    """What the probes found. Plain data, so a test can build any machine."""

    system: str  # platform.system(): "Windows", "Darwin", "Linux"
    arch: str  # normalised: "x86_64" or "arm64"
    nvidia_gpus: tuple[GPU, ...] = ()
    nvidia_driver: Optional[str] = None
    driver_cuda: Optional[tuple[int, int]] = None  # the newest CUDA the driver runs
    amd_gpu: bool = False
    rosetta: bool = False  # an x86_64 Python on an Apple Silicon Mac

    @property
    def platform_label(self) -> str:
        system = {"Darwin": "macOS"}.get(self.system, self.system)
        return f"{system} {self.arch}"


@dataclass(frozen=True)
class TorchBuild:
    """The torch build an install uses: where it comes from and why it was picked."""

    name: str  # one of BUILD_NAMES except "auto"
    index_url: str
    label: str  # "CUDA 12.8", "CPU", ...
    reason: str  # one sentence the plan shows
    download_bytes: int = 0
    required_free_bytes: int = 0
    detected: bool = True  # False when the user chose it
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- probes (the boundary tests fake) -------------------------------------------------

ProbeRunner = Callable[[list[str]], Optional[str]]


def run_probe(command: list[str], timeout: float = 10.0) -> Optional[str]:
    """The standard output of ``command``, or None when it is missing or fails."""
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def nvml_probe() -> Optional[dict]:
    """Driver, CUDA version and GPUs from NVIDIA's NVML library, or None without one.

    Used when ``nvidia-smi`` is not on the PATH (it usually is; NVML ships with
    every NVIDIA driver, so this catches odd installs).
    """
    candidates = (
        ["nvml.dll", os.path.expandvars(r"%WINDIR%\System32\nvml.dll")]
        if os.name == "nt"
        else ["libnvidia-ml.so.1", "libnvidia-ml.so"]
    )
    library = None
    for candidate in candidates:
        try:
            library = ctypes.CDLL(candidate)
            break
        except OSError:
            continue
    if library is None or library.nvmlInit_v2() != 0:
        return None
    try:
        version = ctypes.c_int()
        library.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(version))
        driver = ctypes.create_string_buffer(80)
        library.nvmlSystemGetDriverVersion(driver, 80)
        count = ctypes.c_uint()
        library.nvmlDeviceGetCount_v2(ctypes.byref(count))
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            library.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle))
            name = ctypes.create_string_buffer(96)
            library.nvmlDeviceGetName(handle, name, 96)
            gpus.append(GPU(name.value.decode(errors="replace")))
        return {
            "driver": driver.value.decode(errors="replace"),
            "cuda": (version.value // 1000, (version.value % 1000) // 10),
            "gpus": gpus,
        }
    finally:
        library.nvmlShutdown()


NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
]


def parse_nvidia_smi_query(text: str) -> tuple[tuple[GPU, ...], Optional[str]]:
    """GPUs and driver version from ``nvidia-smi --query-gpu=name,memory.total,driver_version``."""
    gpus, driver = [], None
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue
        memory = int(parts[1]) * 1024**2 if parts[1].isdigit() else 0
        gpus.append(GPU(parts[0], memory))
        driver = parts[2]
    return tuple(gpus), driver


def parse_driver_cuda(text: str) -> Optional[tuple[int, int]]:
    """The "CUDA Version: 12.8" of ``nvidia-smi``'s header: the newest CUDA the driver runs."""
    match = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _normalised_arch(machine: str) -> str:
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    return machine


def _linux_amd_gpu(sysfs: Path = Path("/sys/class/drm")) -> bool:
    """An AMD display device (PCI vendor 0x1002) that the amdgpu driver runs."""
    try:
        vendors = list(sysfs.glob("card*/device/vendor"))
    except OSError:
        return False
    for vendor_file in vendors:
        try:
            if vendor_file.read_text().strip().lower() == "0x1002":
                return True
        except OSError:
            continue
    return False


def probe_machine(
    *,
    system: Optional[str] = None,
    machine: Optional[str] = None,
    run: ProbeRunner = run_probe,
    nvml: Callable[[], Optional[dict]] = nvml_probe,
    amd_probe: Callable[[], bool] = _linux_amd_gpu,
) -> Machine:
    """Look at this machine: system, architecture, NVIDIA driver and GPUs, an AMD GPU."""
    system = system or platform.system()
    arch = _normalised_arch(machine or platform.machine())
    if system == "Darwin":
        rosetta = (
            arch == "x86_64"
            and (run(["sysctl", "-n", "sysctl.proc_translated"]) or "").strip() == "1"
        )
        return Machine(system, arch, rosetta=rosetta)
    gpus: tuple[GPU, ...] = ()
    driver = None
    cuda = None
    query = run(NVIDIA_SMI_QUERY)
    if query:
        gpus, driver = parse_nvidia_smi_query(query)
        cuda = parse_driver_cuda(run(["nvidia-smi"]) or "")
    if not gpus:
        found = nvml()
        if found and found.get("gpus"):
            gpus, driver, cuda = tuple(found["gpus"]), found.get("driver"), found.get("cuda")
    amd = system == "Linux" and not gpus and amd_probe()
    return Machine(system, arch, gpus, driver, cuda, amd)


# --- choosing the build -------------------------------------------------------------


def _index(name: str) -> str:
    return f"{PYTORCH_INDEX_ROOT}/{name}"


def _build(name: str, index_url: str, label: str, reason: str, detected: bool, **kw) -> TorchBuild:
    return TorchBuild(
        name,
        index_url,
        label,
        reason,
        download_bytes=TORCH_DOWNLOAD_BYTES[name],
        required_free_bytes=REQUIRED_FREE_BYTES[name],
        detected=detected,
        **kw,
    )


def check_supported(machine: Machine) -> None:
    """Raise :class:`UnsupportedPlatformError` where no torch wheel exists, before any download."""
    if machine.system == "Darwin" and machine.arch == "x86_64":
        if machine.rosetta:
            raise UnsupportedPlatformError(
                "This is the Intel build of Blender running on Apple Silicon (Rosetta): PyTorch "
                f"{TORCH_VERSION} has no Intel-Mac wheels. Install the Apple Silicon (arm64) "
                "build of Blender and run Install Dependencies there."
            )
        raise UnsupportedPlatformError(
            f"Intel Macs are not supported by PyTorch {TORCH_VERSION} (it has no wheels for "
            "macOS x86_64), so Generate can't run here. The exporters and mesh tools still work; "
            "to generate, use an Apple Silicon Mac, Windows or Linux, or a remote backend."
        )
    if (machine.system, machine.arch) not in (
        ("Windows", "x86_64"),
        ("Linux", "x86_64"),
        ("Darwin", "arm64"),
    ):
        raise UnsupportedPlatformError(
            f"PyTorch {TORCH_VERSION} as pinned here supports Windows x64, Linux x64 and macOS "
            f"on Apple Silicon; this is {machine.platform_label}."
        )


def cuda_build_for(driver_cuda: Optional[tuple[int, int]]) -> Optional[tuple[str, tuple[int, int]]]:
    """The newest CUDA build the driver can run (None: the driver is too old for all)."""
    if driver_cuda is None:
        # nvidia-smi gave no CUDA line (very old tool): the oldest build is the safest bet.
        return CUDA_BUILDS[-1]
    for name, needed in CUDA_BUILDS:
        if driver_cuda >= needed:
            return name, needed
    return None


def choose_build(machine: Machine, requested: str = "auto") -> TorchBuild:
    """The torch build for ``machine``: detected for ``"auto"``, else the user's choice.

    Raises :class:`UnsupportedPlatformError` for machines without torch wheels
    and for choices the platform can't have (ROCm on Windows, MPS on Linux).
    """
    requested = (requested or "auto").lower()
    if requested not in BUILD_NAMES:
        raise DependencyError(
            f"Unknown PyTorch build {requested!r}: choose one of {', '.join(BUILD_NAMES)}."
        )
    check_supported(machine)
    mac = machine.system == "Darwin"
    if requested == "auto":
        if mac:
            return _build(
                "mps",
                PYPI_INDEX_URL,
                "Apple GPU (MPS)",
                "Apple Silicon: the macOS wheel from PyPI runs on the GPU through Metal.",
                True,
            )
        if machine.nvidia_gpus:
            gpu = machine.nvidia_gpus[0].name
            chosen = cuda_build_for(machine.driver_cuda)
            if chosen is None:
                have = ".".join(map(str, machine.driver_cuda or ()))
                oldest = ".".join(map(str, CUDA_BUILDS[-1][1]))
                return _build(
                    "cpu",
                    _index("cpu"),
                    "CPU",
                    f"{gpu} found, but its driver supports CUDA {have} only; PyTorch "
                    f"{TORCH_VERSION} needs CUDA {oldest} or newer.",
                    True,
                    notes=("Update the NVIDIA driver, then Repair to get the GPU build.",),
                )
            name, needed = chosen
            return _build(
                "cuda",
                _index(name),
                f"CUDA {needed[0]}.{needed[1]}",
                f"{gpu} with driver {machine.nvidia_driver or '?'}: the CUDA "
                f"{needed[0]}.{needed[1]} build matches it.",
                True,
            )
        if machine.amd_gpu:
            return _build(
                "rocm", _index(ROCM_BUILD), "ROCm", "AMD GPU on Linux: the ROCm build.", True
            )
        reason = "No NVIDIA or (on Linux) AMD GPU found: the CPU build, slow but works everywhere."
        return _build("cpu", _index("cpu"), "CPU", reason, True)
    # The user's choice.
    if requested == "mps" and not mac:
        raise UnsupportedPlatformError(
            "The Apple GPU build exists only on macOS: choose CPU, CUDA or ROCm."
        )
    if mac and requested != "mps" and requested != "cpu":
        raise UnsupportedPlatformError(
            f"macOS has no {requested.upper()} build of PyTorch: choose Auto or Apple GPU."
        )
    if requested == "rocm" and machine.system != "Linux":
        raise UnsupportedPlatformError("PyTorch's ROCm (AMD GPU) build exists only for Linux.")
    if requested == "cpu":
        # On macOS the PyPI wheel is the CPU build as well (MPS is used only if asked for).
        url = PYPI_INDEX_URL if mac else _index("cpu")
        return _build("cpu", url, "CPU", "Chosen in the preferences: the CPU build.", False)
    if requested == "mps":
        return _build(
            "mps", PYPI_INDEX_URL, "Apple GPU (MPS)", "Chosen: the macOS wheel from PyPI.", False
        )
    if requested == "rocm":
        return _build("rocm", _index(ROCM_BUILD), "ROCm", "Chosen: the ROCm build.", False)
    chosen = cuda_build_for(machine.driver_cuda) if machine.nvidia_gpus else None
    name, needed = chosen or CUDA_BUILDS[1]
    notes = (
        ()
        if machine.nvidia_gpus
        else ("No NVIDIA driver found: the GPU build will run on the CPU until one is installed.",)
    )
    return _build(
        "cuda",
        _index(name),
        f"CUDA {needed[0]}.{needed[1]}",
        f"Chosen: the CUDA {needed[0]}.{needed[1]} build.",
        False,
        notes=notes,
    )


def with_index_url(build: TorchBuild, index_url: str) -> TorchBuild:
    """``build`` fetched from a user-given index instead (a mirror, a pinned CUDA version)."""
    from dataclasses import replace

    return replace(
        build,
        index_url=index_url.rstrip("/"),
        reason=build.reason + f" Index set by the user: {index_url}.",
    )
