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

import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..mesh.meshdata import MeshData
from ..mesh.placement import checked_up_axis, z_up_to_y_up
from .atomic import PathLike, atomic_write, check_target
from .geometry import checked_arrays, vertex_normals
from .metadata import generator_name, metadata_json
from .options import refuse_unknown

# Rows are formatted by one %-operation per chunk: far faster than per-row f-strings.
_CHUNK_ROWS = 65536


def write_obj(mesh: MeshData, path: PathLike, **options: Any) -> Path:
    """Write ``mesh`` as ``path`` (.obj) plus a .mtl beside it; return the .obj path.

    Options: ``up_axis`` ("Y" default, or "Z" to keep Blender's frame), ``scale``
    (float multiplied into the coordinates, default 1.0), ``normals`` (bool, default
    True), ``precision`` (decimals for coordinates, default 6), ``texture`` (a
    ``core.mesh.bake.BakedTexture`` of this mesh: writes ``vt`` rows, the PNG
    beside the .obj and ``map_Kd`` in the .mtl).
    """
    refuse_unknown(
        "write_obj", options, ("up_axis", "scale", "normals", "precision", "units", "texture")
    )
    texture = options.get("texture")
    if texture is not None:
        mesh = texture.mesh
    up_axis = checked_up_axis(options.get("up_axis", "Y"))
    scale = float(options.get("scale", 1.0))
    with_normals = bool(options.get("normals", True))
    precision = int(options.get("precision", 6))

    vertices, faces, colors = checked_arrays(mesh)
    target = check_target(path)
    mtl_path = material_path(target)
    png_path = texture_path(target)
    material = _token(mesh.name) or "material"

    positions = vertices * scale
    normals = vertex_normals(vertices, faces) if with_normals else None
    if up_axis == "Y":
        positions = z_up_to_y_up(positions)
        normals = None if normals is None else z_up_to_y_up(normals)

    with (
        atomic_write(png_path, "wb") if texture is not None else nullcontext() as png_stream,
        atomic_write(mtl_path, "w", newline="\n") as mtl_stream,
        atomic_write(target, "w", newline="\n") as stream,
    ):
        if texture is not None:
            png_stream.write(texture.png_bytes())
        mtl_stream.write(
            _mtl_text(material, generator_name(), png_path.name if texture is not None else None)
        )
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
        if texture is not None:  # OBJ's v runs up the image, glTF's (ours) down
            uv = np.asarray(texture.uvs, dtype=np.float64)
            _write_rows(stream, "vt %.6f %.6f\n", np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]))
        stream.write(f"usemtl {material}\ns off\n")
        one_based = faces + 1
        if texture is not None and normals is not None:
            _write_rows(stream, "f %d/%d/%d %d/%d/%d %d/%d/%d\n", np.repeat(one_based, 3, axis=1))
        elif texture is not None:
            _write_rows(stream, "f %d/%d %d/%d %d/%d\n", np.repeat(one_based, 2, axis=1))
        elif normals is not None:
            _write_rows(stream, "f %d//%d %d//%d %d//%d\n", np.repeat(one_based, 2, axis=1))
        else:
            _write_rows(stream, "f %d %d %d\n", one_based)
    return target


def material_path(path: PathLike) -> Path:
    """The .mtl file written beside the OBJ ``path``: its stem made safe for ``mtllib``.

    ``"a b.obj"`` gets ``a_b.mtl``; the output plan (``core/outputs.py``) asks here
    so it checks the very file the writer will replace.
    """
    target = Path(path)
    return target.with_name((_token(target.stem) or "mesh") + ".mtl")


def material_paths(path: PathLike) -> list[Path]:
    """The side files of an OBJ at ``path``, for the format registry's ``side_files``."""
    return [material_path(path)]


def texture_path(path: PathLike) -> Path:
    """The baked texture's PNG beside the OBJ ``path`` (named like its .mtl, for ``map_Kd``).

    The output plan asks here too, so an input picture of that name is never replaced.
    """
    target = Path(path)
    return target.with_name((_token(target.stem) or "mesh") + ".png")


def texture_paths(path: PathLike) -> list[Path]:
    """The texture files of an OBJ at ``path``, for the format registry's ``texture_files``."""
    return [texture_path(path)]


def _write_rows(stream, row_format: str, rows: np.ndarray) -> None:
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        stream.write((row_format * len(chunk)) % tuple(chunk.ravel().tolist()))


def _mtl_text(material: str, generator: str, texture: str | None = None) -> str:
    # Kd white: importers that multiply vertex colours by the diffuse colour keep them as is.
    return (
        f"# {generator}\n"
        f"newmtl {material}\n"
        "Ka 0.000000 0.000000 0.000000\n"
        "Kd 1.000000 1.000000 1.000000\n"
        "Ks 0.000000 0.000000 0.000000\n"
        "Ns 10.000000\n"
        "d 1.000000\n"
        "illum 1\n" + (f"map_Kd {texture}\n" if texture else "")
    )


def _token(text: str) -> str:
    """A name safe where OBJ/MTL split on whitespace (mtllib, usemtl)."""
    return re.sub(r"[\s#]+", "_", str(text)).strip("_")


def _single_line(text: str) -> str:
    """A name on one line: OBJ statements end at the newline."""
    return " ".join(str(text).split())
