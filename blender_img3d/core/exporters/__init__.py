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
from .obj import write_obj
from .step import write_step

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
    to the writer (see each ``write_<fmt>``).
    """
    name = (fmt or format_for_path(path)).lower()
    name = "step" if name == "stp" else name
    if name not in WRITERS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(WRITERS)}.")
    if name in UNIT_FORMATS:
        options["units"] = units
    return WRITERS[name](mesh, path, **options)


__all__ = ["SUFFIXES", "WRITERS", "Writer", "export_mesh", "format_for_path"]
