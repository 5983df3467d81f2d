"""Bake per export (#16): ``--bake`` on export/generate, the OBJ's PNG in the output plan.

The texture beside an OBJ is a side file like its ``.mtl``: planned under the
name the writer derives, checked against every other output and every input
(a picture or texture of that name is never replaced) before any work, staged
with the run's other files and gone on a cancel. Files are judged by third
parties: the Khronos validator for the GLB, trimesh reading the OBJ + MTL + PNG.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from blender_img3d.core import pipeline
from blender_img3d.core.errors import CancelledError, OutputPathError
from blender_img3d.core.outputs import plan_outputs
from blender_img3d.core.progress import Phase
from blender_img3d.core.settings import ExportSettings, MeshSettings, Request
from tests.core.test_exporters_glb import assert_clean, parse_glb, validate
from tests.fixtures.meshes import gradient_colors, gradient_sphere, icosphere, texture_color_error
from tests.reliability.conftest import one_error_line, run_cli, snapshot, temporary_files

pytest.importorskip("xatlas")
trimesh = pytest.importorskip("trimesh")

NO_MODEL = "/nonexistent/model"
THEIRS = b"the user's own picture\n"


@pytest.fixture
def sphere_ply(tmp_path):
    """The gradient sphere as a coloured PLY (8-bit colours), Z up as PLY inputs are read."""
    mesh = gradient_sphere()
    colors = np.round(mesh.colors * 255).astype(np.uint8)
    path = tmp_path / "sphere.ply"
    trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False).export(path)
    return path


def load_textured(path):
    """trimesh's reading of a textured file: Blender-frame positions, glTF uvs, the image."""
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry()
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals), path
    material = loaded.visual.material
    image = getattr(material, "image", None) or material.baseColorTexture
    uv = np.asarray(loaded.visual.uv, dtype=np.float64)
    uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]])  # trimesh's v runs up, glTF's down
    y_up = np.asarray(loaded.vertices)
    z_up = np.column_stack([y_up[:, 0], -y_up[:, 2], y_up[:, 1]])  # both files are Y up
    return z_up, np.asarray(loaded.faces), uv, np.asarray(image.convert("RGB"))


# --- the output plan ------------------------------------------------------------------------


def test_the_obj_texture_is_planned_only_when_baking(tmp_path):
    plain = plan_outputs([tmp_path / "a b.obj"])
    baked = plan_outputs([tmp_path / "a b.obj", tmp_path / "c.glb"], bake=True)
    assert [p.name for p in plain.paths] == ["a b.obj", "a_b.mtl"]
    assert [p.name for p in baked.paths] == ["a b.obj", "a_b.mtl", "a_b.png", "c.glb"]


def test_a_png_on_the_input_picture_is_refused_before_any_work(tmp_path, capsys):
    picture = tmp_path / "stool.png"
    picture.write_bytes(THEIRS)
    assert plan_outputs([tmp_path / "stool.obj"], inputs=[picture])  # no bake: no PNG
    before = snapshot(tmp_path)
    code, out, err = run_cli(
        capsys, "generate", "--image", picture, "--model", NO_MODEL,
        "--out", tmp_path / "stool.obj", "--bake", "--quiet",
    )  # fmt: skip
    assert code == 1
    line = one_error_line(err)
    assert "texture of stool.obj" in line and "would overwrite the input" in line, line
    assert "stool.png" in line and "wrote" not in out
    assert snapshot(tmp_path) == before


