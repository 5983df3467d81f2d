"""Result files: stable unique names, nothing overwritten, a failed write leaves nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from blender_img3d.core import result_files as outputs
from blender_img3d.core.errors import ExportError, MeshInputError
from blender_img3d.core.pipeline import Result
from tests.fixtures.meshes import cube


def result(batch: int = 1, name: str = "chair", latents: bool = True, image: bool = False):
    meshes = []
    for variant in range(batch):
        mesh = cube(colors=True)
        mesh.name = name if batch == 1 else f"{name} {variant + 1}"
        mesh.metadata = {"seed": 7, "variant": variant, "grid_size": 32}
        meshes.append(mesh)
    return Result(
        meshes=meshes,
        metrics=[{"faces": 12}] * batch,
        settings={},
        latents=np.zeros((batch, 8), np.float32) if latents else None,
        model_input=Image.new("RGB", (8, 8), "red") if image else None,
    )


@pytest.mark.parametrize(
    ("name", "safe"),
    [("a red chair", "a_red_chair"), ("../../etc", "etc"), ("   ", "img3d"), ("x" * 300, "x" * 64)],
)
def test_names_are_portable(name, safe):
    assert outputs.safe_name(name) == safe


def test_each_variant_gets_its_seed_and_variant_in_the_stem(tmp_path):
    files = outputs.write_variants(result(batch=2), tmp_path)
    assert [f.glb.name for f in files] == ["chair_s7_v0.glb", "chair_s7_v1.glb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chair_s7_v0.glb", "chair_s7_v0.npy", "chair_s7_v0.npy.json",
        "chair_s7_v1.glb", "chair_s7_v1.npy", "chair_s7_v1.npy.json",
    ]  # fmt: skip
    sidecar = json.loads(files[1].latents_sidecar.read_text())
    assert sidecar["shape"] == [1, 8] and sidecar["metadata"]["variant"] == 1
    extras = outputs.read_glb_extras(files[0].glb)
    assert extras["metrics"] == {"faces": 12} and extras["settings"]["seed"] == 7


def test_a_second_write_never_replaces_any_file_of_the_first(tmp_path):
    first = outputs.write_variants(result(image=True), tmp_path)[0]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "chair_s7_v0-2_input.png").write_bytes(b"someone else's")
    second = outputs.write_variants(result(image=True), tmp_path)[0]
    assert first.stem == "chair_s7_v0" and second.stem == "chair_s7_v0-3"
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    assert second.model_input.is_file()


def test_a_failed_write_removes_the_files_it_wrote(tmp_path, monkeypatch):
    import blender_img3d.core.images as images

    def broken(*_args, **_kwargs):
        raise ExportError("disk full")

    monkeypatch.setattr(images, "save_model_input", broken)
    with pytest.raises(ExportError, match="disk full"):
        outputs.write_variants(result(image=True), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_impossible_folder_is_refused_with_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="Can't create the output folder") as caught:
        outputs.check_output_folder(blocker / "out")
    assert "\n" not in str(caught.value)


def test_moving_a_variant_keeps_its_files_together_and_overwrites_nothing(tmp_path):
    files = outputs.write_variants(result(), tmp_path / "unsaved")[0]
    target = tmp_path / "beside"
    target.mkdir()
    (target / "chair_s7_v0.glb").write_bytes(b"an older result")
    moved = outputs.move_variant(files, target)
    assert moved.stem == "chair_s7_v0-2" and moved.glb.is_file() and moved.latents.is_file()
    assert (target / "chair_s7_v0.glb").read_bytes() == b"an older result"
    assert not any((tmp_path / "unsaved").iterdir())


@pytest.mark.parametrize(
    "data",
    [b"", b"glTF", b"PK\x03\x04" + b"\0" * 30, b"glTF\x02\0\0\0\x20\0\0\0\xff\xff\0\0JSON"],
)
def test_reading_extras_of_a_non_glb_is_a_typed_error(tmp_path, data):
    path = tmp_path / "x.glb"
    path.write_bytes(data)
    with pytest.raises(MeshInputError):
        outputs.read_glb_extras(path)
