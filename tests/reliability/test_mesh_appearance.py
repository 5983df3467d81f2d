"""A converted file keeps its looks: its texture where the format takes one, its colours
everywhere else, and a one-line note where a format keeps neither.

Textured inputs are the Khronos BoxTextured sample from the corpus (Debian's
assimp-testmodels, see ``tests/fixtures/mesh_corpus.py``) and OBJ + MTL + PNG files
we write from it; a PLY carrying UVs and colours together is made in code.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_img3d.core.mesh.reading import read_mesh, read_mesh_file
from tests.core.test_exporters_glb import assert_clean, parse_glb, validate
from tests.fixtures import mesh_corpus
from tests.reliability.conftest import run_cli

BOX = "glTF2/BoxTextured-glTF-Binary/BoxTextured.glb"


def face_centre_colours(texture) -> np.ndarray:
    """The texture sampled at each triangle's UV centroid, in face order."""
    return texture.sample(texture.uvs[texture.mesh.faces].mean(axis=1))


@pytest.fixture
def box(tmp_path):
    return mesh_corpus.require(BOX)


def test_a_textured_glb_keeps_the_same_texture_and_uvs_through_glb(tmp_path, capsys, box):
    source = read_mesh_file(box)
    assert source.texture is not None and source.texture.image.shape == (211, 211, 3)
    code, _, err = run_cli(capsys, "export", "--in", box, "--quiet", "--out", tmp_path / "a.glb")
    assert code == 0, err
    assert_clean(validate(tmp_path / "a.glb"))
    document, _ = parse_glb(tmp_path / "a.glb")
    assert "TEXCOORD_0" in document["meshes"][0]["primitives"][0]["attributes"]
    copy = read_mesh_file(tmp_path / "a.glb")
    assert copy.texture is not None
    np.testing.assert_array_equal(copy.texture.image, source.texture.image)
    np.testing.assert_allclose(
        face_centre_colours(copy.texture), face_centre_colours(source.texture), atol=1 / 255
    )


def test_obj_with_mtl_and_image_keeps_its_texture_to_glb_and_obj(tmp_path, capsys, box):
    source = read_mesh_file(box)
    code, _, err = run_cli(capsys, "export", "--in", box, "--quiet", "--out", tmp_path / "a.obj")
    assert code == 0, err
    assert (tmp_path / "a.png").is_file() and "map_Kd a.png" in (tmp_path / "a.mtl").read_text()
    outputs = [tmp_path / "b.glb", tmp_path / "b.obj"]
    code, _, err = run_cli(
        capsys, "export", "--in", tmp_path / "a.obj", "--quiet",
        "--out", outputs[0], "--out", outputs[1],
    )  # fmt: skip
    assert code == 0, err
    assert_clean(validate(outputs[0]))
    for output in outputs:
        copy = read_mesh_file(output)
        assert copy.texture is not None, output
        np.testing.assert_array_equal(copy.texture.image, source.texture.image)
        np.testing.assert_allclose(
            face_centre_colours(copy.texture), face_centre_colours(source.texture), atol=1 / 255
        )


def test_textured_file_also_gets_vertex_colours_sampled_at_its_uvs(box):
    read = read_mesh_file(box)
    assert read.mesh.colors is not None
    np.testing.assert_allclose(read.mesh.colors, read.texture.sample(read.texture.uvs), atol=1e-6)


def test_ply_with_uvs_and_colours_keeps_its_colours(tmp_path, capsys):
    ply = tmp_path / "both.ply"
    ply.write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float s\nproperty float t\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0 0 0 255 0 0\n1 0 0 1 0 0 255 0\n0 1 0 0 1 0 0 255\n3 0 1 2\n"
    )
    mesh = read_mesh(ply)
    np.testing.assert_allclose(mesh.colors, np.eye(3), atol=1e-6)
    code, _, err = run_cli(capsys, "export", "--in", ply, "--quiet", "--out", tmp_path / "a.glb")
    assert code == 0, err
    np.testing.assert_allclose(read_mesh(tmp_path / "a.glb").colors, np.eye(3), atol=2 / 255)


def test_bake_from_a_texture_samples_it_at_the_uvs(tmp_path, capsys, box):
    source = read_mesh_file(box)
    code, out, err = run_cli(
        capsys, "export", "--in", box, "--quiet", "--bake", "--bake-size", "256",
        "--out", tmp_path / "baked.glb",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(validate(tmp_path / "baked.glb"))
    baked = read_mesh_file(tmp_path / "baked.glb").texture
    assert baked.image.shape == (256, 256, 3)
    # Each triangle's centre shows the colour the source texture has there.
    error = np.abs(face_centre_colours(baked) - face_centre_colours(source.texture)).mean()
    assert error < 0.06, error


def test_formats_that_cannot_keep_the_looks_say_so_in_one_line(tmp_path, capsys, box):
    code, out, err = run_cli(
        capsys, "export", "--in", box, "--quiet",
        "--out", tmp_path / "a.dxf", "--out", tmp_path / "a.step",
    )  # fmt: skip
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert "note: DXF carries no texture: its colours were written as face colours" in notes
    assert "note: STEP carries no colour: the texture was dropped" in notes


def test_material_colours_become_vertex_colours_when_a_file_has_no_other():
    mesh = read_mesh(mesh_corpus.require("OBJ/box_mat_with_spaces.obj"))  # Kd 0.2 0.2 0.2
    np.testing.assert_allclose(mesh.colors, 0.2, atol=1e-6)
    white = read_mesh(mesh_corpus.require("OBJ/cube_usemtl.obj"))  # Kd 1 1 1: no colour
    assert white.colors is None
    engine = read_mesh(mesh_corpus.require("glTF2/2CylinderEngine-glTF-Binary/2CylinderEngine.glb"))
    assert engine.colors is not None and len(np.unique(np.round(engine.colors, 3), axis=0)) > 3


def test_several_textures_named_the_windows_way_are_found_and_sampled_with_a_note():
    read = read_mesh_file(mesh_corpus.require("OBJ/spider.obj"))  # map_Kd .\SpiderTex.jpg
    assert read.texture is None and read.mesh.colors is not None
    assert len(np.unique(np.round(read.mesh.colors, 2), axis=0)) > 50  # sampled, not flat
    assert read.notes == [
        "the file's textures (4 images) can't be one GLB/OBJ texture: "
        "their colours were sampled into vertex colours"
    ]
