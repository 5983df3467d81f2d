"""The artist's loop (#16) in real Blender with tiny models: GLB results, re-run, vary, presets.

Every generation here writes its files for real and imports them with
Blender's glTF importer; the tiny models make each run take about a second.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import bpy
import numpy as np
import pytest


def ext(installed_extension: str, name: str):
    return importlib.import_module(f"{installed_extension}.{name}")


def generate(**kwargs):
    return bpy.ops.img3d.generate(steps=2, grid_size=16, **kwargs)


def new_objects(before: set[str]) -> list[bpy.types.Object]:
    return sorted(
        (obj for obj in bpy.data.objects if obj.name not in before), key=lambda o: o.location.x
    )


def positions(obj: bpy.types.Object) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


@pytest.fixture
def unsaved_folder(installed_extension) -> Path:
    folder = ext(installed_extension, "blender.requests").unsaved_results_folder()
    for path in folder.iterdir():
        path.unlink()
    return folder


def test_each_variant_is_a_glb_in_the_output_folder_imported_by_blender(
    surface_text_model_dir, unsaved_folder
):
    bpy.context.scene.cursor.location = (2.0, 0.0, 0.0)
    before = {obj.name for obj in bpy.data.objects}
    assert generate(prompt="a vase", model=str(surface_text_model_dir), batch=2, seed=5) == {
        "FINISHED"
    }
    objects = new_objects(before)
    assert [obj.name for obj in objects] == ["a vase 1", "a vase 2"]
    assert tuple(objects[0].location) == pytest.approx((2.0, 0.0, 0.0))
    names = sorted(path.name for path in unsaved_folder.iterdir())
    assert names == [
        "a_vase_s5_v0.glb", "a_vase_s5_v0.npy", "a_vase_s5_v0.npy.json",
        "a_vase_s5_v1.glb", "a_vase_s5_v1.npy", "a_vase_s5_v1.npy.json",
    ]  # fmt: skip
    for index, obj in enumerate(objects):
        assert Path(obj["img3d_glb"]) == unsaved_folder / f"a_vase_s5_v{index}.glb"
        assert obj["img3d_variant"] == index and obj["img3d_seed"] == 5
        # Blender's glTF importer made it: its colour attribute naming and material wiring.
        assert obj.data.color_attributes.keys() == ["Color"]
        bsdf = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        assert bsdf.inputs["Base Color"].links[0].from_node.layer_name == "Color"
    extras = ext_outputs().read_glb_extras(unsaved_folder / "a_vase_s5_v0.glb")
    assert extras["settings"]["seed"] == 5 and extras["metrics"]["faces"] > 0


def ext_outputs():
    from blender_img3d.core import result_files as outputs

    return outputs


def test_a_second_run_never_overwrites_the_first(surface_text_model_dir, unsaved_folder):
    generate(prompt="a cup", model=str(surface_text_model_dir), seed=3)
    first = unsaved_folder / "a_cup_s3_v0.glb"
    first_bytes = first.read_bytes()
    generate(prompt="a cup", model=str(surface_text_model_dir), seed=3)
    assert (unsaved_folder / "a_cup_s3_v0-2.glb").is_file()
    assert first.read_bytes() == first_bytes
    assert bpy.context.view_layer.objects.active["img3d_glb"].endswith("a_cup_s3_v0-2.glb")


def test_a_saved_file_keeps_results_beside_it(surface_text_model_dir, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    generate(prompt="a bowl", model=str(surface_text_model_dir), seed=1)
    assert (tmp_path / "img3d" / "a_bowl_s1_v0.glb").is_file()
    assert bpy.context.view_layer.objects.active["img3d_glb"] == "//img3d/a_bowl_s1_v0.glb"


def test_first_save_moves_the_results_beside_the_blend(
    surface_text_model_dir, unsaved_folder, tmp_path
):
    generate(prompt="a jug", model=str(surface_text_model_dir), seed=2)
    obj = bpy.context.view_layer.objects.active
    assert Path(obj["img3d_glb"]).parent == unsaved_folder
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "jug.blend"))
    moved = tmp_path / "img3d" / "a_jug_s2_v0.glb"
    assert moved.is_file() and Path(obj["img3d_latents"]).is_file()
    assert Path(bpy.path.abspath(obj["img3d_glb"])) == moved
    assert not any(unsaved_folder.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_clear_error_and_no_object(
    surface_text_model_dir, tmp_path
):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    bpy.context.scene.img3d.output_dir = str(folder)
    before = {obj.name for obj in bpy.data.objects}
    try:
        with pytest.raises(RuntimeError, match="read-only"):
            generate(prompt="a box", model=str(surface_text_model_dir))
    finally:
        folder.chmod(0o755)
    assert {obj.name for obj in bpy.data.objects} == before
    assert list(folder.iterdir()) == []


def test_an_impossible_output_folder_is_refused_before_any_work(surface_text_model_dir, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    bpy.context.scene.img3d.output_dir = str(blocker / "img3d")
    before = {obj.name for obj in bpy.data.objects}
    with pytest.raises(RuntimeError, match="Can't create the output folder"):
        generate(prompt="a box", model=str(surface_text_model_dir))
    assert {obj.name for obj in bpy.data.objects} == before
    assert bpy.context.scene.img3d.history.keys() == []


def test_generate_again_with_the_same_seed_feeds_the_same_pixels(
    surface_image_model_dir, example_image, unsaved_folder
):
    assert generate(image_path=str(example_image), model=str(surface_image_model_dir), seed=4) == {
        "FINISHED"
    }
    source = bpy.context.view_layer.objects.active
    assert (unsaved_folder / "stool_s4_v0_input.png").is_file()
    assert bpy.ops.img3d.generate_again(same_seed=True) == {"FINISHED"}
    again = bpy.context.view_layer.objects.active
    assert again != source and again["img3d_seed"] == 4 and again.name.startswith("stool")
    assert again["img3d_image"] == source["img3d_image"] == "stool.png"  # not the saved copy
    assert again.location.x > source.location.x  # beside the source
    np.testing.assert_allclose(positions(again), positions(source), atol=1e-6)
    bpy.context.view_layer.objects.active = source
    assert bpy.ops.img3d.generate_again() == {"FINISHED"}
    assert bpy.context.view_layer.objects.active["img3d_seed"] != 4
    history = bpy.context.scene.img3d.history
    assert [entry.status for entry in history] == ["Finished"] * 3
    assert history[0].object == bpy.context.view_layer.objects.active  # newest first
    assert history[2].object == source and history[2].seed == 4


def test_variations_lay_out_new_seeds_beside_the_source(surface_text_model_dir):
    generate(prompt="a lamp", model=str(surface_text_model_dir), seed=9)
    source = bpy.context.view_layer.objects.active
    before = {obj.name for obj in bpy.data.objects}
    assert bpy.ops.img3d.variations(count=2) == {"FINISHED"}
    variants = new_objects(before)
    assert len(variants) == 2
    assert {obj["img3d_seed"] for obj in variants} != {9}
    assert [obj["img3d_variant"] for obj in variants] == [0, 1]
    assert all(obj.location.x > source.location.x for obj in variants)


def test_redecode_records_the_new_grid_and_copy_settings_fills_the_panel(
    surface_text_model_dir,
):
    generate(prompt="a chair", model=str(surface_text_model_dir), seed=6)
    source = bpy.context.view_layer.objects.active
    assert source["img3d_grid_size"] == 16
    assert bpy.ops.img3d.redecode(grid_size=24) == {"FINISHED"}
    decoded = bpy.context.view_layer.objects.active
    assert decoded != source and decoded["img3d_grid_size"] == 24
    assert json.loads(decoded["img3d_settings"])["grid_size"] == 24
    assert decoded["img3d_seed"] == 6
    props = bpy.context.scene.img3d
    props.seed, props.steps, props.mode = 0, 50, "image"
    bpy.context.view_layer.objects.active = source
    assert bpy.ops.img3d.copy_settings() == {"FINISHED"}
    assert (props.seed, props.steps, props.mode, props.prompt) == (6, 2, "text", "a chair")


def test_a_glb_made_elsewhere_joins_the_loop(surface_text_model_dir, tmp_path, unsaved_folder):
    generate(prompt="a stool", model=str(surface_text_model_dir), seed=8)
    glb = unsaved_folder / "a_stool_s8_v0.glb"
    bpy.ops.wm.read_homefile(app_template="")
    bpy.context.scene.cursor.location = (0.0, 3.0, 0.0)
    assert bpy.ops.img3d.import_result(filepath=str(glb)) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "a stool" and obj["img3d_seed"] == 8
    assert tuple(obj.location) == pytest.approx((0.0, 3.0, 0.0))
    assert Path(obj["img3d_latents"]).name == "a_stool_s8_v0.npy"
    before = {o.name for o in bpy.data.objects}
    latents = unsaved_folder / "a_stool_s8_v0.npy"
    assert bpy.ops.img3d.import_result(filepath=str(latents)) == {"FINISHED"}
    assert len(new_objects(before)) == 1


def test_bundled_presets_are_blender_presets(installed_extension):
    presets = ext(installed_extension, "blender.presets")
    draft = presets.user_preset_folder(presets.PRESET_SUBDIR) / "Draft.py"
    assert draft.is_file()
    assert (presets.user_preset_folder(presets.OPERATOR_PRESET_SUBDIR) / "Final.py").is_file()
    assert bpy.ops.script.execute_preset(filepath=str(draft), menu_idname="IMG3D_MT_presets") == {
        "FINISHED"
    }
    props = bpy.context.scene.img3d
    assert (props.steps, props.grid_size) == (16, 64)
    standard = draft.with_name("Standard.py")
    bpy.ops.script.execute_preset(filepath=str(standard), menu_idname="IMG3D_MT_presets")
    settings = ext(installed_extension, "core.settings")
    assert (props.steps, props.grid_size) == (settings.DEFAULT_STEPS, settings.DEFAULT_GRID_SIZE)


def blender_image_rgb(name: str) -> np.ndarray:
    image = bpy.data.images[name]
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rgba = pixels.reshape(height, width, 4)[::-1]  # Blender's rows start at the bottom
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def test_preview_input_shows_the_pixels_generate_feeds_the_model(
    installed_extension, surface_image_model_dir, example_image, unsaved_folder, tmp_path
):
    from PIL import Image

    requests = ext(installed_extension, "blender.requests")
    props = bpy.context.scene.img3d
    props.mode, props.image_source, props.image_path = "image", "FILE", str(example_image)
    props.model, props.steps, props.grid_size, props.seed = (
        str(surface_image_model_dir), 2, 16, 4,
    )  # fmt: skip
    assert bpy.ops.img3d.preview_input() == {"FINISHED"}
    state = bpy.context.window_manager.img3d_tasks
    previewed = blender_image_rgb(state.preview_image)
    assert "Covers" in state.preview_report and "border" in state.preview_report
    # Generate reuses the prepared image while the source and image settings match...
    assert requests.request_from_scene(bpy.context, {}).preprocess is False
    assert bpy.ops.img3d.generate() == {"FINISHED"}
    fed = np.asarray(Image.open(unsaved_folder / "stool_s4_v0_input.png").convert("RGB"))
    np.testing.assert_array_equal(previewed, fed)
    # The prepared pixels are recorded as the file they came from, as without a preview.
    result = ext(installed_extension, "core.result_files")
    extras = result.read_glb_extras(unsaved_folder / "stool_s4_v0.glb")
    assert extras["settings"]["image"] == "stool.png"
    assert bpy.context.view_layer.objects.active["img3d_image"] == "stool.png"
    # ...and the CLI's --save-input writes the same pixels for the same settings.
    from blender_img3d.cli.main import main as cli_main

    saved = tmp_path / "seen.png"
    arguments = [
        "generate", "--image", str(example_image), "--model", str(surface_image_model_dir),
        "--steps", "2", "--grid-size", "16", "--out", str(tmp_path / "o.glb"),
        "--save-input", str(saved),
    ]  # fmt: skip
    assert cli_main(arguments) == 0
    np.testing.assert_array_equal(previewed, np.asarray(Image.open(saved).convert("RGB")))
    props.border = 0.3  # a changed setting prepares again
    assert requests.request_from_scene(bpy.context, {}).preprocess is True


def test_a_baked_result_imports_with_its_texture(surface_text_model_dir, unsaved_folder):
    pytest.importorskip("xatlas")
    props = bpy.context.scene.img3d
    props.bake_texture, props.texture_size = True, 128
    assert generate(prompt="a pot", model=str(surface_text_model_dir), seed=2) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.data.uv_layers.keys() and obj.data.color_attributes.keys() == []
    bsdf = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    source = bsdf.inputs["Base Color"].links[0].from_node
    assert source.bl_idname == "ShaderNodeTexImage" and source.image.size[0] > 0


def test_the_panels_background_choice_reaches_the_request_and_downloads_need_consent(
    installed_extension, example_image
):
    requests = ext(installed_extension, "blender.requests")
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    online = bpy.context.preferences.system.use_online_access
    props = bpy.context.scene.img3d
    props.mode, props.image_source, props.image_path = "image", "FILE", str(example_image)
    try:
        for choice in ("auto", "learned", "classic", "keep"):
            props.background = choice
            assert requests.request_from_scene(bpy.context, {}).image_settings.background == choice
        # The learned remover is fetched by the models' download consent, nothing else.
        for wanted, allowed, expected in [
            (False, True, False),
            (True, False, False),
            (True, True, True),
        ]:  # noqa: E501
            prefs.allow_download = wanted
            bpy.context.preferences.system.use_online_access = allowed
            assert (
                requests.request_from_scene(bpy.context, {}).generation.allow_download == expected
            )
    finally:
        props.background = "auto"
        prefs.allow_download = False
        bpy.context.preferences.system.use_online_access = online


def draw(panel_name: str):
    from types import SimpleNamespace

    from tests.blender.ui_layout import RecordingLayout

    view = SimpleNamespace(layout=RecordingLayout())
    getattr(bpy.types, panel_name).draw(view, bpy.context)
    return view.layout


def test_the_panels_offer_the_loop(installed_extension, example_image):
    props = bpy.context.scene.img3d
    props.mode, props.image_source, props.image_path = "image", "FILE", str(example_image)
    main = draw("IMG3D_PT_main")
    assert "img3d.preview_input" in main.texts("operator")
    advanced = draw("IMG3D_PT_advanced")
    assert "IMG3D_MT_presets" in advanced.texts("menu")
    assert {"output_dir", "bake_texture", "texture_size"} <= set(advanced.texts("prop"))
    # A generated object (its recorded request is what the buttons need).
    mesh = bpy.data.meshes.new("made")
    obj = bpy.data.objects.new("made", mesh)
    bpy.context.collection.objects.link(obj)
    obj["img3d_request"], obj["img3d_seed"] = "{}", 3
    bpy.context.view_layer.objects.active = obj
    entry = props.history.add()
    entry.name, entry.object, entry.status = "made", obj, "Finished"
    results = draw("IMG3D_PT_result")
    assert {
        "img3d.generate_again", "img3d.variations", "img3d.redecode", "img3d.copy_settings",
        "img3d.import_result",
    } <= set(results.texts("operator"))  # fmt: skip
    assert results.texts("template_list") == ["IMG3D_UL_history"]
    bpy.ops.img3d.preview_input()
    assert bpy.types.IMG3D_PT_input_preview.poll(bpy.context)
    preview = draw("IMG3D_PT_input_preview")
    assert preview.texts("template_icon") and any("Covers" in t for t in preview.texts("label"))


def test_clicking_a_history_row_selects_its_object(installed_extension):
    props = bpy.context.scene.img3d
    objects = []
    for name in ("first", "second"):
        obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
        bpy.context.collection.objects.link(obj)
        entry = props.history.add()
        entry.name, entry.object = name, obj
        objects.append(obj)
    props.history_index = 1
    assert bpy.context.view_layer.objects.active == objects[1] and objects[1].select_get()
    props.history_index = 0
    assert bpy.context.view_layer.objects.active == objects[0] and not objects[1].select_get()
