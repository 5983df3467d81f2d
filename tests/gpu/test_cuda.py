"""GPU checks (run on a machine with CUDA; skipped elsewhere): same seed, same shape, anywhere.

A seed must mean the same thing on every device (the noise is drawn on the
CPU), fp16 must stay close to fp32, decoding must agree with the CPU, and
``release()`` must hand the memory back. ``benchmarks/gpu.sh`` runs
these on a lent GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def sample(model_dir, device, dtype="auto", seed=3):
    from blender_img3d.core.shap_e import loading as models
    from blender_img3d.core.shap_e import sampling as engine

    loaded = models.load_models(str(model_dir), mode="text", device=device, dtype=dtype)
    return engine.sample_latents(loaded, prompt="a chair", steps=8, seed=seed, batch=2)


def test_a_seed_gives_the_same_latents_on_cuda_as_on_the_cpu(surface_text_model_dir):
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = sample(surface_text_model_dir, "cpu", dtype="float32")
    gpu = sample(surface_text_model_dir, "cuda", dtype="float32")
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=2e-3)


def test_fp16_on_cuda_stays_close_to_fp32(surface_text_model_dir):
    full = sample(surface_text_model_dir, "cuda", dtype="float32")
    half = sample(surface_text_model_dir, "cuda", dtype="float16")
    assert half.dtype == torch.float32
    assert float((half - full).abs().mean()) < 0.05


def test_decoding_on_cuda_matches_the_cpu(surface_text_model_dir):
    from blender_img3d.core.shap_e import decoding as decode
    from blender_img3d.core.shap_e import loading as models

    latents = sample(surface_text_model_dir, "cpu")
    renderer = models.load_models(str(surface_text_model_dir), mode="text", device="cpu").renderer
    on_cpu = decode.decode_latents(renderer, latents, grid_size=32, device="cpu")
    on_gpu = decode.decode_latents(renderer, latents, grid_size=32, device="cuda")
    for a, b in zip(on_cpu, on_gpu):
        assert abs(a.face_count - b.face_count) <= max(8, a.face_count // 100)


def test_release_returns_cuda_memory(surface_text_model_dir):
    from blender_img3d.core.shap_e import loading as models

    models.release()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    models.load_models(str(surface_text_model_dir), mode="text", device="cuda")
    assert torch.cuda.memory_allocated() > before
    models.release()
    assert torch.cuda.memory_allocated() == before


def test_autocast_faithful_mode_stays_close_to_fp32(surface_text_model_dir):
    full = sample(surface_text_model_dir, "cuda", dtype="float32")
    faithful = sample(surface_text_model_dir, "cuda", dtype="autocast")
    assert float((faithful - full).abs().mean()) < 0.05


def test_the_sampling_loop_makes_no_host_sync(surface_text_model_dir):
    # Any .item()/.cpu()/bool(tensor) on a CUDA tensor inside the loop raises here;
    # the one allowed sync is copying the finished latents back.
    from blender_img3d.core.shap_e import loading as models
    from blender_img3d.core.shap_e import schedules

    loaded = models.load_models(str(surface_text_model_dir), mode="text", device="cuda")
    real_heun = schedules.heun

    def strict(*args):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real_heun(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    entry = schedules.get("shap-e")
    schedules._REGISTRY["shap-e"] = schedules.Schedule(
        entry.name, entry.label, entry.description, entry.plan, strict
    )
    try:
        from blender_img3d.core.shap_e import sampling as engine

        engine.sample_latents(loaded, prompt="a chair", steps=4, seed=1)
    finally:
        schedules._REGISTRY["shap-e"] = entry


def test_adaptive_decode_on_cuda_equals_dense(surface_text_model_dir):
    from blender_img3d.core.shap_e import decoding as decode
    from blender_img3d.core.shap_e import loading as models

    latents = sample(surface_text_model_dir, "cpu", dtype="float32")
    renderer = models.load_models(str(surface_text_model_dir), mode="text", device="cuda").renderer
    dense = decode.decode_latents(renderer, latents, grid_size=64, device="cuda")
    adaptive = decode.decode_latents(renderer, latents, grid_size=64, device="cuda", adaptive=True)
    for a, b in zip(adaptive, dense):
        np.testing.assert_array_equal(a.faces, b.faces)
