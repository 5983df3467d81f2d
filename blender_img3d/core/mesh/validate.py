"""One validation of mesh arrays before any mesh operation or exporter touches them.

The arithmetic every later step does — normals and areas (squares of
coordinates), volumes (cubes, summed over every face), welding trees, the STEP
writer's rounding to its decimals — is float64, and its highest power is the
fourth: the length of an area-weighted normal squares an area. :data:`WORKING_LIMIT`
keeps all of it finite with room to spare (1e70 to the fourth is 1e280, below
float64's 1.8e308 even summed over a million faces). A format that stores
smaller numbers narrows the range further (GLB positions are float32, at most
3.4e38 metres), and a unit scales it (1e70 mm is 1e67 m). What falls outside is refused as
:class:`MeshInputError` in one line that says which limit, by how much, and how
to get back inside (``--size``, another unit), before any byte is written or
any library (scipy's cKDTree, ezdxf, the STEP writer) can crash or write ``inf``.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from ..errors import MeshInputError
from .meshdata import MeshData

WORKING_LIMIT = 1e70
FLOAT32_MAX = float(np.finfo(np.float32).max)
# The largest number each format's files can hold for a coordinate.
FORMAT_NUMBER_MAX: dict[str, float] = {
    "glb": FLOAT32_MAX,
    "obj": sys.float_info.max,
    "dxf": sys.float_info.max,
    "step": sys.float_info.max,
}
# glTF indices are at most uint32, and 2**32 - 1 is reserved for primitive restart.
MAX_GLB_VERTICES = 2**32 - 1


def check_mesh(mesh: MeshData, action: str = "use", target: str = "") -> None:
    """Refuse arrays no step can work on: wrong shapes, NaN/inf, huge coordinates, bad indices.

    ``action`` and ``target`` complete the message ("Can't export mesh 'x' as GLB").
    An empty mesh is
    left to the caller, whose message knows why it came out empty.
    """
    label = _label(mesh) + target
    vertices, faces, colors = mesh.vertices, mesh.faces, mesh.colors
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshInputError(
            f"Can't {action} {label}: vertices must be (N, 3) and faces (M, 3) triangles, "
            f"got {vertices.shape} and {faces.shape}."
        )
    if len(vertices) == 0 or len(faces) == 0:
        return
    finite = np.isfinite(vertices)
    if not finite.all():
        bad = int((~finite.all(axis=1)).sum())
        raise MeshInputError(
            f"Can't {action} {label}: {bad} of its {len(vertices)} vertices have NaN or "
            "infinite coordinates; the mesh is corrupt: repair or regenerate it."
        )
    reach = float(np.abs(vertices).max())
    if reach > WORKING_LIMIT:
        raise MeshInputError(
            f"Can't {action} {label}: a coordinate reaches {reach:.3g} m, beyond the "
            f"{WORKING_LIMIT:.3g} m that mesh arithmetic keeps finite; scale it down "
            "(e.g. --size) first."
        )
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= len(vertices):
        raise MeshInputError(
            f"Can't {action} {label}: face indices run from {low} to {high} but there are "
            f"{len(vertices)} vertices; the mesh is corrupt."
        )
    if colors is not None and not np.isfinite(colors).all():
        raise MeshInputError(
            f"Can't {action} {label}: some vertex colours are NaN or infinite; the mesh is "
            "corrupt: repair or regenerate it."
        )


def check_for_format(mesh: MeshData, fmt: str, scale: float = 1.0, unit: str = "m") -> None:
    """:func:`check_mesh`, then the range ``fmt`` can hold with coordinates times ``scale``.

    ``scale`` converts Blender metres to the file's ``unit`` (1000 for mm).
    """
    check_mesh(mesh, "export", f" as {fmt.upper()}")
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        return
    limit = min(WORKING_LIMIT, FORMAT_NUMBER_MAX.get(fmt, sys.float_info.max))
    reach = float(np.abs(mesh.vertices).max()) * abs(float(scale))
    if reach > limit:
        why = "GLB stores float32 positions" if fmt == "glb" else "the exporter's arithmetic"
        raise MeshInputError(
            f"Can't export {_label(mesh)} as {fmt.upper()}: a coordinate reaches {reach:.3g} "
            f"{unit}, beyond the {limit:.3g} {unit} {why} can hold; scale the mesh down "
            f"(e.g. --size){'' if fmt == 'glb' else ' or choose a larger unit'}."
        )
    if fmt == "glb" and len(mesh.vertices) > MAX_GLB_VERTICES:
        raise MeshInputError(
            f"Can't export {_label(mesh)} as GLB: {len(mesh.vertices)} vertices are more than "
            "32-bit indices address; decimate it (--target-faces)."
        )


def _label(mesh: Optional[MeshData]) -> str:
    name = getattr(mesh, "name", None)
    return f"mesh {name!r}" if name else "the mesh"
