"""Which precision "auto" means on this machine: read the CPU's features, then measure.

bfloat16 halves the prior's memory traffic and, on a CPU with native bf16
arithmetic (x86 AVX512-BF16 or AMX, Arm's BF16 extension), runs its matrix
products two to several times faster than float32. Without it torch emulates
bf16 and is *slower* than float32, and torch 2.13 has no public flag saying
which case holds. So "auto" on the CPU is decided in two steps, once per
process: the CPU's feature flags, read the way each OS exposes them, must
announce native bf16; then a short probe matmul of the prior's shape must
actually run faster in bf16 than in float32. Either "no" keeps float32, whose
results equal the reference samplers bit for bit.

On CUDA "auto" is float16 (what the product we replace ran); on MPS float32.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

# Flags that mean native bf16 arithmetic, as Linux names them in /proc/cpuinfo
# (x86: AVX512-BF16, AMX-BF16; Arm: the BF16 extension).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# bf16 must beat float32 by this much on the probe: less is not worth its rounding.
MIN_PROBE_SPEEDUP = 1.25
# The probe: one of the prior's (2 x 1024 tokens, 1024) x (1024, 1024) products.
_PROBE_SHAPE = (2048, 1024, 1024)
_PROBE_REPEATS = 3


@dataclass
class CpuPrecision:
    """What the run-time check found (reported by ``info`` and the benchmarks)."""

    dtype: str  # "bfloat16" or "float32"
    flags: list[str] = field(default_factory=list)  # native-bf16 flags the CPU announces
    source: str = ""  # where the flags came from
    probe_speedup: Optional[float] = None  # float32 time / bf16 time; None: not probed
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "flags": self.flags,
            "source": self.source,
            "probe_speedup": self.probe_speedup,
            "reason": self.reason,
        }


def cpu_flags() -> tuple[set[str], str]:
    """The CPU's feature flags (lower case) and where they were read; empty if unknown.

    Linux: ``/proc/cpuinfo`` ("flags" on x86, "Features" on Arm). macOS:
    ``sysctl`` (``machdep.cpu.*features`` on Intel, ``hw.optional.arm.FEAT_BF16``
    on Apple silicon). Windows exposes no bf16 bit to a Python process without a
    CPUID helper, so the flags stay unknown there and the probe alone decides.
    """
    system = platform.system()
    if system == "Linux":
        return _linux_flags(Path("/proc/cpuinfo")), "/proc/cpuinfo"
    if system == "Darwin":
        return _mac_flags(), "sysctl"
    return set(), ""


def _linux_flags(path: Path) -> set[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    return parse_cpuinfo(text)


def parse_cpuinfo(text: str) -> set[str]:
    """Flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return {flag.lower() for flag in value.split()}
    return set()


def _mac_flags() -> set[str]:
    flags: set[str] = set()
    for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
        flags |= {f.lower().replace(".", "_") for f in _sysctl(key).split()}
    if _sysctl("hw.optional.arm.FEAT_BF16").strip() == "1":
        flags.add("bf16")
    return flags


def _sysctl(key: str) -> str:
    try:
        done = subprocess.run(
            ["sysctl", "-n", key], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def probe_speedup(shape: tuple[int, int, int] = _PROBE_SHAPE) -> float:
    """float32 time / bfloat16 time of one matmul of ``shape`` (best of a few), on the CPU."""
    import torch

    m, k, n = shape
    generator = torch.Generator("cpu").manual_seed(0)
    a = torch.randn(m, k, generator=generator)
    b = torch.randn(k, n, generator=generator)
    times = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            torch.mm(x, y)  # warm-up: first calls pick kernels and allocate
            best = float("inf")
            for _ in range(_PROBE_REPEATS):
                started = time.perf_counter()
                torch.mm(x, y)
                best = min(best, time.perf_counter() - started)
            times[dtype] = best
    return times[torch.float32] / max(times[torch.bfloat16], 1e-9)


@functools.lru_cache(maxsize=1)
def cpu_precision() -> CpuPrecision:
    """Decide (once per process) what "auto" means on the CPU; see the module docstring."""
    flags, source = cpu_flags()
    native = sorted(flags & NATIVE_BF16_FLAGS)
    if source and not native:
        return CpuPrecision(
            "float32", [], source, None, "the CPU announces no native bf16 (emulated: slower)"
        )
    speedup = probe_speedup()
    if speedup >= MIN_PROBE_SPEEDUP:
        reason = f"native bf16, probe matmul {speedup:.2f}x faster than float32"
        result = CpuPrecision("bfloat16", native, source, round(speedup, 3), reason)
    else:
        reason = f"probe matmul only {speedup:.2f}x float32's speed in bf16"
        result = CpuPrecision("float32", native, source, round(speedup, 3), reason)
    logger.info("CPU precision for dtype 'auto': %s (%s)", result.dtype, reason)
    return result


def auto_dtype_name(device_type: str) -> str:
    """The dtype name "auto" resolves to on a device of ``device_type``."""
    if device_type == "cuda":
        return "float16"
    if device_type == "cpu":
        return cpu_precision().dtype
    return "float32"


def machine_facts() -> dict[str, Any]:
    """CPU model, core count and bf16-related flags, for reports and benchmark tables."""
    import os

    flags, source = cpu_flags()
    interesting = sorted(
        f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "bf16")
    )
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "flags": interesting,
        "flags_source": source,
    }


def _cpu_model() -> str:
    if platform.system() == "Linux":
        try:
            for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
                if line.lower().startswith("model name"):
                    return line.partition(":")[2].strip()
        except OSError:
            pass
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string").strip() or platform.processor()
    return platform.processor() or platform.machine()
