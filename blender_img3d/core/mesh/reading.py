"""Read a mesh file back into :class:`MeshData` (Blender's Z-up frame), for ``export --in``.

trimesh parses the formats; this module only brings the result into our
conventions: glTF (and, by default, OBJ) are Y-up and converted to Z-up, glTF
colours are linear and converted to sRGB, several meshes in one file are joined
(``meshdata.join_meshes``),
and our own GLBs give back their name and generation settings from
``asset.extras``. Every failure is a :class:`MeshInputError` saying what to fix.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..colorspace import linear_to_srgb
from ..errors import DependencyError, MeshInputError
from .meshdata import MeshData, join_meshes
from .placement import checked_up_axis, y_up_to_z_up

log = logging.getLogger(__name__)

READ_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
# Files whose coordinates are Y-up by convention (glTF by the spec, OBJ as Blender reads it).
_Y_UP_BY_DEFAULT = {".glb": "Y", ".gltf": "Y", ".obj": "Y", ".ply": "Z", ".stl": "Z"}
_MAX_BYTES = 2 * 1024**3


def read_mesh(path: Union[str, os.PathLike], *, up_axis: Optional[str] = None) -> MeshData:
    """Load the triangle mesh in ``path`` (.glb .gltf .obj .ply .stl) as Z-up MeshData.

    ``up_axis`` ("Y" or "Z") overrides the file type's convention for OBJ, PLY and
    STL; glTF is always Y-up.
    """
    source = Path(os.fspath(path)).expanduser()
    suffix = source.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise MeshInputError(
            f"Can't read {source}: unsupported file type {suffix or '(none)'}; "
            f"use one of {', '.join(READ_SUFFIXES)}."
        )
    if not source.is_file():
        what = "is a folder" if source.is_dir() else "does not exist"
        raise MeshInputError(f"Can't read {source}: it {what}; check the path.")
    if source.stat().st_size > _MAX_BYTES:
        raise MeshInputError(f"Can't read {source}: larger than 2 GiB; decimate it first.")
    axis = (
        "Y" if suffix in (".glb", ".gltf") else checked_up_axis(up_axis or _Y_UP_BY_DEFAULT[suffix])
    )

    try:
        import trimesh
    except ImportError as error:
        raise DependencyError(
            "Reading mesh files needs the 'trimesh' package; install the add-on's dependencies."
        ) from error
    if suffix in (".glb", ".gltf"):
        from .gltf_check import check_gltf_file

        check_gltf_file(source)  # trimesh trusts offsets and lengths; refuse bad ones first
    try:
        # With materials kept, trimesh leaves glTF's COLOR_0 as floats in
        # visual.vertex_attributes (without, it rounds them to 8 bits, in linear space).
        gltf = suffix in (".glb", ".gltf")
        loaded = trimesh.load(str(source), process=False, skip_materials=not gltf)
    except Exception as error:  # trimesh raises anything from ValueError to KeyError
        raise MeshInputError(
            f"Can't read {source}: the file is damaged or not a valid {suffix[1:].upper()} "
            f"file ({type(error).__name__}: {error})."
        ) from error

    parts = _triangle_meshes(loaded, trimesh)
    if not parts:
        raise MeshInputError(f"{source} contains no triangles; nothing to export.")
    if gltf:
        for part in parts:
            if part.colors is not None:
                part.colors = linear_to_srgb(part.colors).astype(np.float32)
    joined = join_meshes(parts)
    vertices = y_up_to_z_up(joined.vertices) if axis == "Y" else joined.vertices
    name, metadata = _gltf_identity(source) if gltf else (None, {})
    name = name or source.stem
    return MeshData(vertices, joined.faces, joined.colors, name=name, metadata=metadata)


def _triangle_meshes(loaded, trimesh) -> list[MeshData]:
    """Each triangle mesh in the file, scene transforms applied.

    The scene graph is walked here rather than through ``Scene.dump()``, which
    drops the float colours kept in ``visual.vertex_attributes``.
    """
    if not isinstance(loaded, trimesh.Scene):
        instances = [(loaded, None)]
    else:
        instances = []
        for node in loaded.graph.nodes_geometry:
            transform, geometry = loaded.graph[node]
            instances.append((loaded.geometry.get(geometry), transform))
    parts = []
    for mesh, transform in instances:
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if transform is not None:
            vertices = trimesh.transform_points(vertices, transform)
            if np.linalg.det(np.asarray(transform)[:3, :3]) < 0:
                faces = faces[:, ::-1]  # a mirroring node turns the winding inside out
        parts.append(MeshData(vertices, faces, _vertex_colors(mesh)))
    return parts


def _vertex_colors(mesh) -> Optional[np.ndarray]:
    """RGB in [0, 1] per vertex, or None when the mesh has no per-vertex colours."""
    visual = mesh.visual
    exact = getattr(visual, "vertex_attributes", {}).get("color")
    if exact is not None and len(exact) == len(mesh.vertices):
        exact = np.asarray(exact)
        scale = 1.0 if exact.dtype.kind == "f" else float(np.iinfo(exact.dtype).max)
        return (exact[:, :3] / scale).astype(np.float32)
    if getattr(visual, "kind", None) != "vertex":
        return None
    rgba = np.asarray(visual.vertex_colors)
    if rgba.shape != (len(mesh.vertices), 4):
        return None
    return (rgba[:, :3] / 255.0).astype(np.float32)


def _gltf_identity(source: Path) -> tuple[Optional[str], dict[str, Any]]:
    """Name and settings that our GLB writer put into ``asset.extras`` (else None, {})."""
    try:
        raw = source.read_bytes()
        if source.suffix.lower() == ".glb":
            length, kind = struct.unpack_from("<II", raw, 12)
            if kind != 0x4E4F534A:
                return None, {}
            document = json.loads(raw[20 : 20 + length].decode("utf-8"))
        else:
            document = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, struct.error):
        return None, {}
    extras = document.get("asset", {}).get("extras")
    if not isinstance(extras, dict):
        return None, {}
    settings = extras.get("settings")
    name = extras.get("name")
    return (name if isinstance(name, str) else None), (
        settings if isinstance(settings, dict) else {}
    )
