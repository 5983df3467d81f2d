"""Loading Shap-E components: local folders, hub cache, errors, in-memory cache, devices."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from blender_img3d.core.errors import (
    CancelledError,
    ConfigError,
    DeviceError,
    ModelLoadError,
    ModelNotFoundError,
)
from blender_img3d.core.progress import Phase
from blender_img3d.core.shap_e import loading as models
from blender_img3d.core.shap_e import precision

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _empty_model_cache():
    models.release()
    yield
    models.release()


@pytest.fixture
def no_network(monkeypatch):
    """Fail any outgoing connection and record that one was tried."""
    attempts: list[object] = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def fake_hub_cache(model_dir: Path, cache: Path, repo_id: str) -> Path:
    """Lay a model folder out as huggingface_hub's cache does (refs/main -> snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return repo


def test_loads_image_model_from_local_folder(tiny_image_model_dir):
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers.pipelines.shap_e import ShapERenderer

    steps: list[tuple[str, int, int]] = []
    loaded = models.load_models(
        tiny_image_model_dir, mode="image", device="cpu", progress=lambda *a: steps.append(a)
    )
    assert loaded.mode == "image"
    assert isinstance(loaded.prior, PriorTransformer)
    assert isinstance(loaded.scheduler, HeunDiscreteScheduler)
    assert isinstance(loaded.renderer, ShapERenderer)
    assert loaded.image_encoder is not None and loaded.image_processor is not None
    assert loaded.text_encoder is None and loaded.tokenizer is None
    # "auto" is bfloat16 on a CPU with native bf16 (AMX, AVX512-BF16), else float32.
    from blender_img3d.core.shap_e.precision import auto_dtype_name

    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == getattr(torch, auto_dtype_name("cpu"))
    assert loaded.revision == "local"
    assert loaded.latent_shape == (32, 16)
    assert not loaded.prior.training and not any(p.requires_grad for p in loaded.prior.parameters())
    assert steps[-1] == (Phase.LOADING_MODEL, 5, 5)


def test_loads_text_model_from_local_folder(tiny_text_model_dir):
    loaded = models.load_models(tiny_text_model_dir, mode="text", device="cpu")
    assert loaded.text_encoder is not None and loaded.tokenizer is not None
    assert loaded.image_encoder is None
    assert loaded.revision == "local"


def test_renderer_params_proj_reads_the_priors_latents(tiny_image_model_dir):
    loaded = models.load_models(tiny_image_model_dir, mode="image", device="cpu")
    num_embeddings, embedding_dim = loaded.latent_shape
    latents = torch.randn(1, num_embeddings, embedding_dim)
    params = loaded.renderer.params_proj(latents)
    assert set(params) == {"nerstf.mlp.0.weight", "nerstf.mlp.1.weight", "nerstf.mlp.2.weight",
                           "nerstf.mlp.3.weight"}  # fmt: skip


def test_cache_returns_the_same_object_until_released(tiny_image_model_dir):
    first = models.load_models(tiny_image_model_dir, mode="image", device="cpu")
    assert models.load_models(tiny_image_model_dir, mode="image", device="cpu") is first
    assert first in models.cached_models()
    models.release(tiny_image_model_dir)
    assert models.cached_models() == []
    second = models.load_models(tiny_image_model_dir, mode="image", device="cpu")
    assert second is not first


def test_release_of_another_source_keeps_the_model(tiny_image_model_dir, tiny_text_model_dir):
    image = models.load_models(tiny_image_model_dir, mode="image", device="cpu")
    models.load_models(tiny_text_model_dir, mode="text", device="cpu")
    models.release(tiny_text_model_dir)
    assert models.cached_models() == [image]


