"""Blender meshes ↔ ``MeshData`` arrays, through ``foreach_get``/``foreach_set`` only.

Per-vertex loops over bpy collections cost seconds at 200k faces; the bulk
accessors keep both directions to a few tens of milliseconds.
"""

from __future__ import annotations

from typing import Optional

import bpy
import numpy as np

from ..core.errors import MeshProcessingError
from ..core.mesh.meshdata import MeshData

COLOR_ATTRIBUTE = "Col"


def mesh_from_arrays(mesh_data: MeshData, name: Optional[str] = None) -> bpy.types.Mesh:
    """A new ``bpy.types.Mesh`` with the triangles and, if any, a point colour attribute.

    Colours are sRGB-encoded in ``MeshData``; they are written through
    ``color_srgb`` into a FLOAT_COLOR attribute, which Blender stores linear.
    """
    vertices = np.asarray(mesh_data.vertices, dtype=np.float32)
    faces = np.asarray(mesh_data.faces, dtype=np.int32)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise MeshProcessingError("Face indices point outside the vertex list; can't build a mesh.")
    mesh = bpy.data.meshes.new(name or mesh_data.name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    if mesh_data.colors is not None:
        attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
        rgba = np.ones((len(vertices), 4), dtype=np.float32)
        rgba[:, :3] = np.clip(mesh_data.colors, 0.0, 1.0)
        attribute.data.foreach_set("color_srgb", rgba.ravel())
        mesh.color_attributes.active_color = attribute
        mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.update()
    mesh.validate(clean_customdata=False)
    return mesh


def set_smooth_shading(mesh: bpy.types.Mesh, smooth: bool) -> None:
    mesh.polygons.foreach_set("use_smooth", np.full(len(mesh.polygons), smooth, dtype=bool))
    mesh.update()


def arrays_from_mesh(
    mesh: bpy.types.Mesh,
    matrix: Optional[np.ndarray] = None,
    name: Optional[str] = None,
) -> MeshData:
    """Triangulated arrays of ``mesh`` (optionally transformed by a 4×4 ``matrix``).

    Quads and n-gons are split with Blender's own loop triangles, so the result
    matches what Blender renders. Point colours (or corner colours, averaged per
    vertex) are read back sRGB-encoded.
    """
    mesh.calc_loop_triangles()
    vertex_count = len(mesh.vertices)
    vertices = np.empty(vertex_count * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", vertices)
    vertices = vertices.reshape(-1, 3).astype(np.float64)
    faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    if matrix is not None:
        matrix = np.asarray(matrix, dtype=np.float64)
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
    return MeshData(
        vertices=vertices,
        faces=faces.reshape(-1, 3),
        colors=_point_colors(mesh),
        name=name or mesh.name,
    )


def _point_colors(mesh: bpy.types.Mesh) -> Optional[np.ndarray]:
    attribute = mesh.color_attributes.active_color
    if attribute is None or len(mesh.vertices) == 0:
        return None
    values = np.empty(len(attribute.data) * 4, dtype=np.float32)
    attribute.data.foreach_get("color_srgb", values)
    values = values.reshape(-1, 4)[:, :3]
    if attribute.domain == "POINT":
        return values
    if attribute.domain == "CORNER":
        corner_vertex = np.empty(len(mesh.loops), dtype=np.int32)
        mesh.loops.foreach_get("vertex_index", corner_vertex)
        sums = np.zeros((len(mesh.vertices), 3), dtype=np.float64)
        np.add.at(sums, corner_vertex, values)
        counts = np.bincount(corner_vertex, minlength=len(mesh.vertices)).clip(min=1)
        return (sums / counts[:, None]).astype(np.float32)
    return None
