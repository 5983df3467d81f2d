"""Blender's own OBJ importer reads our OBJ: same counts, same place, same vertex colours."""

from __future__ import annotations

import numpy as np
import pytest

from blender_img3d.core.exporters.obj import write_obj
from tests.fixtures.meshes import icosphere, torus

bpy = pytest.importorskip("bpy")


def import_obj(path, **axes):
    before = set(bpy.data.objects)
    assert bpy.ops.wm.obj_import(filepath=str(path), **axes) == {"FINISHED"}
    (obj,) = set(bpy.data.objects) - before
    return obj


def mesh_arrays(obj):
    """World-space vertices and triangles: the importer puts the axis swap in the object's
    rotation, so the world matrix is applied before comparing."""
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", vertices)
    assert all(p.loop_total == 3 for p in mesh.polygons)
    loops = np.empty(len(mesh.loops), dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", loops)
    world = np.array(obj.matrix_world)
    vertices = vertices.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    return vertices, loops.reshape(-1, 3)


def srgb_colors(obj):
    """The imported colour attribute as sRGB values per vertex."""
    mesh = obj.data
    (attribute,) = mesh.color_attributes
    assert attribute.domain == "POINT"
    values = np.empty(len(mesh.vertices) * 4, dtype=np.float32)
    attribute.data.foreach_get("color_srgb", values)
    return values.reshape(-1, 4)[:, :3]


@pytest.mark.parametrize(
    "mesh, up_axis, axes",
    [
        (torus(colors=True), "Y", {}),  # Blender's defaults: forward -Z, up Y
        (icosphere(3, colors=True), "Z", {"forward_axis": "Y", "up_axis": "Z"}),
    ],
    ids=["y-up-defaults", "z-up"],
)
def test_blender_imports_same_mesh_and_colours(tmp_path, mesh, up_axis, axes):
    path = write_obj(mesh, tmp_path / "part.obj", up_axis=up_axis)
    obj = import_obj(path, **axes)
    vertices, faces = mesh_arrays(obj)
    assert (len(vertices), len(faces)) == (mesh.vertex_count, mesh.face_count)
    # The importer keeps vertex and face order, so corners compare one to one.
    np.testing.assert_allclose(vertices[faces], mesh.vertices[mesh.faces], atol=2e-6)
    # v x y z r g b is read as sRGB into a float (linear) colour attribute.
    np.testing.assert_allclose(srgb_colors(obj), mesh.colors, atol=1e-3)
    assert obj.data.color_attributes[0].data_type == "FLOAT_COLOR"
