"""Frames and placement: Shap-E's frame to Blender's, rotation, scale, origin, up axes.

Coordinate frames (see :data:`SHAP_E_TO_BLENDER`): Shap-E's world frame is
already Blender's (right-handed, +Z up, front toward -Y), so the mapping is the
identity; it is kept as an explicit, tested matrix so the reasoning lives in one
place. Files in Y-up conventions (glTF, OBJ as Blender reads it) meet the
product's Z-up frame through :func:`z_up_to_y_up` / :func:`y_up_to_z_up`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ExportError, MeshProcessingError
from .meshdata import MeshData
from .topology import checks_mesh

UP_AXES = ("Y", "Z")

# Shap-E world frame → Blender world frame, applied as ``v_blender = M @ v_shap_e``.
#
# Why the identity:
# * Up axis. Shap-E's training views were rendered in Blender itself
#   (shap_e/rendering/blender/blender_script.py): assets imported into a Blender
#   scene (so already Z-up) and camera poses written straight from the camera's
#   ``matrix_world``. The SDF is queried on a grid whose index (i, j, k) is
#   (x, y, z) in that frame (``volume_query_points``), so decoded vertices are in
#   Blender's frame. ``create_pan_cameras`` in shap_e/util/notebooks.py agrees:
#   it orbits the z axis with image-up along +z. diffusers' docs rotate the mesh
#   -90° about X before writing a GLB precisely because glTF is Y-up and this
#   frame is Z-up: the inverse of what Blender's glTF importer does.
# * Front. The first pan camera (theta = 0) sits at -y looking toward +y with
#   image-right along +x: exactly Blender's Front view (numpad 1). The training
#   assets were glTF/OBJ files whose front faces +Z (glTF's convention), which
#   Blender's importers map to -Y. So a generated object's front faces -Y and
#   needs no turn about Z for Blender's Front view to show it.
SHAP_E_TO_BLENDER = np.eye(3)


def apply_rotation(mesh: MeshData, matrix: np.ndarray) -> MeshData:
    """Rotate vertices by a proper rotation matrix (orthonormal, det +1) about the origin."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if (
        matrix.shape != (3, 3)
        or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-9)
        or not np.isclose(np.linalg.det(matrix), 1.0)
    ):
        raise MeshProcessingError(
            "The frame change must be a proper rotation (orthonormal, determinant +1): "
            "a mirror would turn the mesh inside out."
        )
    return mesh.replaced(vertices=mesh.vertices @ matrix.T)


@checks_mesh("reorient")
def shap_e_to_blender(mesh: MeshData) -> MeshData:
    """Map a mesh from Shap-E's world frame to Blender's (see :data:`SHAP_E_TO_BLENDER`)."""
    return apply_rotation(mesh, SHAP_E_TO_BLENDER)


@checks_mesh("scale")
def scale_to_size(mesh: MeshData, size: float) -> MeshData:
    """Scale uniformly about the bounding-box centre so the longest side is ``size``."""
    if not np.isfinite(size) or size <= 0:
        raise MeshProcessingError(f"Target size must be a positive number, got {size}.")
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    longest = float((hi - lo).max())
    if longest <= 0:
        raise MeshProcessingError("Can't scale a mesh whose vertices all sit at one point.")
    centre = (lo + hi) / 2
    return mesh.replaced(vertices=(mesh.vertices - centre) * (size / longest) + centre)


@checks_mesh("place")
def origin_to_bottom_center(mesh: MeshData) -> MeshData:
    """Translate so the bounding box is centred on x and y and rests on z = 0.

    In Blender the object's origin then sits under its middle on the floor, so it
    lands standing on the 3D cursor.
    """
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return mesh.replaced(vertices=mesh.vertices - anchor)


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
