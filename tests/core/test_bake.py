"""Texture bake: vertex colours → UV atlas texture, in GLB (validator-clean) and OBJ (+ PNG)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from blender_img3d.core.errors import MeshInputError
from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.mesh.bake import bake_vertex_colors
from tests.core.test_exporters_glb import assert_clean, parse_glb, validate
from tests.fixtures.meshes import gradient_sphere as make_gradient_sphere
from tests.fixtures.meshes import icosphere, texture_color_error

pytest.importorskip("xatlas")


@pytest.fixture(scope="module")
def gradient_sphere():
    return make_gradient_sphere()


@pytest.fixture(scope="module")
def baked(gradient_sphere):
    return bake_vertex_colors(gradient_sphere, size=256)


def test_the_texture_looks_like_the_vertex_colours(baked):
    mesh = baked.mesh
    error = texture_color_error(baked.image, baked.uvs, mesh.faces, mesh.colors)
    assert error <= 0.03, error


def test_every_vertex_has_one_uv_inside_the_image(baked, gradient_sphere):
    assert baked.image.shape == (256, 256, 3)  # the size asked for, whatever xatlas's aspect
    assert baked.uvs.shape == (len(baked.mesh.vertices), 2)
    assert (baked.uvs >= 0).all() and (baked.uvs <= 1).all()
    assert len(baked.mesh.faces) == len(gradient_sphere.faces)
    assert len(baked.mesh.vertices) >= len(gradient_sphere.vertices)  # seams split vertices


def test_textured_glb_is_validator_clean_and_carries_the_texture(baked, tmp_path):
    path = export_mesh(baked.mesh, tmp_path / "sphere.glb", texture=baked)
    assert_clean(validate(path))
    document, binary = parse_glb(path)
    primitive = document["meshes"][0]["primitives"][0]
    assert "TEXCOORD_0" in primitive["attributes"] and "COLOR_0" not in primitive["attributes"]
    material = document["materials"][0]["pbrMetallicRoughness"]
    assert material["baseColorTexture"] == {"index": 0, "texCoord": 0}
    view = document["bufferViews"][document["images"][0]["bufferView"]]
    png = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
    assert png == baked.png_bytes()


def test_obj_mtl_references_the_png_written_beside_it(baked, tmp_path):
    path = export_mesh(baked.mesh, tmp_path / "sphere.obj", texture=baked)
    mtl = (tmp_path / "sphere.mtl").read_text()
    assert "map_Kd sphere.png\n" in mtl
    with Image.open(tmp_path / "sphere.png") as png:
        assert png.size == baked.image.shape[1::-1]
    text = path.read_text()
    assert text.count("\nvt ") == len(baked.uvs)
    first_face = next(line for line in text.splitlines() if line.startswith("f "))
    assert first_face.count("/") == 6  # v/vt/vn


def test_bad_bakes_are_typed_errors(gradient_sphere):
    plain = icosphere(subdivisions=1)
    with pytest.raises(MeshInputError, match="no vertex colours"):
        bake_vertex_colors(plain)
    with pytest.raises(MeshInputError, match="texture size"):
        bake_vertex_colors(gradient_sphere, size=10)


def test_a_crashing_unwrapper_is_retried_nudged_then_one_clear_error(gradient_sphere, monkeypatch):
    """xatlas segfaults on some very regular meshes: the child dies, never this process."""
    import signal

    from blender_img3d.core.errors import MeshProcessingError
    from blender_img3d.core.mesh import bake

    real_child, calls = bake._atlas_child, []

    def crash_once(positions, indices, size):
        calls.append(positions)
        return -signal.SIGSEGV if len(calls) == 1 else real_child(positions, indices, size)

    monkeypatch.setattr(bake, "_atlas_child", crash_once)
    baked = bake_vertex_colors(gradient_sphere, size=128)
    assert len(calls) == 2 and 0 < np.abs(calls[1] - calls[0]).max() < 1e-4
    kept = {tuple(v) for v in gradient_sphere.vertices.tolist()}
    assert {tuple(v) for v in baked.mesh.vertices.tolist()} <= kept  # only the layout was nudged

    monkeypatch.setattr(bake, "_atlas_child", real_child)
    monkeypatch.setattr(bake, "_ATLAS_CHILD", "import os, signal; os.kill(os.getpid(), 11)")
    with pytest.raises(MeshProcessingError, match=r"xatlas\) crashed on this mesh .*exit -11"):
        bake_vertex_colors(gradient_sphere, size=128)
