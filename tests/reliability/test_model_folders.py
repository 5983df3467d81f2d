"""Model folders and saved latents: whatever is wrong in them is one typed line, never a crash.

Each case copies the tiny random model (``tests/fixtures/tiny_models.py``) and
breaks one thing the way a download, a disk or a user could.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from blender_img3d.core.errors import LatentsError, ModelLoadError, ModelNotFoundError
from blender_img3d.core.settings import MAX_BATCH, Request
from blender_img3d.core.shap_e import loading
from blender_img3d.core.shap_e.latents import load_latents, save_latents, sidecar_path
from tests.reliability.conftest import one_error_line, peak_rss_mb, run_cli, snapshot


@pytest.fixture
def model_copy(tiny_image_model_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_image_model_dir, folder)
    loading.release()
    yield folder
    loading.release()


def load(folder: Path):
    return loading.load_models(folder, mode="image", device="cpu", dtype="float32")


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text.strip()
    return text


@pytest.mark.parametrize("component", ["image_encoder", "prior"])
def test_a_pickled_bin_with_code_is_refused_unexecuted(model_copy, component, tmp_path):
    for weights in (model_copy / component).glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "ran"
    # A pickle that would create a file when unpickled without weights_only.
    payload = pickle.dumps(_Touch(str(marker)))
    name = "pytorch_model.bin" if component == "image_encoder" else "diffusion_pytorch_model.bin"
    (model_copy / component / name).write_bytes(payload)
    with pytest.raises(ModelLoadError, match="torch refuses to unpickle") as info:
        load(model_copy)
    one_line(info.value)
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_model_index_holding_a_list(model_copy):
    (model_copy / "model_index.json").write_text("[]")
    with pytest.raises(ModelNotFoundError, match="holds a JSON list") as info:
        load(model_copy)
    one_line(info.value)


def test_an_empty_preprocessor_config(model_copy):
    (model_copy / "image_processor" / "preprocessor_config.json").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="image_processor/") as info:
        load(model_copy)
    one_line(info.value)


def test_unreadable_parts_are_described_not_raised(model_copy, monkeypatch):
    real_is_file = Path.is_file

    def is_file(self):
        if self.name == "config.json" and self.parent.name == "prior":
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    problems = loading.missing_components(model_copy, "image")
    assert problems == ["config.json can't be read (Permission denied); check its permissions"]
    with pytest.raises(ModelNotFoundError, match="Permission denied") as info:
        load(model_copy)
    one_line(info.value)


def test_config_with_more_layers_than_the_weights_is_a_loading_error(model_copy):
    edit_json(model_copy / "prior" / "config.json", num_layers=3)
    with pytest.raises(ModelLoadError, match="the config has parameters the weights lack") as e:
        load(model_copy)
    one_line(e.value)


def test_weights_with_more_layers_than_the_config_are_refused(model_copy):
    config = model_copy / "image_encoder" / "config.json"
    edit_json(config, num_hidden_layers=json.loads(config.read_text())["num_hidden_layers"] - 1)
    with pytest.raises(ModelLoadError, match="the weights have parameters the config") as e:
        load(model_copy)
    one_line(e.value)


def test_a_shape_mismatch_is_one_line(model_copy):
    edit_json(model_copy / "prior" / "config.json", attention_head_dim=8)
    with pytest.raises(ModelLoadError, match=r"size mismatch .* \(and \d+ more\)") as info:
        load(model_copy)
    assert len(one_line(info.value)) < 600


def test_truncated_safetensors(model_copy):
    weights = next((model_copy / "prior").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="prior/") as info:
        load(model_copy)
    one_line(info.value)


def test_the_cli_shows_a_broken_model_in_one_line(model_copy, tmp_path, capsys, example_image):
    (model_copy / "model_index.json").write_text("[]")
    code, _, err = run_cli(
        capsys, "generate", "--image", example_image, "--model", model_copy,
        "--out", tmp_path / "o.glb", "--quiet",
    )  # fmt: skip
    assert code == 1
    assert "holds a JSON list" in one_error_line(err)
    assert not (tmp_path / "o.glb").exists()


# --- saved latents -------------------------------------------------------------


def npy_claiming(shape: tuple[int, ...], body: bytes = b"\0" * 16) -> bytes:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def test_a_huge_npy_header_with_a_tiny_body_allocates_nothing(tmp_path):
    path = tmp_path / "z.npy"
    path.write_bytes(npy_claiming((100_000, 100_000)))
    before = peak_rss_mb()
    with pytest.raises(LatentsError, match=r"declares \(100000, 100000\) float32") as info:
        load_latents(path)
    one_line(info.value)
    assert peak_rss_mb() - before < 100


def test_a_short_body_is_refused(tmp_path):
    path = tmp_path / "z.npy"
    path.write_bytes(npy_claiming((2, 8), body=b"\0" * 60))
    with pytest.raises(LatentsError, match="the file holds 60"):
        load_latents(path)


def test_an_object_array_is_refused_unread(tmp_path):
    path = tmp_path / "z.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LatentsError, match="Python objects"):
        load_latents(path)


@pytest.mark.parametrize("version", ["9", 1.5, None, -1, True])
def test_sidecar_versions_that_are_not_whole_numbers(tmp_path, version):
    path = save_latents(tmp_path / "z.npy", np.ones((1, 4), np.float32), {"model": "x"})
    sidecar = sidecar_path(path)
    data = json.loads(sidecar.read_text())
    data["version"] = version
    sidecar.write_text(json.dumps(data))
    with pytest.raises(LatentsError, match="not a whole number") as info:
        load_latents(path)
    one_line(info.value)


def test_decode_honours_the_batch_limit(tmp_path, capsys):
    latents = save_latents(tmp_path / "z.npy", np.ones((MAX_BATCH + 44, 8), np.float32), {})
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, "decode", "--latents", latents, "--model", tmp_path, "--out", tmp_path / "m.glb"
    )
    assert code == 1
    assert f"at most {MAX_BATCH} are decoded in one run" in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_decode_never_writes_over_its_own_latents(tmp_path):
    from blender_img3d.core import pipeline

    latents = save_latents(tmp_path / "z.npy", np.ones((1, 8), np.float32), {"model": "m"})
    request = Request(outputs=[tmp_path / "m.glb"], report_path=sidecar_path(latents))
    with pytest.raises(Exception, match="would overwrite the input's sidecar"):
        pipeline.decode_saved(latents, request)
