"""Every closed set of names a user can pick from, defined once with its labels.

The core validates against these names, the CLI offers them as ``choices``, and
the Blender layer builds its ``EnumProperty`` items from them, storing the core
names themselves as identifiers (``"shap-e"``, not ``"SHAP_E"``), so a value
never needs translating on its way between the panel, a script and the core.

Schedules are read from the sampler registry (``core.shap_e.schedules``), next
to the code that samples them. Export formats and CAD units are not here: their
one list is the exporter registry (``core.exporters``) and
``core.exporters.units``, next to the code that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shap_e import schedules as _schedules


@dataclass(frozen=True)
class Choice:
    """One option: the core's name, a short label for menus, a one-line description."""

    name: str
    label: str
    description: str


def names(choices: tuple[Choice, ...]) -> tuple[str, ...]:
    """The core names of ``choices``, in menu order (the first is the default)."""
    return tuple(choice.name for choice in choices)


MODES = (
    Choice("image", "Image", "Generate from a picture of one object"),
    Choice("text", "Text", "Generate from a text prompt"),
)

# The sampler registry is the one list of schedules (its module imports no torch).
SCHEDULES = tuple(Choice(s.name, s.label, s.description) for s in _schedules.registered())

DEVICES = (
    Choice("auto", "Auto", "CUDA if available, else Apple MPS, else the CPU"),
    Choice("cpu", "CPU", "Run on the processor (slow but always available)"),
    Choice("cuda", "CUDA", "Run on an NVIDIA GPU"),
    Choice("mps", "MPS", "Run on Apple Silicon's GPU"),
)

DTYPES = (
    Choice(
        "auto",
        "Auto",
        "Float16 on CUDA; bfloat16 on a CPU measured to have native bf16; else float32",
    ),
    Choice("float32", "Float32", "Full precision (slowest, the reference's CPU numerics)"),
    Choice("float16", "Float16", "Half precision (GPUs)"),
    Choice("bfloat16", "BFloat16", "Brain float (GPUs and CPUs with native bf16)"),
    Choice(
        "autocast",
        "Autocast",
        "Float32 weights, half-precision products: the reference's own GPU numerics",
    ),
)

SDF_METHODS = (
    Choice("adaptive", "Adaptive", "Coarse grid first, full resolution only near the surface"),
    Choice("dense", "Dense", "Every grid point (slower; the reference's way)"),
)

# How a picture's background is removed (core/images/background.py); the first is the default.
BACKGROUNDS = (
    Choice(
        "auto",
        "Auto",
        "The picture's transparency, else the learned remover if downloaded, else the offline "
        "remover when it is confident; otherwise the picture is kept",
    ),
    Choice(
        "learned",
        "Learned",
        "A salient-object model (BiRefNet lite, MIT), downloaded once with your consent",
    ),
    Choice(
        "classic",
        "Offline",
        "The built-in remover (plain backgrounds, then a saliency cut), kept only when confident",
    ),
    Choice("keep", "Keep", "Leave the background: the whole picture goes to the model"),
)