def test_missing_folder_says_where_it_looked_and_what_to_do(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as caught:
        models.load_models(missing, mode="image", device="cpu")
    message = str(caught.value)
    assert str(missing) in message
    assert "--model" in message and "--allow-download" in message


def test_folder_without_prior_is_reported_as_incomplete(tiny_image_model_dir, tmp_path):
    partial = copy_model(tiny_image_model_dir, tmp_path / "partial")
    shutil.rmtree(partial / "prior")
    with pytest.raises(ModelNotFoundError, match="prior/ is missing"):
        models.load_models(partial, mode="image", device="cpu")


def test_folder_without_weights_is_reported_as_incomplete(tiny_image_model_dir, tmp_path):
    partial = copy_model(tiny_image_model_dir, tmp_path / "partial")
    (partial / "image_encoder" / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="image_encoder/ has no weights"):
        models.load_models(partial, mode="image", device="cpu")


def test_text_model_folder_for_image_input_names_the_right_model(tiny_text_model_dir):
    with pytest.raises(ModelNotFoundError, match="openai/shap-e-img2img"):
        models.load_models(tiny_text_model_dir, mode="image", device="cpu")


def test_corrupt_weights_raise_model_load_error(tiny_image_model_dir, tmp_path):
    broken = copy_model(tiny_image_model_dir, tmp_path / "broken")
    (broken / "prior" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a tensor" * 8)
    with pytest.raises(ModelLoadError, match="prior/"):
        models.load_models(broken, mode="image", device="cpu")


def test_hub_id_offline_with_empty_cache_fails_without_network(tmp_path, no_network):
    cache = tmp_path / "hf-cache"
    with pytest.raises(ModelNotFoundError) as caught:
        models.load_models("openai/shap-e-img2img", mode="image", cache_dir=cache, device="cpu")
    message = str(caught.value)
    assert str(cache) in message and "--allow-download" in message
    assert no_network == []


def test_hub_id_from_cache_records_the_commit_hash(tiny_text_model_dir, tmp_path, no_network):
    cache = tmp_path / "hf-cache"
    fake_hub_cache(tiny_text_model_dir, cache, "openai/shap-e")
    loaded = models.load_models("openai/shap-e", mode="text", cache_dir=cache, device="cpu")
    assert loaded.revision == COMMIT
    assert loaded.source == "openai/shap-e"
    assert no_network == []


def test_hub_id_at_unknown_revision_is_not_found(tiny_text_model_dir, tmp_path, no_network):
    cache = tmp_path / "hf-cache"
    fake_hub_cache(tiny_text_model_dir, cache, "openai/shap-e")
    with pytest.raises(ModelNotFoundError, match="revision v9"):
        models.load_models(
            "openai/shap-e", mode="text", revision="v9", cache_dir=cache, device="cpu"
        )


def test_cancel_before_loading_raises(tiny_image_model_dir):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        models.load_models(tiny_image_model_dir, mode="image", device="cpu", cancel=cancel)
    assert models.cached_models() == []


def test_download_progress_is_reported_in_bytes_and_cancellable():
    calls: list[tuple[str, int, int]] = []
    cancel = threading.Event()
    bar_class = models.download_bar_class(lambda *a: calls.append(a), cancel)
    bar = bar_class(total=100, unit="B")
    bar.update(40)
    bar.update(60)
    assert calls == [(Phase.DOWNLOADING, 40, 100), (Phase.DOWNLOADING, 100, 100)]
    cancel.set()
    with pytest.raises(CancelledError):
        bar.update(1)


def test_resolve_device_and_dtype_on_a_cpu_machine():
    assert models.resolve_device("cpu") == torch.device("cpu")
    expected_cpu = getattr(torch, precision.cpu_precision().dtype)  # measured, see below
    assert models.resolve_dtype("auto", torch.device("cpu")) == expected_cpu
    assert models.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert models.resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError):
        models.resolve_device("tpu")
    with pytest.raises(ConfigError):
        models.resolve_dtype("int8", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_raises_device_error_with_advice():
    assert models.resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(DeviceError, match="cpu"):
        models.resolve_device("cuda")


def test_importing_engine_and_models_does_not_import_torch():
    code = (
        "import sys, blender_img3d.core.shap_e.sampling, blender_img3d.core.shap_e.loading\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'huggingface_hub')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr


# --- dtype "auto" on the CPU: CPU flags, then a probe matmul ----------------------------------

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def fresh_precision():
    precision.cpu_precision.cache_clear()
    yield
    precision.cpu_precision.cache_clear()


def test_cpuinfo_flags_are_read_for_x86_and_arm():
    assert {"avx512_bf16", "avx2"} <= precision.parse_cpuinfo(X86_CPUINFO)
    assert "bf16" in precision.parse_cpuinfo(ARM_CPUINFO)
    assert precision.parse_cpuinfo("processor: 0\n") == set()


@pytest.mark.parametrize(
    ("flags", "source", "speedup", "expected", "probed"),
    [
        ({"avx2", "fma"}, "/proc/cpuinfo", 9.0, "float32", False),  # emulated bf16: no probe
        ({"avx512_bf16"}, "/proc/cpuinfo", 2.1, "bfloat16", True),
        ({"amx_bf16"}, "/proc/cpuinfo", 1.05, "float32", True),  # announced, but not faster
        ({"bf16"}, "sysctl", 1.8, "bfloat16", True),
        (set(), "", 1.8, "bfloat16", True),  # Windows: flags unknown, the probe decides
        (set(), "", 0.4, "float32", True),
    ],
)
def test_auto_picks_bf16_only_with_native_flags_and_a_faster_probe(
    monkeypatch, fresh_precision, flags, source, speedup, expected, probed
):
    calls = []
    monkeypatch.setattr(precision, "cpu_flags", lambda: (set(flags), source))
    monkeypatch.setattr(precision, "probe_speedup", lambda: calls.append(1) or speedup)
    assert models.resolve_dtype("auto", torch.device("cpu")) == getattr(torch, expected)
    assert precision.cpu_precision().dtype == expected
    assert bool(calls) == probed
    # Decided once per process; an explicit dtype is the user's override.
    models.resolve_dtype("auto", torch.device("cpu"))
    assert len(calls) == (1 if probed else 0)
    assert models.resolve_dtype("float32", torch.device("cpu")) == torch.float32


def test_the_probe_measures_both_dtypes_for_real(fresh_precision):
    speedup = precision.probe_speedup((128, 128, 128))
    assert speedup > 0 and speedup == speedup  # a finite ratio of two timings
    facts = precision.machine_facts()
    assert facts["cpus"] >= 1 and isinstance(facts["flags"], list) and facts["cpu"]


def test_autocast_keeps_float32_weights_and_names_the_product_dtype(tiny_image_model_dir):
    assert models.resolve_dtype("autocast", torch.device("cpu")) == torch.float32
    assert models.resolve_autocast("autocast", torch.device("cpu")) == torch.bfloat16
    assert models.resolve_autocast("autocast", torch.device("cuda")) == torch.float16
    assert models.resolve_autocast("float16", torch.device("cuda")) is None
    loaded = models.load_models(tiny_image_model_dir, mode="image", device="cpu", dtype="autocast")
    plain = models.load_models(tiny_image_model_dir, mode="image", device="cpu", dtype="float32")
    assert loaded is not plain  # cached apart
    assert loaded.prior.dtype == torch.float32 and loaded.autocast == torch.bfloat16
    assert plain.autocast is None
