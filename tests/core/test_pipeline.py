"""The one pipeline, end to end on tiny models: image and text in, meshes and files out."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from blender_img3d.core import pipeline
from blender_img3d.core.errors import CancelledError, ConfigError, EmptySurfaceError
from blender_img3d.core.progress import Phase
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request


def image_request(model_dir, image, **generation) -> Request:
    settings = {"model": str(model_dir), "steps": 2, "grid_size": 16, **generation}
    return Request(image=image, generation=GenerationSettings(**settings))


def test_image_to_coloured_mesh_in_blenders_frame(surface_image_model_dir, example_image):
    result = pipeline.run(image_request(surface_image_model_dir, example_image))
    [mesh] = result.meshes
    assert mesh.name == "stool"
    assert mesh.face_count > 0 and mesh.colors is not None
    assert ((mesh.colors >= 0) & (mesh.colors <= 1)).all()
    # Placed with its origin at the bottom centre (Z up).
    assert mesh.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-9)
    assert result.metrics[0]["faces"] == mesh.face_count
    assert result.model_revision == "local"
    assert result.input_report["method"] in {"flood", "alpha", "none", "saliency", "learned"}
    assert result.model_input.size == (224, 224)
    assert mesh.metadata["seed"] == 0 and mesh.metadata["schedule"] == "shap-e"
    assert set(result.timings) >= {"preprocess", "load_model", "sample", "decode", "export"}


def test_text_batch_gives_distinct_named_variants(surface_text_model_dir):
    request = Request(
        prompt="a small red chair",
        generation=GenerationSettings(
            model=str(surface_text_model_dir), steps=2, grid_size=16, batch=3, seed=5
        ),
        mesh=MeshSettings(target_faces=0),
    )
    result = pipeline.run(request)
    assert [mesh.name for mesh in result.meshes] == [
        "a small red chair 1",
        "a small red chair 2",
        "a small red chair 3",
    ]
    assert [mesh.metadata["variant"] for mesh in result.meshes] == [0, 1, 2]
    assert len({mesh.face_count for mesh in result.meshes} | {1}) > 1
    vertices = [mesh.vertices for mesh in result.meshes]
    assert not any(
        a.shape == b.shape and np.allclose(a, b)
        for i, a in enumerate(vertices)
        for b in vertices[i + 1 :]
    )
    assert result.latents.shape[0] == 3


def test_progress_goes_through_the_phases_in_order(surface_image_model_dir, example_image):
    seen = []
    pipeline.run(
        image_request(surface_image_model_dir, example_image, steps=3),
        progress=lambda phase, step, total: seen.append((phase, step, total)),
    )
    phases = list(dict.fromkeys(phase for phase, _, _ in seen))
    assert (
        phases
        == [
            Phase.PREPROCESSING,
            Phase.LOADING_MODEL,
            Phase.CONDITIONING,
            Phase.SAMPLING,
            Phase.DECODING,
            Phase.PROCESSING,
            Phase.EXPORTING,
        ][: len(phases)]
    )
    sampling = [(step, total) for phase, step, total in seen if phase == Phase.SAMPLING]
    assert sampling == [(1, 3), (2, 3), (3, 3)]


def test_cancel_during_sampling_raises_cancelled(surface_image_model_dir, example_image):
    cancel = threading.Event()

    def progress(phase, step, total):
        if phase == Phase.SAMPLING and step == 1:
            cancel.set()

    with pytest.raises(CancelledError):
        pipeline.run(
            image_request(surface_image_model_dir, example_image, steps=4),
            progress=progress,
            cancel=cancel,
        )


def test_files_report_and_model_input_are_written(surface_image_model_dir, example_image, tmp_path):
    request = image_request(surface_image_model_dir, example_image)
    request.outputs = [tmp_path / "stool.glb", tmp_path / "stool.obj"]
    request.report_path = tmp_path / "report.json"
    request.save_input = tmp_path / "seen.png"
    result = pipeline.run(request)
    assert result.outputs == [tmp_path / "stool.glb", tmp_path / "stool.obj"]
    assert all(path.stat().st_size > 0 for path in result.outputs)
    report = json.loads(request.report_path.read_text())
    assert report["variants"][0]["metrics"]["faces"] == result.meshes[0].face_count
    assert report["settings"]["generation"]["steps"] == 2
    from PIL import Image

    assert Image.open(request.save_input).size == (224, 224)


def test_batch_outputs_get_a_variant_suffix(tmp_path):
    paths = pipeline.output_paths([tmp_path / "a.glb", tmp_path / "a.step"], 2)
    assert paths == [
        [tmp_path / "a_0.glb", tmp_path / "a_0.step"],
        [tmp_path / "a_1.glb", tmp_path / "a_1.step"],
    ]


def test_saved_latents_decode_again_at_another_grid(
    surface_image_model_dir, example_image, tmp_path
):
    request = image_request(surface_image_model_dir, example_image)
    request.latents_out = tmp_path / "stool.npy"
    first = pipeline.run(request)
    again = pipeline.decode_saved(
        request.latents_out,
        Request(generation=GenerationSettings(grid_size=16)),
    )
    finer = pipeline.decode_saved(
        request.latents_out,
        Request(generation=GenerationSettings(grid_size=24)),
    )
    assert again.meshes[0].face_count == first.meshes[0].face_count
    np.testing.assert_allclose(again.meshes[0].vertices, first.meshes[0].vertices)
    assert finer.meshes[0].face_count != first.meshes[0].face_count
    assert finer.meshes[0].metadata["seed"] == 0


def test_a_renderer_with_no_surface_raises_empty_surface(tiny_image_model_dir, example_image):
    with pytest.raises(EmptySurfaceError, match="seed"):
        pipeline.run(image_request(tiny_image_model_dir, example_image, seed=0))


def test_impossible_requests_are_refused_before_any_work(example_image):
    with pytest.raises(ConfigError, match="exactly one"):
        pipeline.run(Request(image=example_image, prompt="x"))
    with pytest.raises(ConfigError, match="steps"):
        pipeline.run(Request(prompt="x", generation=GenerationSettings(steps=0)))
    with pytest.raises(ConfigError, match=".glb"):
        pipeline.run(Request(prompt="x", outputs=["mesh.fbx"]))


def test_timings_split_the_phases_and_count_prior_calls(surface_image_model_dir, example_image):
    result = pipeline.run(image_request(surface_image_model_dir, example_image, steps=3))
    timings = result.timings
    assert timings["prior_calls"] == 2 * 3 - 1
    assert {"condition", "sample", "decode_sdf_query", "decode_marching_cubes"} <= set(timings)
    assert timings["condition"] + timings["sample"] <= timings["sample_total"] + 1e-6
    # The same record travels with each variant (its custom properties in Blender).
    assert result.metrics[0]["timings"]["prior_calls"] == 5
    assert result.report_dict()["timings"]["prior_calls"] == 5


def test_the_written_report_holds_every_phase_including_the_export(
    surface_image_model_dir, example_image, tmp_path
):
    """--report is written after the meshes, so its seconds per phase include writing them."""
    import dataclasses
    import json

    request = dataclasses.replace(
        image_request(surface_image_model_dir, example_image, steps=3),
        outputs=[tmp_path / "stool.glb", tmp_path / "stool.step"],
        report_path=tmp_path / "report.json",
    )
    result = pipeline.run(request)
    written = json.loads((tmp_path / "report.json").read_text())
    phases = {"preprocess", "load_model", "condition", "sample", "prior_calls", "decode", "export"}
    assert phases <= set(written["timings"])
    assert written["timings"]["prior_calls"] == 5
    assert written["timings"]["export"] > 0
    # Each variant's record (the object's custom properties in Blender) has them too.
    [variant] = written["variants"]
    assert phases <= set(variant["metrics"]["timings"])
    assert result.metrics[0]["timings"]["export"] == written["timings"]["export"]


def test_with_processing_off_the_colours_are_the_decoders_at_every_vertex(
    surface_image_model_dir, example_image
):
    from blender_img3d.core.shap_e.decoding import decode_latents
    from blender_img3d.core.shap_e.loading import load_models

    request = image_request(surface_image_model_dir, example_image)
    request.mesh = MeshSettings(enabled=False)
    result = pipeline.run(request)
    [mesh] = result.meshes
    renderer = load_models(str(surface_image_model_dir), mode="image").renderer
    [decoded] = decode_latents(renderer, result.latents, grid_size=16)
    # Same vertices (placement only translates) and the same colours, bit for bit.
    offset = mesh.vertices - decoded.vertices
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-12)
    np.testing.assert_array_equal(mesh.colors, decoded.colors)


def test_colours_are_queried_only_at_the_vertices_processing_keeps(
    surface_image_model_dir, example_image, monkeypatch
):
    from blender_img3d.core.shap_e import decoding

    queried, raw = [], []
    real_query = decoding.STFField.query
    real_decode = decoding.decode_surfaces

    def keeping_decode(*args, **kwargs):
        surfaces = real_decode(*args, **kwargs)
        raw.extend(surface.mesh for surface in surfaces)
        return surfaces

    def counting_query(self, positions, head):
        if head == "rgb":
            queried.append(positions.detach().clone())
        return real_query(self, positions, head)

    monkeypatch.setattr(decoding.STFField, "query", counting_query)
    monkeypatch.setattr(decoding, "decode_surfaces", keeping_decode)
    request = image_request(surface_image_model_dir, example_image, grid_size=32)
    request.mesh = MeshSettings(target_faces=200, smooth_iterations=2)
    result = pipeline.run(request)
    [mesh] = result.meshes
    assert mesh.colors is not None and mesh.colors.shape == (mesh.vertex_count, 3)
    assert mesh.vertex_count < raw[0].vertex_count / 2  # decimated well below marching cubes
    points = torch_cat(queried)
    # Exactly the final vertices, each once, in Shap-E's frame (placement only translates).
    assert len(points) == mesh.vertex_count
    offset = mesh.vertices - points.double().numpy()
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
    assert result.timings["decode_color_query"] >= 0.0


def torch_cat(tensors):
    import torch

    return torch.cat(tensors)


def test_source_label_names_a_picture_by_its_stem_without_importing_the_image_stack():
    """The remote backend in a Blender without Pillow names its objects with this."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from blender_img3d.core.pipeline import source_label\n"
        "from blender_img3d.core.settings import Request\n"
        "print(source_label(Request(image=Path('/x/red chair.photo.jpg'))))\n"
        "print(source_label(Request(image='shoe.png')))\n"
        "print(source_label(Request(image=b'PNG')))\n"
        "print(source_label(Request(image=Path('/x/stool.png'), name='mine')))\n"
        "print(sorted(m for m in ('PIL', 'torch', 'scipy', 'skimage') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["red chair.photo", "shoe", "image", "mine", "[]"]
