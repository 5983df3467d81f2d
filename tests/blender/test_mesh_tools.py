"""Mesh tools and the quality report on the active object: results, undo, what is kept."""

from __future__ import annotations

import json
import sys

import bpy
import numpy as np
import pytest

from tests.fixtures.meshes import cube

TOOLS = ("mesh_clean", "mesh_decimate", "mesh_smooth", "quality_report")


def add_noisy_sphere(subdivisions: int = 5, noise: float = 0.02) -> bpy.types.Object:
    """An icosphere (Blender counts the plain icosahedron as 1: 5120 triangles at 5) with
    seeded radial noise, and no UV map (the tools would refuse to drop one)."""
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=subdivisions, radius=1.0, calc_uvs=False)
    obj = bpy.context.active_object
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    radius = 1.0 + np.random.default_rng(7).normal(0.0, noise, len(co))
    co = co / np.linalg.norm(co, axis=1, keepdims=True) * radius[:, None]
    mesh.vertices.foreach_set("co", co.astype(np.float32).ravel())
    mesh.update()
    return obj


def radii(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    return np.linalg.norm(co.reshape(-1, 3), axis=1)


def test_every_tool_declares_undo(installed_extension):
    module = sys.modules[f"{installed_extension}.blender.operators.mesh_tools"]
    for cls in module.CLASSES:
        assert {"REGISTER", "UNDO"} <= cls.bl_options, cls.__name__


def test_decimate_reaches_the_target_and_undo_restores_the_mesh():
    obj = add_noisy_sphere()
    material = bpy.data.materials.new("Clay")
    obj.data.materials.append(material)
    obj.location = (1.0, 2.0, 3.0)
    mesh_name = obj.data.name
    faces_before = len(obj.data.polygons)
    assert faces_before == 5120
    bpy.ops.ed.undo_push(message="before decimate")
    assert bpy.ops.img3d.mesh_decimate(target_faces=1000) == {"FINISHED"}
    # In the UI Blender pushes the undo step of an UNDO operator itself; the bpy
    # module called from a script does not, so push it as the UI would.
    bpy.ops.ed.undo_push(message="Decimate")
    obj = bpy.data.objects["Icosphere"]
    assert 950 <= len(obj.data.polygons) <= 1000
    assert (obj.data.name, obj.data.materials[0].name) == (mesh_name, "Clay")
    assert tuple(obj.location) == (1.0, 2.0, 3.0)
    assert radii(obj).mean() == pytest.approx(1.0, abs=0.02)  # the shape survived
    assert bpy.ops.ed.undo() == {"FINISHED"}
    restored = bpy.data.objects["Icosphere"]
    assert len(restored.data.polygons) == faces_before
    assert restored.data.name == mesh_name


def test_decimate_above_the_face_count_leaves_the_mesh_alone():
    obj = add_noisy_sphere(subdivisions=2)  # 80 faces
    mesh = obj.data
    assert bpy.ops.img3d.mesh_decimate(target_faces=5000) == {"FINISHED"}
    assert obj.data == mesh and len(mesh.polygons) == 80  # not even rewritten


def test_smooth_reduces_the_noise_without_shrinking(installed_extension):
    obj = add_noisy_sphere(subdivisions=4)
    before = radii(obj)
    assert bpy.ops.img3d.mesh_smooth(iterations=10) == {"FINISHED"}
    after = radii(bpy.context.active_object)
    assert after.std() < before.std() / 2
    assert after.mean() == pytest.approx(before.mean(), rel=0.02)


def test_clean_welds_split_faces_into_a_watertight_mesh(installed_extension):
    arrays = sys.modules[f"{installed_extension}.blender.mesh_arrays"]
    meshdata = sys.modules[f"{installed_extension}.core.mesh.meshdata"]
    solid = cube()
    # Every triangle with its own three vertices: 36 vertices, no shared edge.
    split = meshdata.MeshData(solid.vertices[solid.faces.ravel()], np.arange(36).reshape(-1, 3))
    mesh = arrays.mesh_from_arrays(split, name="Split")
    obj = bpy.data.objects.new("Split", mesh)
    bpy.context.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    assert len(obj.data.vertices) == 36
    assert bpy.ops.img3d.mesh_clean() == {"FINISHED"}
    assert (len(obj.data.vertices), len(obj.data.polygons)) == (8, 12)
    assert bpy.ops.img3d.quality_report() == {"FINISHED"}
    report = json.loads(obj["img3d_metrics"])
    assert report["watertight"] and report["volume"] == pytest.approx(1.0)


def test_quality_report_is_stored_on_the_object_and_dropped_after_an_edit(installed_extension):
    bpy.ops.mesh.primitive_cube_add(size=2.0, calc_uvs=False)
    obj = bpy.context.active_object
    obj.scale = (2.0, 1.0, 1.0)
    assert bpy.ops.img3d.quality_report() == {"FINISHED"}
    report = json.loads(obj["img3d_metrics"])
    assert (report["faces"], report["vertices"], report["components"]) == (12, 8, 1)
    assert report["watertight"] and report["boundary_edges"] == 0
    assert report["volume"] == pytest.approx(16.0)  # measured in world space
    tools = sys.modules[f"{installed_extension}.blender.operators.mesh_tools"]
    assert tools.stored_report(obj)["faces"] == 12
    bpy.ops.img3d.mesh_smooth(iterations=1)
    assert "img3d_metrics" not in obj  # the report described the old mesh


def test_tools_refuse_without_an_active_mesh_or_in_edit_mode():
    bpy.ops.object.select_all(action="DESELECT")
    bpy.context.view_layer.objects.active = None
    for tool in TOOLS:
        with pytest.raises(RuntimeError, match="poll"):
            getattr(bpy.ops.img3d, tool)()
    bpy.ops.mesh.primitive_cube_add()
    bpy.ops.object.mode_set(mode="EDIT")
    assert not bpy.ops.img3d.mesh_decimate.poll()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bpy.ops.img3d.mesh_decimate.poll()


def test_quality_panel_shows_the_key_numbers_of_the_stored_report():
    from types import SimpleNamespace

    from tests.blender.ui_layout import RecordingLayout

    bpy.ops.mesh.primitive_cube_add(size=2.0, calc_uvs=False)
    layout = RecordingLayout()
    bpy.types.IMG3D_PT_quality.draw(SimpleNamespace(layout=layout), bpy.context)
    assert "No report for the active object yet" in layout.texts("label")
    bpy.ops.img3d.quality_report()
    layout = RecordingLayout()
    bpy.types.IMG3D_PT_quality.draw(SimpleNamespace(layout=layout), bpy.context)
    labels = layout.texts("label")
    assert labels[labels.index("Faces") + 1] == "12"
    assert labels[labels.index("Watertight") + 1] == "yes"
    assert labels[labels.index("Volume") + 1] == "8"
    tools = RecordingLayout()
    bpy.types.IMG3D_PT_mesh_tools.draw(SimpleNamespace(layout=tools), bpy.context)
    assert {"img3d.mesh_clean", "img3d.mesh_decimate", "img3d.mesh_smooth", "img3d.export"} <= set(
        tools.texts("operator")
    )


def test_a_mesh_shared_with_another_object_stays_with_that_object():
    first = add_noisy_sphere(subdivisions=3)  # 320 faces
    second = first.copy()  # a linked duplicate: same mesh datablock
    bpy.context.collection.objects.link(second)
    shared = first.data
    assert bpy.ops.img3d.mesh_decimate(target_faces=100) == {"FINISHED"}
    assert second.data == shared and len(shared.polygons) == 320
    assert first.data != shared and len(first.data.polygons) <= 100


def test_decimating_a_uv_mapped_object_with_vertex_groups_refuses_first_then_goes_on_by_choice():
    obj = add_noisy_sphere(subdivisions=4)  # 1280 faces
    obj.data.uv_layers.new(name="UVMap")
    obj.vertex_groups.new(name="Top")
    with pytest.raises(RuntimeError, match=r"would drop its 1 UV map\(s\), 1 vertex group\(s\)"):
        bpy.ops.img3d.mesh_decimate(target_faces=300)
    assert len(obj.data.polygons) == 1280 and len(obj.data.uv_layers) == 1  # untouched
    bpy.ops.ed.undo_push(message="before decimate")
    assert bpy.ops.img3d.mesh_decimate(target_faces=300, discard_attributes=True) == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Decimate")
    obj = bpy.data.objects["Icosphere"]
    assert len(obj.data.polygons) <= 300 and len(obj.data.uv_layers) == 0
    assert bpy.ops.ed.undo() == {"FINISHED"}
    restored = bpy.data.objects["Icosphere"]
    assert len(restored.data.polygons) == 1280 and len(restored.data.uv_layers) == 1
    assert [group.name for group in restored.vertex_groups] == ["Top"]


def test_generated_objects_are_worked_on_without_asking(installed_extension):
    obj = add_noisy_sphere(subdivisions=4)
    obj.data.uv_layers.new(name="UVMap")
    obj["img3d_settings"] = "{}"
    assert bpy.ops.img3d.mesh_smooth(iterations=2) == {"FINISHED"}
