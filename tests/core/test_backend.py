"""The backend seam and the plain-data round trips that let a request cross a process."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_img3d.core import backend, pipeline, serialize
from blender_img3d.core.errors import ConfigError, EmptySurfaceError
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.settings import ExportSettings, GenerationSettings, MeshSettings, Request


def rich_request(image) -> Request:
    return Request(
        image=image,
        name="chair",
        export=ExportSettings(bake_texture=True, texture_size=512),
        generation=GenerationSettings(steps=3, seed=7, batch=2, schedule="diffusers"),
        mesh=MeshSettings(target_faces=500, size=2.0),
        outputs=[Path("out/chair.glb"), Path("out/chair.step")],
        latents_out=Path("out/chair.npy"),
        report_path=Path("out/chair.json"),
        units="cm",
    )


@pytest.mark.parametrize(
    "image",
    [
        Path("photos/chair.png"),
        "//chair.png",
        b"\x89PNG not really",
        np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3),
        Image.new("RGBA", (6, 4), (10, 20, 30, 128)),
        Image.new("L", (3, 3), 77),
    ],
    ids=["path", "str", "bytes", "pixels", "pil-rgba", "pil-l"],
)
def test_request_round_trips_through_plain_data(image):
    request = rich_request(image)
    assert Request.from_dict(request.to_dict()) == request
    document, table = serialize.split_payloads(request.to_dict())
    json.dumps(document)  # the document part is JSON; arrays and bytes sit in the table
    assert Request.from_dict(serialize.join_payloads(json.loads(json.dumps(document)), table)) == (
        request
    )


def test_prepared_pixels_are_recorded_under_the_pictures_file_name():
    """Preview Input hands Generate pixels; the record keeps the file's name, suffix and all."""
    pixels = Image.new("RGB", (4, 4), (90, 40, 20))
    request = Request(image=pixels, name="stool", image_name="stool.png")
    assert request.settings_dict()["image"] == "stool.png"
    assert Request(image=pixels, name="stool").settings_dict()["image"] == "stool"
    assert Request(image=Path("in/stool.png")).settings_dict()["image"] == "stool.png"
    assert Request.from_dict(request.to_dict()) == request
    assert request != Request(image=pixels, name="stool")


def test_prompt_request_round_trips_and_differs_when_a_setting_differs():
    request = Request(prompt="a red chair", generation=GenerationSettings(guidance=12.0))
    assert Request.from_dict(request.to_dict()) == request
    other = Request(prompt="a red chair", generation=GenerationSettings(guidance=11.0))
    assert other != request


def test_from_dict_names_unknown_settings():
    data = Request(prompt="x").to_dict()
    data["generation"]["stepz"] = 3
    with pytest.raises(ConfigError, match="stepz"):
        Request.from_dict(data)
    with pytest.raises(ConfigError, match="colour"):
        Request.from_dict({"prompt": "x", "colour": "red"})
    with pytest.raises(ConfigError, match="mapping"):
        Request.from_dict(["prompt"])


def make_result() -> pipeline.Result:
    mesh = MeshData(
        vertices=np.random.default_rng(0).random((5, 3)),
        faces=[[0, 1, 2], [2, 3, 4]],
        colors=np.full((5, 3), 0.5),
        name="chair",
        metadata={"seed": 7},
    )
    return pipeline.Result(
        meshes=[mesh],
        metrics=[{"faces": 2, "watertight": False}],
        settings={"mode": "image"},
        model_source="openai/shap-e-img2img",
        model_revision="abc",
        latents=np.ones((1, 8), dtype=np.float32),
        input_report={"method": "alpha"},
        model_input=Image.new("RGB", (4, 4), (1, 2, 3)),
        timings={"sample": 1.5},
        notes=["kept 1 piece"],
        outputs=[Path("out/chair.glb")],
    )


def test_result_round_trips_through_plain_data_and_payloads():
    result = make_result()
    assert pipeline.Result.from_dict(result.to_dict()) == result
    document, table = serialize.split_payloads(result.to_dict())
    rebuilt = pipeline.Result.from_dict(
        serialize.join_payloads(json.loads(json.dumps(document)), table)
    )
    assert rebuilt == result
    changed = make_result()
    changed.meshes[0].vertices[0, 0] += 1e-9
    assert changed != result


def test_local_backend_runs_the_pipeline_and_releases_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(
        pipeline, "run", lambda request, progress, cancel: calls.append("run") or "R"
    )
    from blender_img3d.core.shap_e import loading

    monkeypatch.setattr(loading, "release", lambda source=None: calls.append("release"))
    warm = backend.get_backend("local")
    assert warm.submit(Request(prompt="x"), cancel=threading.Event()) == "R"
    assert calls == ["run"]
    cold = backend.get_backend("local", keep_model_loaded=False)
    cold.submit(Request(prompt="x"))
    assert calls == ["run", "run", "release"]

    def fail(request, progress, cancel):
        raise EmptySurfaceError("no surface")

    monkeypatch.setattr(pipeline, "run", fail)
    with pytest.raises(EmptySurfaceError):
        cold.submit(Request(prompt="x"))
    assert calls[-1] == "release"  # freed after a failure too


def test_unknown_backend_is_a_clear_error_and_new_ones_plug_in():
    with pytest.raises(ConfigError, match="local"):
        backend.get_backend("carrier-pigeon")

    class Echo:
        name = "echo"

        def __init__(self, suffix=""):
            self.suffix = suffix

        def submit(self, request, progress=None, cancel=None):
            return request.prompt + self.suffix

        def release(self):
            pass

    backend.register_backend("echo", Echo)
    try:
        assert backend.get_backend("echo", suffix="!").submit(Request(prompt="hi")) == "hi!"
        assert "echo" in backend.backend_names()
    finally:
        backend._FACTORIES.pop("echo")
