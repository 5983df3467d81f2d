"""CLIP conditioning, the guided denoiser around the prior, and the loop that runs a schedule.

The schedules themselves (sigmas, timesteps, clipping, the integrator) are
entries of ``schedules``; this module is what they share: the conditioning rows
(unconditional first, zeros as in both reference implementations), ONE batched
prior call per evaluation, and the sampling state kept in float32 whatever the
prior's dtype. Why the numerics are what they are is in the package docstring.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError, ImageInputError
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from ..settings import (
    DEFAULT_GUIDANCE_IMAGE,
    DEFAULT_GUIDANCE_TEXT,
    DEFAULT_SCHEDULE,
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    DEFAULT_STEPS,
    MAX_BATCH,
    check_sampling,
)
from . import schedules
from .schedules import Plan

logger = logging.getLogger(__name__)


def sample_latents(
    models: Any,
    *,
    images: Any = None,
    prompt: Optional[str] = None,
    steps: int = DEFAULT_STEPS,
    guidance: Optional[float] = None,
    seed: int = 0,
    batch: int = 1,
    schedule: str = DEFAULT_SCHEDULE,
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    stats: Optional[dict[str, Any]] = None,
) -> Any:
    """Sample ``batch`` Shap-E latents; return them as a float32 CPU tensor ``(batch, N * D)``.

    ``models`` is a :class:`~.models.ShapEModels`. Image models take ``images``
    (a PIL image, or a list of 1 or ``batch`` images: variant ``i`` uses image
    ``i``); text models take ``prompt``. ``guidance`` defaults to 3.0 (image) /
    15.0 (text). ``progress`` gets ``(Phase.SAMPLING, k, steps)`` after every
    step; setting ``cancel`` stops before the next prior evaluation with
    :class:`CancelledError`. ``schedule`` names an entry of ``schedules``.
    The numbers are checked with ``settings.check_sampling``, the bounds
    ``Request.validate`` applies, so a direct call fails the same way.
    ``stats``, when given, receives ``condition_s``, ``sample_s`` and
    ``prior_calls`` (for the report's timings).
    """
    check_sampling(
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch=batch,
        schedule=schedule,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
    )
    _check_source(models, images, prompt)
    condition = images if models.mode == "image" else prompt
    latents = _sample(
        models,
        [condition],
        [int(seed)],
        [int(batch)],
        int(steps),
        guidance,
        schedule,
        sigma_min,
        sigma_max,
        progress,
        cancel,
        stats,
    )
    return latents


def _autocast(models: Any) -> Any:
    """``torch.autocast`` in the models' faithful mode (``dtype="autocast"``), else nothing."""
    import contextlib

    import torch

    dtype = getattr(models, "autocast", None)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(models.device).type, dtype=dtype)


def initial_noise(seed: int, batch: int, latent_shape: tuple[int, int]) -> Any:
    """Unit Gaussian noise ``(batch, N * D)`` for ``seed``, drawn on the CPU as diffusers draws it.

    Row ``i`` is variant ``i``. For ``N * D`` a multiple of 16 (all Shap-E
    models) row 0 of any batch equals the batch-1 draw, bit for bit.
    """
    import torch

    num_embeddings, embedding_dim = latent_shape
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(
        (batch, num_embeddings * embedding_dim), generator=generator, dtype=torch.float32
    )


def _check_source(models: Any, images: Any, prompt: Optional[str]) -> None:
    if models.mode == "image":
        if images is None or prompt is not None:
            raise ConfigError(
                "This is the image-to-3D model: give an image, not a prompt "
                "(load openai/shap-e for text)."
            )
    elif prompt is None or images is not None:
        raise ConfigError(
            "This is the text-to-3D model: give a prompt, not an image "
            "(load openai/shap-e-img2img for images)."
        )
    elif not prompt.strip():
        raise ConfigError("The prompt is empty: type what to generate, e.g. 'a red chair'.")


def _image_embeddings(models: Any, images: Any, batch: int) -> Any:
    """CLIP patch embeddings (CLS dropped), one row per variant, as diffusers makes them."""
    pictures = list(images) if isinstance(images, (list, tuple)) else [images]
    if len(pictures) not in (1, batch):
        raise ConfigError(
            f"Give one image or one per variant: got {len(pictures)} images for a batch of {batch}."
        )
    for picture in pictures:
        if not (hasattr(picture, "convert") and hasattr(picture, "size")):
            raise ImageInputError(
                f"Expected a PIL image, got {type(picture).__name__}: load the picture with "
                "core.images first."
            )
    rgb = [p if p.mode == "RGB" else p.convert("RGB") for p in pictures]
    pixels = models.image_processor(rgb, return_tensors="pt").pixel_values
    pixels = pixels.to(device=models.device, dtype=models.image_encoder.dtype)
    embeds = models.image_encoder(pixels).last_hidden_state[:, 1:, :]
    if len(rgb) == 1:
        embeds = embeds.repeat_interleave(batch, dim=0)
    return embeds.to(models.prior.dtype).contiguous()


def _text_embeddings(models: Any, prompt: str, batch: int) -> Any:
    """Normalised CLIP text embedding times sqrt(dim), as diffusers (and the reference) use it."""
    import torch

    tokenizer = models.tokenizer
    max_length = tokenizer.model_max_length
    tokens = tokenizer(
        [prompt], padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    )
    # Pad with id 0 as diffusers (and the reference's clip.tokenize) do, not with
    # the tokenizer's pad token. CLIP's causal attention and its pooling at the
    # first EOS make the pad id irrelevant to text_embeds; the ids match anyway.
    ids = tokens.input_ids.masked_fill(tokens.attention_mask == 0, 0)
    full_length = len(tokenizer(prompt).input_ids)
    if full_length > max_length:
        logger.warning(
            "The prompt is %d tokens; CLIP reads only the first %d.", full_length, max_length
        )
    # Normalised in float32 as the reference does (its CLIP runs in float16 on
    # CUDA, then ``.float()``): a half-precision norm costs digits for nothing.
    embeds = models.text_encoder(ids.to(models.device)).text_embeds.float()
    embeds = embeds.repeat_interleave(batch, dim=0)
    embeds = embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)
    return (math.sqrt(embeds.shape[1]) * embeds).to(models.prior.dtype)


