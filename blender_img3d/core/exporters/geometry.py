"""Array work every writer shares: input checks and normals (axes: ``mesh.placement``;
colour spaces: ``core.colorspace``).

Kept apart from the writers so each format module holds only its format.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ExportError
from ..mesh.meshdata import MeshData


def checked_arrays(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Vertices, faces and colours of ``mesh`` after the checks no file format can do without.

    Raises :class:`ExportError` for an empty mesh, non-finite coordinates or face
    indices outside the vertex array: writing those would give a broken file.
    """
    vertices, faces, colors = mesh.vertices, mesh.faces, mesh.colors
    if len(faces) == 0 or len(vertices) == 0:
        raise ExportError(
            f"Mesh {mesh.name!r} has no faces: there is nothing to export. "
            "Check the generation settings: a failed decode or a very low grid size gives "
            "empty meshes."
        )
    if not np.isfinite(vertices).all():
        raise ExportError(
            f"Mesh {mesh.name!r} has vertices with NaN or infinite coordinates; "
            "repair or regenerate it before exporting."
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ExportError(
            f"Mesh {mesh.name!r} has faces that point past its {len(vertices)} vertices; "
            "the mesh is corrupt."
        )
    if colors is not None:
        colors = np.clip(np.nan_to_num(colors, nan=0.0), 0.0, 1.0).astype(np.float32)
    return vertices, faces, colors


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = twice the triangle's area)."""
    corners = vertices[faces]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals, area-weighted from the faces around each vertex.

    A vertex whose faces cancel out or that no face uses gets +Z (Blender frame):
    some unit vector is required by glTF, and any is as good as another there.
    """
    weighted = face_normals(vertices, faces)
    corner_owner = faces.ravel()
    normals = np.stack(
        [
            np.bincount(corner_owner, np.repeat(weighted[:, axis], 3), minlength=len(vertices))
            for axis in range(3)
        ],
        axis=1,
    )
    length = np.linalg.norm(normals, axis=1)
    bad = ~(length > 1e-30)
    normals[bad] = (0.0, 0.0, 1.0)
    length[bad] = 1.0
    return normals / length[:, None]
