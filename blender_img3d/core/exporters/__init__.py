"""Mesh file writers behind one registry: format name -> ``write_<fmt>(mesh, path, **options)``.

Every writer checks the mesh, converts axes/units/colour spaces as its format
requires and writes through :func:`.atomic.atomic_write`, so a failed export
never leaves a half-written file. No bpy here: the Blender operators, the CLI and
scripts all call :func:`export_mesh`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..errors import ExportError
from ..mesh.meshdata import MeshData
from .dxf import write_dxf
from .glb import write_glb
from .obj import material_path, write_obj
from .step import write_step
from .units import length_unit

Writer = Callable[..., Path]

WRITERS: dict[str, Writer] = {
    "glb": write_glb,
    "obj": write_obj,
    "dxf": write_dxf,
    "step": write_step,
}

# File suffix -> format name.
SUFFIXES: dict[str, str] = {
    ".glb": "glb",
    ".obj": "obj",
    ".dxf": "dxf",
    ".step": "step",
    ".stp": "step",
}

# Files a writer puts beside its output, by format: path -> side-file paths.
SIDE_FILES: dict[str, Callable[[Path], list[Path]]] = {
    "obj": lambda path: [material_path(path)],
}

# Formats that declare a length unit and so take ``units``; glTF is metres by
# definition and OBJ has no unit field, so both keep Blender's metres.
UNIT_FORMATS = frozenset({"dxf", "step"})


def format_for_path(path: Union[str, os.PathLike]) -> str:
    """The format name for ``path``'s suffix (``.stp`` -> ``"step"``), or ExportError."""
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix not in SUFFIXES:
        raise ExportError(
            f"Can't tell the format of {os.fspath(path)!r} from its suffix {suffix or '(none)'}: "
            f"use one of {', '.join(SUFFIXES)}."
        )
    return SUFFIXES[suffix]


def export_mesh(
    mesh: MeshData,
    path: Union[str, os.PathLike],
    fmt: Optional[str] = None,
    *,
    units: str = "mm",
    **options: Any,
) -> Path:
    """Write ``mesh`` to ``path`` as ``fmt`` (default: from the suffix); return the path.

    ``units`` applies to the formats that declare one (DXF, STEP); other options go
    to the writer (see each ``write_<fmt>``). The arrays are validated first
    (:func:`check_exportable`): a mesh no file of that format can hold is a
    :class:`~..errors.MeshInputError` and nothing is written.
    """
    name = check_exportable(mesh, path, fmt, units=units, scale=options.get("scale", 1.0))
    if name in UNIT_FORMATS:
        options["units"] = units
    return WRITERS[name](mesh, path, **options)


def check_exportable(
    mesh: MeshData,
    path: Union[str, os.PathLike],
    fmt: Optional[str] = None,
    *,
    units: str = "mm",
    scale: float = 1.0,
) -> str:
    """The format name for ``path``/``fmt`` once ``mesh`` is known to fit it (else an error).

    Callers writing several files run this for all of them first, so a mesh that
    fits GLB but not STEP is refused before the GLB is written.
    """
    from ..mesh.validate import check_for_format

    name = (fmt or format_for_path(path)).lower()
    name = "step" if name == "stp" else name
    if name not in WRITERS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(WRITERS)}.")
    if name in UNIT_FORMATS:
        unit = length_unit(units)
        check_for_format(mesh, name, unit.per_metre, unit.name)
    else:
        check_for_format(mesh, name, float(scale))
    return name


def side_files(path: Union[str, os.PathLike]) -> list[Path]:
    """The extra files written with ``path`` (an OBJ's .mtl), so callers can check them too."""
    return SIDE_FILES.get(format_for_path(path), lambda _: [])(Path(os.fspath(path)))


__all__ = [
    "SIDE_FILES",
    "SUFFIXES",
    "WRITERS",
    "side_files",
    "Writer",
    "export_mesh",
    "format_for_path",
]