def test_a_texture_the_input_obj_uses_is_never_replaced(tmp_path):
    (tmp_path / "chair.obj").write_text("mtllib chair.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "chair.mtl").write_text("newmtl wood\nmap_Kd -s 2 2 1 wood.png\n")
    (tmp_path / "wood.png").write_bytes(THEIRS)
    with pytest.raises(OutputPathError, match="would overwrite a texture of the input"):
        plan_outputs([tmp_path / "wood.obj"], bake=True, inputs=[tmp_path / "chair.obj"])


def test_the_png_against_every_other_output(tmp_path):
    with pytest.raises(OutputPathError, match="texture of m.obj and the saved model input"):
        plan_outputs([tmp_path / "m.obj"], bake=True, save_input=tmp_path / "m.png")


def test_a_strangers_png_stays_ours_is_replaced(sphere_ply, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sphere.png").write_bytes(THEIRS)
    args = ["export", "--in", sphere_ply, "--out", out / "sphere.obj", "--bake", "--quiet"]
    code, _, err = run_cli(capsys, *args, "--bake-size", "64")
    assert code == 1
    assert "which blender_img3d did not write" in one_error_line(err)
    assert snapshot(out) == {"sphere.png": THEIRS}
    (out / "sphere.png").unlink()
    assert run_cli(capsys, *args, "--bake-size", "64")[0] == 0
    first = (out / "sphere.png").read_bytes()
    assert run_cli(capsys, *args, "--bake-size", "128")[0] == 0  # our own PNG: replaced
    assert (out / "sphere.png").read_bytes() != first


def test_a_cancel_during_export_removes_the_png(sphere_ply, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sphere.glb").write_bytes(THEIRS)
    request = Request(
        outputs=[out / "sphere.obj", out / "sphere.glb"],
        mesh=MeshSettings(enabled=False),
        export=ExportSettings(bake_texture=True, texture_size=64),
    )
    cancel = threading.Event()

    def progress(phase, done, total):
        if phase == Phase.EXPORTING and done >= 1:  # the OBJ, its MTL and PNG staged
            cancel.set()

    with pytest.raises(CancelledError):
        pipeline.convert_mesh_file(sphere_ply, request, progress=progress, cancel=cancel)
    assert snapshot(out) == {"sphere.glb": THEIRS}
    assert temporary_files(tmp_path) == []


# --- the CLI --------------------------------------------------------------------------------


def test_export_bakes_a_validator_clean_glb_and_an_obj_with_its_png(sphere_ply, tmp_path, capsys):
    outs = [tmp_path / "s.glb", tmp_path / "s.obj", tmp_path / "s.dxf"]
    code, out, _ = run_cli(
        capsys, "export", "--in", sphere_ply, *[a for o in outs for a in ("--out", o)],
        "--bake", "--bake-size", "256", "--report", tmp_path / "r.json", "--quiet",
    )  # fmt: skip
    assert code == 0 and "wrote" in out
    assert json.loads((tmp_path / "r.json").read_text())["timings"]["bake"] > 0
    report = validate(outs[0])
    assert_clean(report)
    assert report["info"]["hasTextures"] is True
    document, _ = parse_glb(outs[0])
    assert "TEXCOORD_0" in document["meshes"][0]["primitives"][0]["attributes"]
    assert "map_Kd s.png\n" in (tmp_path / "s.mtl").read_text()
    for path in outs[:2]:
        positions, faces, uvs, image = load_textured(path)
        error = texture_color_error(image, uvs, faces, gradient_colors(positions))
        assert error <= 0.03, (path.name, error)
    assert outs[2].stat().st_size > 0  # DXF written as usual: the bake applies to GLB and OBJ


def test_generate_bakes_too(surface_text_model_dir, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "generate", "--prompt", "a pot", "--model", surface_text_model_dir,
        "--steps", "2", "--grid-size", "16", "--out", tmp_path / "pot.glb",
        "--out", tmp_path / "pot.obj", "--bake", "--bake-size", "64", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(validate(tmp_path / "pot.glb"))
    document, _ = parse_glb(tmp_path / "pot.glb")
    assert document["images"][0]["mimeType"] == "image/png"
    assert (tmp_path / "pot.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pot.glb", "pot.mtl", "pot.obj", "pot.png",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "{d}/p.dxf", "--out", "{d}/p.step", "--bake"], "only GLB and OBJ files carry"),
        (["--out", "{d}/p.glb", "--bake", "--bake-size", "9000"], "texture size must be between"),
        (["--out", "{d}/p.glb", "--bake-size", "512"], "add --bake"),
    ],
)
def test_bakes_that_cant_be_done_are_one_line_before_any_work(
    sphere_ply, tmp_path, capsys, extra, message
):
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--in", sphere_ply, *[a.format(d=tmp_path) for a in extra], "--quiet"
    )
    assert code == 1
    assert message in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_a_mesh_without_colours_is_one_line_and_no_file(tmp_path, capsys):
    source = tmp_path / "plain.ply"
    plain = icosphere(subdivisions=1)
    trimesh.Trimesh(plain.vertices, plain.faces, process=False).export(source)
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--in", source, "--out", tmp_path / "p.glb", "--bake", "--quiet"
    )
    assert code == 1
    assert "no vertex colours to bake" in one_error_line(err)
    assert snapshot(tmp_path) == before and temporary_files(tmp_path) == []


def test_batch_refuses_a_bake_none_of_its_formats_carries(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "batch", tmp_path / "prompts.txt", "--out-dir", tmp_path / "out",
        "--format", "step", "--bake", "--quiet",
    )  # fmt: skip
    assert code == 1
    assert "can't go into STEP: only GLB and OBJ files carry one" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []
