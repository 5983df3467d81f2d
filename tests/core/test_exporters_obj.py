"""OBJ writer: trimesh reads back the same mesh, colours, normals and material library."""

from __future__ import annotations

import numpy as np
import pytest

from blender_img3d.core.exporters.obj import write_obj
from blender_img3d.core.mesh.placement import y_up_to_z_up
from tests.fixtures.meshes import cube, icosphere, open_box, torus

trimesh = pytest.importorskip("trimesh")

UNICODE_NAME = "Stuhl «Ö» 'x' \"y\" 椅子"


def reload(path):
    return trimesh.load(str(path), process=False, skip_materials=True)


@pytest.mark.parametrize(
    "mesh",
    [cube(colors=True), icosphere(4, colors=True), torus(colors=True), open_box()],
    ids=["cube", "sphere-5k", "torus", "open-box"],
)
def test_trimesh_reads_back_same_counts_positions_and_colours(tmp_path, mesh):
    path = write_obj(mesh, tmp_path / "mesh.obj")
    back = reload(path)
    assert (len(back.vertices), len(back.faces)) == (mesh.vertex_count, mesh.face_count)
    np.testing.assert_allclose(y_up_to_z_up(back.vertices), mesh.vertices, atol=2e-6)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    if mesh.colors is not None:
        colors = back.visual.vertex_colors[:, :3] / 255.0
        np.testing.assert_allclose(colors, mesh.colors, atol=0.6 / 255 + 1e-4)


def test_default_is_y_up_and_z_up_keeps_blender_frame(tmp_path):
    mesh = torus()
    y_up = reload(write_obj(mesh, tmp_path / "y.obj"))
    z_up = reload(write_obj(mesh, tmp_path / "z.obj", up_axis="Z"))
    x, y, z = mesh.vertices.T
    np.testing.assert_allclose(y_up.vertices, np.stack([x, z, -y], axis=1), atol=2e-6)
    np.testing.assert_allclose(z_up.vertices, mesh.vertices, atol=2e-6)


def test_normals_are_written_per_vertex_and_point_outwards(tmp_path):
    mesh = icosphere(2)
    path = write_obj(mesh, tmp_path / "s.obj")
    lines = path.read_text(encoding="utf-8").splitlines()
    normals = np.array(
        [[float(t) for t in line.split()[1:]] for line in lines if line[:3] == "vn "]
    )
    assert len(normals) == mesh.vertex_count
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    positions = np.array(
        [[float(t) for t in line.split()[1:4]] for line in lines if line[:2] == "v "]
    )
    assert (np.einsum("ij,ij->i", normals, positions) > 0.98).all()
    assert sum(line.startswith("f ") and "//" in line for line in lines) == mesh.face_count


def test_material_library_is_written_beside_and_referenced(tmp_path):
    mesh = cube(colors=True)
    mesh.name = UNICODE_NAME
    mesh.metadata = {"seed": 5, "prompt": "a chair\nsecond line"}
    path = write_obj(mesh, tmp_path / "my part.obj")
    text = path.read_text(encoding="utf-8")
    mtl = tmp_path / "my_part.mtl"  # no spaces: mtllib would split the name
    assert f"mtllib {mtl.name}\n" in text
    usemtl = next(line for line in text.splitlines() if line.startswith("usemtl "))
    material = usemtl.split(" ", 1)[1]
    assert " " not in material
    assert f"newmtl {material}\n" in mtl.read_text(encoding="utf-8")
    assert "Kd 1.000000 1.000000 1.000000" in mtl.read_text(encoding="utf-8")
    assert f"o {UNICODE_NAME}\n" in text
    assert '"seed": 5' in text and "second line" in text
    header = [line for line in text.splitlines() if "second line" in line]
    assert len(header) == 1 and header[0].startswith("#")  # newline in a prompt stays a comment


def test_scale_multiplies_coordinates(tmp_path):
    mesh = cube()
    back = reload(write_obj(mesh, tmp_path / "c.obj", scale=1000.0, up_axis="Z"))
    np.testing.assert_allclose(back.vertices, mesh.vertices * 1000.0, atol=1e-3)


@pytest.mark.slow
def test_100k_faces_are_written_quickly_and_completely(tmp_path):

    base = icosphere(6, colors=True)  # 81920 faces
    extra = icosphere(5)  # + 20480 faces = 102400
    mesh = type(base)(
        np.concatenate([base.vertices, extra.vertices + 3.0]),
        np.concatenate([base.faces, extra.faces + base.vertex_count]),
    )
    path = write_obj(mesh, tmp_path / "big.obj")  # speed: benchmarks/
    back = reload(path)
    assert (len(back.vertices), len(back.faces)) == (mesh.vertex_count, mesh.face_count)
