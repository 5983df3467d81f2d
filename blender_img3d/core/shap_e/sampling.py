"""Sample Shap-E latents: CLIP conditioning, then Heun steps over the prior with guidance.

Two noise schedules share one loop:

``"shap-e"`` (default) is the sampler of OpenAI's reference implementation as
the product we replace ran it (``sample_latents(..., use_karras=True,
karras_steps=64, sigma_min=1e-3, sigma_max=160, s_churn=0, clip_denoised=True)``):

* Karras sigmas from ``sigma_max`` to ``sigma_min`` (rho 7) plus a final 0;
  ``x_T = N(0, I) * sigma_max``;
* each sigma becomes an *integer* timestep of the 1024-step "exp" diffusion
  through its ``alphas_cumprod`` (``alpha = 1 / (sigma^2 + 1)``, linear
  interpolation, truncated), see :func:`reference_timesteps`;
* the prior sees ``x / sqrt(sigma^2 + 1)``; its output (first half of the
  channels) *is* the x0 prediction ("x_start" mean type, no c_skip/c_out), and
  each branch is clipped to [-1, 1] *before* classifier-free guidance is
  applied to x0;
* Heun steps, the last one (to sigma 0) an Euler step.

``"diffusers"`` reproduces diffusers' ``ShapEPipeline`` / ``ShapEImg2ImgPipeline``
with the model's ``HeunDiscreteScheduler`` config: Karras sigmas over the
scheduler's own range (about 403 down to 0.109 for Shap-E), float timesteps,
x0 clipped *after* guidance, noise scaled by the scheduler's
``init_noise_sigma``. For the same seed its latents equal diffusers' (on CPU
in float32 the tiny-model tests find them bit-identical; they assert 1e-4).

Both guide with ONE batched prior call per evaluation (unconditional rows
first, as diffusers orders them; the unconditional embedding is zeros in both
implementations) and keep the sampling state in float32 whatever the model
dtype, like the reference's autocast. Timesteps reach the prior as int64 or
float32 tensors, so its sinusoidal time embedding is computed in float32 even
when the prior runs in float16 (float16 can't hold e.g. 1000.37).

How this maps onto the reference (openai/shap-e, ``shap_e/diffusion/``):

* ``sample.sample_latents`` duplicates every ``model_kwargs`` entry as
  ``cat([cond, zeros_like(cond)])`` when guidance is not 0 or 1, so the
  unconditional branch is a zero conditioning tensor, not an empty prompt.
  For image300M (``CLIPImageGridPointDiffusionTransformer``) that tensor is the
  CLIP ViT-L/14 patch grid *before* the prior's ``clip_embed`` LayerNorm +
  Linear, which diffusers ports as ``embedding_proj_norm`` + ``embedding_proj``
  applied to ``proj_embedding``: zeros in, the LayerNorm's bias out, in both.
  For text300M (``CLIPImagePointDiffusionTransformer``) it is the normalised
  CLIP text embedding that the model multiplies by sqrt(768) itself; diffusers
  (and we) scale before the prior, which leaves the zero rows zero. The grid is
  the vision transformer's output without ``ln_post``, i.e. transformers'
  ``last_hidden_state`` minus the CLS token. With guidance 0 or 1 the reference
  runs the conditional model alone; so does ``"shap-e"`` here.
* The reference orders rows conditional first; we put the unconditional rows
  first. Rows don't interact in the prior, so only the batch position differs.
* ``GaussianToKarrasDenoiser`` feeds ``p_mean_variance`` with ``x * c_in`` and
  ``torch.long`` timesteps; the model output's first half is ``pred_xstart``
  directly (the diffusion config's mean type is ``x_start``: diffusers ports it
  as ``prediction_type="sample"``), clipped there, then guided in
  ``karras_sample_progressive``. Its ``timestep_embedding`` multiplies the long
  timesteps by float32 frequencies, exactly what diffusers' ``Timesteps`` does.
* Channel scales/biases: ``GaussianDiffusion`` supports them and
  ``karras_sample_progressive`` yields ``diffusion.unscale_out_dict(...)``, but
  the scales come from ``diffusion_config.yaml`` (downloaded, not in the
  repository). Shap-E's, as far as we can tell, sets none (schedule "exp", 1024
  steps, mean type x_start): the repository's latent bottlenecks
  (``transmitter/bottleneck.py``) already bound latents with tanh (hence
  ``clip_denoised``), diffusers' port applies no scaling anywhere between
  prior and renderer, and its authors report samples matching the
  reference's. So ``unscale_out_dict`` is the identity and neither schedule
  scales. This is inferred, not read from the YAML; if a
  future config carried scales, both schedules would need ``(x - b) / s`` on
  the output.
* Precision: the reference wraps sampling in ``torch.autocast`` (fp16 matmuls
  over an fp32 model, its CLIP in fp16 on CUDA), so its guidance arithmetic
  runs in fp16; we cast the prior itself and keep x0, guidance and the Heun
  state in float32, so fp16 runs differ from the reference by rounding only.

Seeds: the initial noise is ``torch.randn((batch, num_embeddings *
embedding_dim), generator=torch.Generator("cpu").manual_seed(seed))`` - the
shape and order diffusers draws - made on the CPU and then moved, so a seed
means the same starting point on every device (the latents then differ
by the device's float rounding, and by more in float16). Variant ``i`` of a batch is row ``i``
of that one draw (:func:`initial_noise`). Because the row length is a
multiple of 16, the first row of a batch-N draw equals the batch-1 draw bit
for bit, so variant 0 of a batch of N is the single result for the same seed
up to float rounding of the batched matmuls (measured on tiny models: ~1e-5
at 8+ steps; with very few steps the Heun step into sigma_min = 1e-3 divides
by it and magnifies rounding to ~1e-3).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ConfigError, ImageInputError, ModelLoadError
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from ..settings import (
    DEFAULT_GUIDANCE_IMAGE,
    DEFAULT_GUIDANCE_TEXT,
    DEFAULT_RHO,
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    DEFAULT_STEPS,
    MAX_BATCH,
    SCHEDULES,
)

logger = logging.getLogger(__name__)

# The reference's Gaussian diffusion: 1024 steps of the "exp" schedule,
# alpha_bar(t) = exp(-12 t), betas capped at 0.999 (shap_e diffusion_config).
REFERENCE_TIMESTEPS = 1024
_EXP_COEFFICIENT = -12.0
_MAX_BETA = 0.999


def karras_sigmas(
    steps: int,
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    rho: float = DEFAULT_RHO,
) -> np.ndarray:
    """Karras et al. (2022) noise levels from ``sigma_max`` to ``sigma_min``, then 0.

    ``steps + 1`` float32 values, like the reference's ``get_sigmas_karras``
    (which appends the zero the last Euler step lands on), computed the same
    way: in float32 with torch. Bit-equality matters: the Heun step into
    ``sigma_min`` = 1e-3 divides by it, so one ulp of difference in a sigma
    shows up as ~1e-2 in the latents.
    """
    import torch

    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}.")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float32)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])]).numpy()


def reference_alphas_cumprod() -> np.ndarray:
    """``alphas_cumprod`` (float64) of the reference's 1024-step "exp" diffusion."""
    t = np.arange(REFERENCE_TIMESTEPS + 1, dtype=np.float64) / REFERENCE_TIMESTEPS
    alpha_bar = np.exp(_EXP_COEFFICIENT * t)
    betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], _MAX_BETA)
    return np.cumprod(1.0 - betas)


