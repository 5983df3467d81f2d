"""Array work every writer shares: input checks, axis swaps, normals and colour spaces.

Kept apart from the writers so each format module holds only its format.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ExportError
from ..mesh.meshdata import MeshData

UP_AXES = ("Y", "Z")


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


def z_up_to_y_up(vertices: np.ndarray) -> np.ndarray:
    """Blender's Z-up frame to the Y-up frame of glTF and OBJ: (x, y, z) -> (x, z, -y)."""
    return np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1)


def y_up_to_z_up(vertices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`z_up_to_y_up`: (x, y, z) -> (x, -z, y)."""
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)


def checked_up_axis(up_axis: str) -> str:
    """``"Y"`` or ``"Z"`` from any case, or :class:`ExportError`."""
    axis = str(up_axis).upper()
    if axis not in UP_AXES:
        raise ExportError(f"up_axis must be 'Y' or 'Z', got {up_axis!r}.")
    return axis


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


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1 transfer function)."""
    c = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(colors: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] to sRGB encoding (inverse of :func:`srgb_to_linear`)."""
    c = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)