def _make_denoiser(models: Any, embeds: Any, plan: Plan, guidance: float) -> Callable:
    """Return ``denoise(x, j)``: the guided x0 prediction at ``plan.sigmas[j]``."""
    import torch

    prior = models.prior
    num_embeddings, embedding_dim = models.latent_shape

    def denoise(x: Any, index: int) -> Any:
        denoise.calls += 1  # type: ignore[attr-defined]
        sigma = plan.sigmas[index]
        if plan.divide_input:
            scaled = x / ((sigma**2 + 1) ** 0.5)
        else:
            scaled = x * (1.0 / (sigma**2 + 1) ** 0.5)
        scaled = scaled.reshape(x.shape[0], num_embeddings, embedding_dim)
        if plan.guided:
            scaled = torch.cat([scaled, scaled])
        with _autocast(models):
            out = prior(
                scaled.to(prior.dtype),
                timestep=plan.timesteps[index],
                proj_embedding=embeds,
            ).predicted_image_embedding
        # The prior also predicts a variance in the second half of the channels.
        x0 = out[..., :embedding_dim].float()
        if plan.clip_per_branch:
            x0 = x0.clamp(-1.0, 1.0)
        if plan.guided:
            uncond, cond = x0.chunk(2)
            x0 = uncond + guidance * (cond - uncond)
        if plan.clip_range is not None:
            x0 = x0.clamp(-plan.clip_range, plan.clip_range)
        return x0.reshape(x.shape[0], -1)

    denoise.calls = 0  # type: ignore[attr-defined]
    return denoise


def sample_latents_grouped(
    models: Any,
    conditions: Sequence[Any],
    seeds: Sequence[int],
    batches: Sequence[int],
    *,
    steps: int = DEFAULT_STEPS,
    guidance: Optional[float] = None,
    schedule: str = DEFAULT_SCHEDULE,
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> list[Any]:
    """Sample several items (each its own image or prompt, seed and batch) with one prior call
    per evaluation; return one ``(batch_i, N * D)`` float32 CPU tensor per item.

    Item ``i``'s rows start from ``initial_noise(seeds[i], batches[i])``, exactly as a
    :func:`sample_latents` call with that seed would, and rows never interact in
    the prior, so each item's latents equal its single run's up to the float
    rounding of batched matmuls (the farm's grouped runs rely on this).
    """
    if not (len(conditions) == len(seeds) == len(batches) >= 1):
        raise ConfigError("Give one condition, seed and batch size per item (at least one item).")
    rows = [int(b) for b in batches]
    for condition, seed, batch in zip(conditions, seeds, batches):
        check_sampling(
            steps=steps,
            guidance=guidance,
            seed=seed,
            batch=batch,
            schedule=schedule,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
        )
        image = condition if models.mode == "image" else None
        _check_source(models, image, condition if image is None else None)
    if sum(rows) > MAX_BATCH:
        raise ConfigError(f"A group holds at most {MAX_BATCH} rows, got {sum(rows)}.")
    latents = _sample(
        models,
        list(conditions),
        [int(s) for s in seeds],
        rows,
        int(steps),
        guidance,
        schedule,
        sigma_min,
        sigma_max,
        progress,
        cancel,
        None,
    )
    return list(latents.split(rows))


def _sample(
    models: Any,
    conditions: list[Any],
    seeds: list[int],
    rows: list[int],
    steps: int,
    guidance: Optional[float],
    schedule: str,
    sigma_min: float,
    sigma_max: float,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
    stats: Optional[dict[str, Any]],
) -> Any:
    """The loop both entry points share, on checked inputs: item ``i`` is ``conditions[i]``
    (an image, a list of images or a prompt) with ``rows[i]`` variants from ``seeds[i]``'s
    noise; one guided prior call per evaluation serves every row. Returns the float32
    CPU latents of all rows, in item order."""
    if guidance is None:
        guidance = DEFAULT_GUIDANCE_IMAGE if models.mode == "image" else DEFAULT_GUIDANCE_TEXT
    guidance = float(guidance)
    sampler = schedules.get(schedule)

    import torch

    raise_if_cancelled(cancel)
    started = time.perf_counter()
    with torch.inference_mode():
        report(progress, Phase.CONDITIONING, 0, 1)
        embed = _image_embeddings if models.mode == "image" else _text_embeddings
        with _autocast(models):
            embeds = torch.cat([embed(models, c, b) for c, b in zip(conditions, rows)])
        report(progress, Phase.CONDITIONING, 1, 1)
        conditioned = time.perf_counter()

        plan = sampler.plan(models, steps, float(sigma_min), float(sigma_max), guidance)
        if plan.guided:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        noise = torch.cat([initial_noise(s, b, models.latent_shape) for s, b in zip(seeds, rows)])
        x = (noise * plan.init_sigma).to(models.device)
        denoise = _make_denoiser(models, embeds, plan, guidance)
        x = sampler.integrate(denoise, x, plan.sigmas, progress, cancel)
        latents = x.float().cpu()  # the one host sync of the loop
    if stats is not None:
        stats["condition_s"] = conditioned - started
        stats["sample_s"] = time.perf_counter() - conditioned
        stats["prior_calls"] = denoise.calls  # type: ignore[attr-defined]
    return latents