def reference_timesteps(sigmas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Map sigmas to the reference's integer timesteps (``GaussianToKarrasDenoiser``).

    ``alpha = 1 / (sigma^2 + 1)``; above the first ``alphas_cumprod`` it is
    step 0, at or below the last it is step 1023, otherwise the timestep is
    interpolated linearly in ``alphas_cumprod`` and truncated to an integer (the
    reference builds a ``torch.long`` tensor from the float). Sigmas are taken
    as float32 (the reference's sigma dtype) and the rest is float64.
    """
    alphas_cumprod = reference_alphas_cumprod()
    sigma = np.asarray(sigmas, dtype=np.float32).astype(np.float64)
    alpha = 1.0 / (sigma**2 + 1.0)
    # np.interp needs increasing x; alphas_cumprod decreases with t.
    steps = np.arange(REFERENCE_TIMESTEPS, dtype=np.float64)
    t = np.interp(alpha, alphas_cumprod[::-1], steps[::-1])
    t = np.where(alpha > alphas_cumprod[0], 0.0, t)
    t = np.where(alpha <= alphas_cumprod[-1], REFERENCE_TIMESTEPS - 1.0, t)
    return np.trunc(t).astype(np.int64)


@dataclass
class _Plan:
    """Everything that differs between the two schedules."""

    sigmas: Any  # float32 CPU tensor, steps + 1 values ending in 0
    timesteps: Any  # one per sigma (int64 or float32), on the model's device
    init_sigma: Any  # noise multiplier
    guided: bool
    clip_per_branch: bool  # reference: clip each branch, then guide
    clip_range: Optional[float]  # diffusers: clip the guided x0 (None: never)
    divide_input: bool  # diffusers divides by sqrt(s^2+1); the reference multiplies


def sample_latents(
    models: Any,
    *,
    images: Any = None,
    prompt: Optional[str] = None,
    steps: int = DEFAULT_STEPS,
    guidance: Optional[float] = None,
    seed: int = 0,
    batch: int = 1,
    schedule: str = "shap-e",
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Any:
    """Sample ``batch`` Shap-E latents; return them as a float32 CPU tensor ``(batch, N * D)``.

    ``models`` is a :class:`~.models.ShapEModels`. Image models take ``images``
    (a PIL image, or a list of 1 or ``batch`` images: variant ``i`` uses image
    ``i``); text models take ``prompt``. ``guidance`` defaults to 3.0 (image) /
    15.0 (text). ``progress`` gets ``(Phase.SAMPLING, k, steps)`` after every
    step; setting ``cancel`` stops before the next prior evaluation with
    :class:`CancelledError`. See the module docstring for the schedules and
    how seeds map to noise.
    """
    _check_arguments(models, images, prompt, steps, seed, batch, schedule, sigma_min, sigma_max)
    steps, seed, batch = int(steps), int(seed), int(batch)
    if guidance is None:
        guidance = DEFAULT_GUIDANCE_IMAGE if models.mode == "image" else DEFAULT_GUIDANCE_TEXT
    if not isinstance(guidance, numbers.Real) or isinstance(guidance, bool):
        raise ConfigError(f"guidance must be a number (e.g. 3.0), got {guidance!r}.")
    guidance = float(guidance)
    if not math.isfinite(guidance) or guidance < 0.0:
        raise ConfigError(f"guidance must be a finite number >= 0, got {guidance}.")

    import torch

    raise_if_cancelled(cancel)
    with torch.inference_mode():
        report(progress, Phase.CONDITIONING, 0, 1)
        if models.mode == "image":
            embeds = _image_embeddings(models, images, batch)
        else:
            embeds = _text_embeddings(models, prompt, batch)
        report(progress, Phase.CONDITIONING, 1, 1)

        if schedule == "shap-e":
            plan = _reference_plan(models, steps, sigma_min, sigma_max, guidance)
        else:
            plan = _diffusers_plan(models, steps, guidance)
        if plan.guided:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])

        noise = initial_noise(seed, batch, models.latent_shape)
        x = (noise * plan.init_sigma).to(models.device)
        denoise = _make_denoiser(models, embeds, plan, guidance)
        x = _heun(denoise, x, plan.sigmas, progress, cancel)
    return x.float().cpu()


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


def _is_integer(value: Any) -> bool:
    # numpy integers count (values read from arrays); bools and floats don't.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_arguments(
    models: Any,
    images: Any,
    prompt: Optional[str],
    steps: int,
    seed: int,
    batch: int,
    schedule: str,
    sigma_min: float,
    sigma_max: float,
) -> None:
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}.")
    if not _is_integer(steps) or not 1 <= steps <= 1000:
        raise ConfigError(f"steps must be an integer between 1 and 1000, got {steps!r}.")
    if not _is_integer(batch) or not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"batch must be an integer between 1 and {MAX_BATCH}, got {batch!r}.")
    # torch.Generator.manual_seed takes any 64-bit pattern, negative or not.
    if not _is_integer(seed) or not -(2**63) <= seed < 2**64:
        raise ConfigError(f"seed must be a whole number that fits in 64 bits, got {seed!r}.")
    if not (
        isinstance(sigma_min, numbers.Real)
        and isinstance(sigma_max, numbers.Real)
        and math.isfinite(sigma_max)
        and 0.0 < sigma_min < sigma_max
    ):
        raise ConfigError(
            f"sigma_min and sigma_max must be finite with 0 < sigma_min < sigma_max, got "
            f"{sigma_min!r} and {sigma_max!r}."
        )
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


def _reference_plan(
    models: Any, steps: int, sigma_min: float, sigma_max: float, guidance: float
) -> _Plan:
    import torch

    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    timesteps = torch.from_numpy(reference_timesteps(sigmas)).to(models.device)
    return _Plan(
        sigmas=torch.from_numpy(sigmas),
        timesteps=timesteps,
        init_sigma=float(sigma_max),
        guided=guidance not in (0.0, 1.0),
        clip_per_branch=True,
        clip_range=None,
        divide_input=False,
    )


def _diffusers_plan(models: Any, steps: int, guidance: float) -> _Plan:
    import torch
    from diffusers import HeunDiscreteScheduler

    # A private copy: the cached scheduler may be in use by another caller.
    scheduler = HeunDiscreteScheduler.from_config(models.scheduler.config)
    if scheduler.config.prediction_type != "sample":
        raise ModelLoadError(
            f"The scheduler predicts {scheduler.config.prediction_type!r}, but Shap-E's prior "
            "predicts the clean sample: the model folder's scheduler/ is not Shap-E's."
        )
    scheduler.set_timesteps(steps, device="cpu")
    # Heun's scheduler lists every sigma but the first and last twice (one
    # entry per model evaluation); keep one per step plus the final 0.
    sigmas = torch.cat([scheduler.sigmas[0::2], scheduler.sigmas[-1:]]).float()
    timesteps = scheduler.timesteps[0::2].float()
    clip = scheduler.config.clip_sample_range if scheduler.config.clip_sample else None
    return _Plan(
        sigmas=sigmas,
        timesteps=timesteps.to(models.device),
        init_sigma=scheduler.init_noise_sigma,
        guided=guidance > 1.0,
        clip_per_branch=False,
        clip_range=clip,
        divide_input=True,
    )


def _make_denoiser(models: Any, embeds: Any, plan: _Plan, guidance: float) -> Callable:
    """Return ``denoise(x, j)``: the guided x0 prediction at ``plan.sigmas[j]``."""
    import torch

    prior = models.prior
    num_embeddings, embedding_dim = models.latent_shape

    def denoise(x: Any, index: int) -> Any:
        sigma = plan.sigmas[index]
        if plan.divide_input:
            scaled = x / ((sigma**2 + 1) ** 0.5)
        else:
            scaled = x * (1.0 / (sigma**2 + 1) ** 0.5)
        scaled = scaled.reshape(x.shape[0], num_embeddings, embedding_dim)
        if plan.guided:
            scaled = torch.cat([scaled, scaled])
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

    return denoise


def _heun(
    denoise: Callable,
    x: Any,
    sigmas: Any,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> Any:
    """Karras' Heun sampler without churn; the step to sigma 0 is an Euler step."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        raise_if_cancelled(cancel)
        d = (x - denoise(x, i)) / sigma
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            raise_if_cancelled(cancel)
            d_2 = (x_2 - denoise(x_2, i + 1)) / sigma_next
            x = x + ((d + d_2) / 2) * dt
        report(progress, Phase.SAMPLING, i + 1, total)
    return x


def sample_latents_grouped(
    models: Any,
    conditions: Sequence[Any],
    seeds: Sequence[int],
    batches: Sequence[int],
    *,
    steps: int = DEFAULT_STEPS,
    guidance: Optional[float] = None,
    schedule: str = "shap-e",
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
    if sum(int(b) for b in batches) > MAX_BATCH:
        raise ConfigError(f"A group holds at most {MAX_BATCH} rows, got {sum(batches)}.")
    for condition, seed, batch in zip(conditions, seeds, batches):
        image = condition if models.mode == "image" else None
        prompt = condition if models.mode == "text" else None
        _check_arguments(models, image, prompt, steps, seed, batch, schedule, sigma_min, sigma_max)
    if guidance is None:
        guidance = DEFAULT_GUIDANCE_IMAGE if models.mode == "image" else DEFAULT_GUIDANCE_TEXT
    guidance = float(guidance)

    import torch

    raise_if_cancelled(cancel)
    with torch.inference_mode():
        report(progress, Phase.CONDITIONING, 0, 1)
        embed = _image_embeddings if models.mode == "image" else _text_embeddings
        embeds = torch.cat([embed(models, c, int(b)) for c, b in zip(conditions, batches)])
        report(progress, Phase.CONDITIONING, 1, 1)
        if schedule == "shap-e":
            plan = _reference_plan(models, int(steps), sigma_min, sigma_max, guidance)
        else:
            plan = _diffusers_plan(models, int(steps), guidance)
        if plan.guided:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        noise = torch.cat(
            [initial_noise(s, int(b), models.latent_shape) for s, b in zip(seeds, batches)]
        )
        x = (noise * plan.init_sigma).to(models.device)
        x = _heun(_make_denoiser(models, embeds, plan, guidance), x, plan.sigmas, progress, cancel)
    return list(x.float().cpu().split([int(b) for b in batches]))
