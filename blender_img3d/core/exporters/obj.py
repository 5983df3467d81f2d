"""Wavefront OBJ writer with vertex colours (``v x y z r g b``), normals and an MTL file.

OBJ has no up axis or unit field. We follow Blender's OBJ exporter: Y-up by
default ((x, y, z) -> (x, z, -y), undone by its importer's defaults) and
coordinates in Blender units (metres) unless ``scale`` says otherwise. Colours
stay sRGB-encoded, as the ``v x y z r g b`` extension (MeshLab, Blender) expects.
The .obj and its .mtl are each written atomically; both temporary files are
complete before either is renamed, so a failed write (a full disk, say) leaves
both previous files as they were.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..mesh.meshdata import MeshData
from ..mesh.placement import checked_up_axis, z_up_to_y_up
from .atomic import PathLike, atomic_write, check_target
from .geometry import checked_arrays, vertex_normals
from .metadata import generator_name, metadata_json
from .options import refuse_unknown

log = logging.getLogger(__name__)

# Rows are formatted by one %-operation per chunk: far faster than per-row f-strings.
_CHUNK_ROWS = 65536


def write_obj(mesh: MeshData, path: PathLike, **options: Any) -> Path:
    """Write ``mesh`` as ``path`` (.obj) plus a .mtl beside it; return the .obj path.

    Options: ``up_axis`` ("Y" default, or "Z" to keep Blender's frame), ``scale``
    (float multiplied into the coordinates, default 1.0), ``normals`` (bool, default
    True), ``precision`` (decimals for coordinates, default 6).
    """
    refuse_unknown("write_obj", options, ("up_axis", "scale", "normals", "precision", "units"))
    up_axis = checked_up_axis(options.get("up_axis", "Y"))
    scale = float(options.get("scale", 1.0))
    with_normals = bool(options.get("normals", True))
    precision = int(options.get("precision", 6))

    vertices, faces, colors = checked_arrays(mesh)
    target = check_target(path)
    mtl_path = target.with_name((_token(target.stem) or "mesh") + ".mtl")
    material = _token(mesh.name) or "material"

    positions = vertices * scale
    normals = vertex_normals(vertices, faces) if with_normals else None
    if up_axis == "Y":
        positions = z_up_to_y_up(positions)
        normals = None if normals is None else z_up_to_y_up(normals)

    with (
        atomic_write(mtl_path, "w", newline="\n") as mtl_stream,
        atomic_write(target, "w", newline="\n") as stream,
    ):
        mtl_stream.write(_mtl_text(material, generator_name()))
        stream.write(f"# {generator_name()}\n")
        stream.write(f"# settings: {metadata_json(mesh.metadata)}\n")
        stream.write(f"# up axis: {up_axis}, units: Blender units x {scale:g}\n")
        stream.write(f"mtllib {mtl_path.name}\n")
        stream.write(f"o {_single_line(mesh.name) or 'img3d'}\n")
        coord = f"%.{precision}f"
        if colors is not None:
            _write_rows(
                stream,
                f"v {coord} {coord} {coord} %.4f %.4f %.4f\n",
                np.hstack([positions, colors]),
            )
        else:
            _write_rows(stream, f"v {coord} {coord} {coord}\n", positions)
        if normals is not None:
            _write_rows(stream, "vn %.6f %.6f %.6f\n", normals)
        stream.write(f"usemtl {material}\ns off\n")
        one_based = faces + 1
        if normals is not None:
            _write_rows(stream, "f %d//%d %d//%d %d//%d\n", np.repeat(one_based, 2, axis=1))
        else:
            _write_rows(stream, "f %d %d %d\n", one_based)
    return target


def _write_rows(stream, row_format: str, rows: np.ndarray) -> None:
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        stream.write((row_format * len(chunk)) % tuple(chunk.ravel().tolist()))


def _mtl_text(material: str, generator: str) -> str:
    # Kd white: importers that multiply vertex colours by the diffuse colour keep them as is.
    return (
        f"# {generator}\n"
        f"newmtl {material}\n"
        "Ka 0.000000 0.000000 0.000000\n"
        "Kd 1.000000 1.000000 1.000000\n"
        "Ks 0.000000 0.000000 0.000000\n"
        "Ns 10.000000\n"
        "d 1.000000\n"
        "illum 1\n"
    )


def _token(text: str) -> str:
    """A name safe where OBJ/MTL split on whitespace (mtllib, usemtl)."""
    return re.sub(r"[\s#]+", "_", str(text)).strip("_")


def _single_line(text: str) -> str:
    """A name on one line: OBJ statements end at the newline."""
    return " ".join(str(text).split())
