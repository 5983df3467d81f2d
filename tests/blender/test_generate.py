"""Generate in real Blender with tiny models: operator, Python API and the example script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def generate(**kwargs):
    return bpy.ops.img3d.generate(steps=2, grid_size=16, **kwargs)


def new_objects(before: set[str]) -> list[bpy.types.Object]:
    return sorted(
        (obj for obj in bpy.data.objects if obj.name not in before), key=lambda o: o.location.x
    )


def test_image_generate_creates_a_coloured_object_at_the_cursor(
    surface_image_model_dir, example_image
):
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    before = {obj.name for obj in bpy.data.objects}
    assert generate(image_path=str(example_image), model=str(surface_image_model_dir), seed=4) == {
        "FINISHED"
    }
    [obj] = new_objects(before)
    assert obj.name == "stool"
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert bpy.context.view_layer.objects.active == obj and obj.select_get()

    # The object is what Blender's glTF importer made of the GLB: its attribute naming.
    mesh = obj.data
    colour = mesh.color_attributes["Color"]
    assert colour.domain == "CORNER"
    values = np.empty(len(colour.data) * 4, dtype=np.float32)
    colour.data.foreach_get("color", values)
    assert 0.0 <= values.min() and values.max() <= 1.0 and np.ptp(values) > 0

    material = mesh.materials[0]
    bsdf = next(node for node in material.node_tree.nodes if node.type == "BSDF_PRINCIPLED")
    [link] = bsdf.inputs["Base Color"].links
    assert link.from_node.bl_idname == "ShaderNodeVertexColor"
    assert link.from_node.layer_name == "Color"
    assert Path(obj["img3d_glb"]).is_file() and obj["img3d_glb"].endswith("stool_s4_v0.glb")

    assert obj["img3d_seed"] == 4
    assert obj["img3d_model"] == str(surface_image_model_dir)
    assert obj["img3d_image"] == "stool.png"
    assert json.loads(obj["img3d_metrics"])["faces"] == len(mesh.polygons)
    assert json.loads(obj["img3d_settings"])["generation"]["steps"] == 2

    # Z-up with the origin at the bottom centre: nothing below the object's origin.
    z = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", z)
    assert z.reshape(-1, 3)[:, 2].min() == pytest.approx(0.0, abs=1e-5)


def test_batch_of_three_gives_three_objects_side_by_side(surface_text_model_dir):
    before = {obj.name for obj in bpy.data.objects}
    assert generate(prompt="a vase", model=str(surface_text_model_dir), batch=3) == {"FINISHED"}
    objects = new_objects(before)
    assert [obj.name for obj in objects] == ["a vase 1", "a vase 2", "a vase 3"]
    xs = [obj.location.x for obj in objects]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert [obj["img3d_variant"] for obj in objects] == [0, 1, 2]
    assert all(obj["img3d_prompt"] == "a vase" for obj in objects)


def test_scene_settings_are_used_when_the_operator_does_not_override(surface_text_model_dir):
    props = bpy.context.scene.img3d
    props.mode = "text"
    props.prompt = "a lamp"
    props.model = str(surface_text_model_dir)
    props.steps = 2
    props.grid_size = 16
    props.seed = 11
    assert bpy.ops.img3d.generate() == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "a lamp" and obj["img3d_seed"] == 11


def test_bad_input_reports_a_clear_error_and_creates_nothing(tmp_path, surface_image_model_dir):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    before = {obj.name for obj in bpy.data.objects}
    with pytest.raises(RuntimeError, match="corrupt|truncated|not a"):
        generate(image_path=str(broken), model=str(surface_image_model_dir))
    assert {obj.name for obj in bpy.data.objects} == before
    with pytest.raises(RuntimeError, match="prompt"):
        generate(prompt="   ")


def test_api_generate_returns_the_objects(installed_extension, surface_text_model_dir):
    import importlib

    api = importlib.import_module(f"{installed_extension}.blender.api")
    objects = api.generate(prompt="a cup", model=str(surface_text_model_dir), steps=2, grid_size=16)
    assert [obj.name for obj in objects] == ["a cup"]
    with pytest.raises(TypeError, match="unknown setting"):
        api.generate(colour="red")


def run_example(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "headless_generate.py"), "--", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},  # the temp Blender user dir with the installed extension
    )


def test_headless_example_script_writes_blend_glb_and_step(
    surface_image_model_dir, example_image, tmp_path
):
    out = tmp_path / "out"
    completed = run_example(
        "--image", str(example_image), "--out-dir", str(out), "--model",
        str(surface_image_model_dir), "--steps", "2", "--grid-size", "16",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    for name in ("stool.blend", "stool.glb", "stool.step"):
        assert (out / name).stat().st_size > 0, name


def test_headless_example_script_fails_clearly_on_a_bad_image(surface_image_model_dir, tmp_path):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(blank)
    completed = run_example(
        "--image", str(blank), "--out-dir", str(tmp_path / "out"), "--model",
        str(surface_image_model_dir), "--steps", "2", "--grid-size", "16",
    )  # fmt: skip
    assert completed.returncode != 0
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_model_stays_loaded_unless_the_preference_says_otherwise(
    installed_extension, surface_text_model_dir
):
    import importlib

    models = importlib.import_module(f"{installed_extension}.core.shap_e.loading")
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    models.release()
    try:
        prefs.keep_model_loaded = True
        generate(prompt="a box", model=str(surface_text_model_dir))
        assert [m.source for m in models.cached_models()] == [str(surface_text_model_dir)]
        prefs.keep_model_loaded = False
        generate(prompt="a box", model=str(surface_text_model_dir))
        assert models.cached_models() == []
    finally:
        prefs.keep_model_loaded = True


def test_a_blender_image_is_used_through_its_pixels(surface_image_model_dir, example_image):
    props = bpy.context.scene.img3d
    props.mode = "image"
    props.image_source = "BLENDER"
    props.image_path = "/a/stale/file/choice.png"  # ignored: the source is the Blender image
    props.image = bpy.data.images.load(str(example_image))
    assert generate(model=str(surface_image_model_dir)) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "stool" and obj["img3d_image"] == "stool"


def test_image_and_prompt_together_are_refused(surface_image_model_dir, example_image):
    with pytest.raises(RuntimeError, match="either image_path or prompt"):
        generate(image_path=str(example_image), prompt="a chair")
