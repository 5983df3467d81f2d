"""Length units the CAD writers can declare, and how far each is from Blender's metre.

Blender's scene unit is the metre; CAD files state their unit explicitly (DXF
``$INSUNITS``, STEP ``SI_UNIT``/``CONVERSION_BASED_UNIT``), so the writers scale
the coordinates and declare the unit they wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import ExportError


@dataclass(frozen=True)
class LengthUnit:
    """One length unit: its scale from metres and its names in DXF and STEP."""

    name: str
    label: str  # plural, as menus show it: "Millimetres"
    per_metre: float  # coordinates in this unit = metres * per_metre
    dxf_insunits: int  # DXF $INSUNITS code
    step_si_prefix: Optional[str]  # ".MILLI." etc. for SI units; None for the metre itself
    step_conversion_mm: float = 0.0  # non-SI units: their size in mm (CONVERSION_BASED_UNIT)


UNITS: dict[str, LengthUnit] = {
    "mm": LengthUnit("mm", "Millimetres", 1000.0, 4, ".MILLI."),
    "cm": LengthUnit("cm", "Centimetres", 100.0, 5, ".CENTI."),
    "m": LengthUnit("m", "Metres", 1.0, 6, None),
    "in": LengthUnit("in", "Inches", 1000.0 / 25.4, 1, None, step_conversion_mm=25.4),
    "ft": LengthUnit("ft", "Feet", 1000.0 / 304.8, 2, None, step_conversion_mm=304.8),
}
# What CAD files are written in unless the user says otherwise.
DEFAULT_UNIT = "mm"


def length_unit(name: str) -> LengthUnit:
    """Look up a unit by name (``mm``, ``cm``, ``m``, ``in``, ``ft``) or raise ExportError."""
    key = str(name).strip().lower()
    aliases = {"millimetre": "mm", "centimetre": "cm", "metre": "m", "inch": "in", "foot": "ft"}
    key = aliases.get(key, key)
    if key not in UNITS:
        raise ExportError(f"Unknown length unit {name!r}: use one of {', '.join(UNITS)}.")
    return UNITS[key]
