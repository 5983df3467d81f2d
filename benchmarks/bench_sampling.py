"""Time per sampling step: our sampler vs diffusers' Shap-E pipeline, full-size random models.

Random weights have the real models' shapes, so the FLOPs (and the time) are
those of the published checkpoints; no download is needed. Both samplers get
the same component objects, the same image/prompt, seed and step count, and
both include conditioning in their wall time; per-step time is total / steps.

    .venv/bin/python benchmarks/bench_sampling.py --steps 2              # CPU, a few minutes
    .venv/bin/python benchmarks/bench_sampling.py --device cuda --steps 16 --mode both

Prints one line per measurement and the ratios ours / diffusers (< 1: we are faster).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Prior configs: diffusers' scripts/convert_shap_e_to_diffusers.py, PRIOR_IMAGE_CONFIG
# (openai/shap-e-img2img) and PRIOR_CONFIG (openai/shap-e): 24 layers, width 1024,
# 1024 latent tokens x 1024, time_embed_dim 4096, clip_embed_dim 2048.
_PRIOR_COMMON = {
    "num_layers": 24,
    "embedding_dim": 1024,
    "num_embeddings": 1024,
    "additional_embeddings": 0,
    "time_embed_act_fn": "gelu",
    "norm_in_type": "layer",
    "encoder_hid_proj_type": None,
    "added_emb_type": None,
    "time_embed_dim": 1024 * 4,
    "clip_embed_dim": 1024 * 2,
}
IMAGE_PRIOR_CONFIG = {
    **_PRIOR_COMMON,
    "num_attention_heads": 8,
    "attention_head_dim": 1024 // 8,
    "embedding_proj_norm_type": "layer",
    "embedding_proj_dim": 1024,  # CLIP ViT-L/14 vision hidden size (patch tokens)
}
TEXT_PRIOR_CONFIG = {
    **_PRIOR_COMMON,
    "num_attention_heads": 16,
    "attention_head_dim": 1024 // 16,
    "embedding_proj_dim": 768,  # CLIP ViT-L/14 text projection
}
# openai/clip-vit-large-patch14 (the encoders openai/shap-e(-img2img) ship).
CLIP_VISION_CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
}
CLIP_TEXT_CONFIG = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
# Shap-E's HeunDiscreteScheduler (openai/shap-e*/scheduler/scheduler_config.json).
SCHEDULER_CONFIG = {
    "beta_schedule": "exp",
    "num_train_timesteps": 1024,
    "prediction_type": "sample",
    "use_karras_sigmas": True,
    "clip_sample": True,
    "clip_sample_range": 1.0,
}
PROMPT = "a chair that looks like an avocado"


def build_models(mode: str, device, dtype):
    """ShapEModels with full-size random components (renderer: ShapERenderer defaults)."""
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers.pipelines.shap_e import ShapERenderer

    from blender_img3d.core.shap_e.loading import ShapEModels

    torch.manual_seed(0)
    prepare = dict(device=device, dtype=dtype)
    extra = {}
    if mode == "image":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        prior = PriorTransformer(**IMAGE_PRIOR_CONFIG)
        extra["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**CLIP_VISION_CONFIG))
        extra["image_encoder"] = extra["image_encoder"].to(**prepare).eval()
        extra["image_processor"] = CLIPImageProcessor(
            size={"shortest_edge": 224},
            crop_size={"height": 224, "width": 224},
            image_mean=[0.48145466, 0.4578275, 0.40821073],
            image_std=[0.26862954, 0.26130258, 0.27577711],
            resample=3,
        )
    else:
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        from tests.fixtures.tiny_models import make_tiny_tokenizer

        tokenizer = make_tiny_tokenizer(max_length=77)  # ids only; vocab size is irrelevant
        config = CLIPTextConfig(
            **CLIP_TEXT_CONFIG,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        extra["text_encoder"] = CLIPTextModelWithProjection(config).to(**prepare).eval()
        extra["tokenizer"] = tokenizer
        prior = PriorTransformer(**TEXT_PRIOR_CONFIG)
    return ShapEModels(
        mode=mode,
        prior=prior.to(**prepare).eval(),
        scheduler=HeunDiscreteScheduler(**SCHEDULER_CONFIG),
        renderer=ShapERenderer().to(device).eval(),
        device=device,
        dtype=dtype,
        source="random full-size",
        revision="random",
        path=Path("."),
        **extra,
    )


def diffusers_pipeline(models):
    from diffusers import ShapEImg2ImgPipeline, ShapEPipeline

    common = dict(prior=models.prior, scheduler=models.scheduler, shap_e_renderer=models.renderer)
    if models.mode == "image":
        pipe = ShapEImg2ImgPipeline(
            image_encoder=models.image_encoder, image_processor=models.image_processor, **common
        )
    else:
        pipe = ShapEPipeline(text_encoder=models.text_encoder, tokenizer=models.tokenizer, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(models, inputs, steps, schedule, guidance):
    from blender_img3d.core.shap_e.sampling import sample_latents

    synchronize(models.device)
    start = time.perf_counter()
    sample_latents(models, steps=steps, guidance=guidance, schedule=schedule, **inputs)
    synchronize(models.device)
    return time.perf_counter() - start


def time_diffusers(models, pipe, inputs, steps, guidance):
    import torch

    arguments = {"image": inputs["images"]} if models.mode == "image" else {"prompt": PROMPT}
    synchronize(models.device)
    start = time.perf_counter()
    pipe(
        **arguments,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="latent",
    )
    synchronize(models.device)
    return time.perf_counter() - start


def bench_mode(mode: str, args, device, dtype) -> None:
    import numpy as np
    import torch
    from PIL import Image

    started = time.perf_counter()
    models = build_models(mode, device, dtype)
    pipe = diffusers_pipeline(models)
    print(f"[{mode}] built full-size random components in {time.perf_counter() - started:.1f} s")
    if mode == "image":
        pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        inputs = {"images": Image.fromarray(pixels, "RGB")}
        guidance = 3.0
    else:
        inputs = {"prompt": PROMPT}
        guidance = 15.0
    with torch.inference_mode():
        for _ in range(args.warmup):
            time_ours(models, inputs, 1, "shap-e", guidance)
            time_diffusers(models, pipe, inputs, 1, guidance)
        # Interleaved repeats, best of each: a busy machine slows whichever runs
        # during the disturbance, not one sampler systematically.
        theirs = ours_ported = ours_reference = float("inf")
        for _ in range(args.repeats):
            theirs = min(theirs, time_diffusers(models, pipe, inputs, args.steps, guidance))
            ours_ported = min(
                ours_ported, time_ours(models, inputs, args.steps, "diffusers", guidance)
            )
            ours_reference = min(
                ours_reference, time_ours(models, inputs, args.steps, "shap-e", guidance)
            )
    evaluations = 2 * args.steps - 1
    for name, seconds in (
        ("diffusers ShapE pipeline", theirs),
        ("ours, schedule=diffusers", ours_ported),
        ("ours, schedule=shap-e", ours_reference),
    ):
        print(
            f"[{mode}] {name:26s} {seconds:8.2f} s total, {seconds / args.steps:7.3f} s/step, "
            f"{seconds / evaluations:7.3f} s/prior call (batch 2, CFG)"
        )
    print(f"[{mode}] ratio ours/diffusers (same schedule):  {ours_ported / theirs:.3f}")
    print(f"[{mode}] ratio ours/diffusers (shap-e schedule): {ours_reference / theirs:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="sampling steps (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs each; best is kept")
    parser.add_argument("--mode", choices=("image", "text", "both"), default="image")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed 1-step runs first (default: 1 on GPU)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from blender_img3d.core.shap_e.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.warmup is None:
        args.warmup = 0 if device.type == "cpu" else 1
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({card})"
        f", dtype {dtype}, threads {torch.get_num_threads()}, steps {args.steps}, "
        f"repeats {args.repeats}, "
        f"torch {torch.__version__}"
    )
    for mode in ("image", "text") if args.mode == "both" else (args.mode,):
        bench_mode(mode, args, device, dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
