"""Noise schedules and integrators: a small registry, one entry per sampler.

A :class:`Schedule` is a name and label (what menus show), a ``plan`` builder
(the sigmas, the timesteps the prior sees and how x0 is clipped and guided)
and an ``integrate`` function that walks the sigmas. ``core.choices.SCHEDULES``
is derived from this registry, so adding a sampler is its code here plus one
:func:`register` call below; the CLI, the panel and validation pick it up.

This module imports nothing heavy at import time (``core.choices`` reads it);
numpy, torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError, ModelLoadError
from ..progress import Phase, ProgressCallback, raise_if_cancelled, report

# Karras et al.'s rho, as the reference samples with it.
KARRAS_RHO = 7.0
# The reference's Gaussian diffusion: 1024 steps of the "exp" schedule,
# alpha_bar(t) = exp(-12 t), betas capped at 0.999 (shap_e diffusion_config).
REFERENCE_TIMESTEPS = 1024
_EXP_COEFFICIENT = -12.0
_MAX_BETA = 0.999

#: ``denoise(x, index) -> x0``: the guided clean-sample prediction at ``sigmas[index]``.
Denoiser = Callable[[Any, int], Any]


@dataclass
class Plan:
    """What a schedule tells the shared denoiser and its integrator."""

    sigmas: Any  # float32 CPU tensor, steps + 1 values ending in 0
    timesteps: Any  # one per sigma (int64 or float32), on the model's device
    init_sigma: Any  # noise multiplier
    guided: bool
    clip_per_branch: bool  # reference: clip each branch, then guide
    clip_range: Optional[float]  # diffusers: clip the guided x0 (None: never)
    divide_input: bool  # diffusers divides by sqrt(s^2+1); the reference multiplies


Integrator = Callable[
    [Denoiser, Any, Any, Optional[ProgressCallback], Optional[threading.Event]], Any
]
PlanBuilder = Callable[[Any, int, float, float, float], Plan]


@dataclass(frozen=True)
class Schedule:
    """One sampler: ``plan(models, steps, sigma_min, sigma_max, guidance)`` + ``integrate``."""

    name: str
    label: str
    description: str
    plan: PlanBuilder
    integrate: Integrator


_REGISTRY: dict[str, Schedule] = {}


def register(schedule: Schedule) -> Schedule:
    """Add ``schedule`` to the registry (menu order is registration order; first is default)."""
    if schedule.name in _REGISTRY:
        raise ValueError(f"schedule {schedule.name!r} is already registered")
    _REGISTRY[schedule.name] = schedule
    return schedule


def registered() -> tuple[Schedule, ...]:
    """Every schedule, in menu order."""
    return tuple(_REGISTRY.values())


def get(name: str) -> Schedule:
    """The schedule called ``name``, or :class:`ConfigError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"schedule must be one of {', '.join(_REGISTRY)}, got {name!r}."
        ) from None


# --- sigmas and timesteps ------------------------------------------------------


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = KARRAS_RHO):
    """Karras et al. (2022) noise levels from ``sigma_max`` to ``sigma_min``, then 0.

    ``steps + 1`` float32 values (a numpy array), like the reference's
    ``get_sigmas_karras`` (which appends the zero the last Euler step lands on),
    computed the same way: in float32 with torch. Bit-equality matters: the Heun
    step into ``sigma_min`` = 1e-3 divides by it, so one ulp of difference in a
    sigma shows up as ~1e-2 in the latents.
    """
    import torch

    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}.")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float32)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])]).numpy()


def reference_alphas_cumprod():
    """``alphas_cumprod`` (float64 numpy) of the reference's 1024-step "exp" diffusion."""
    import numpy as np

    t = np.arange(REFERENCE_TIMESTEPS + 1, dtype=np.float64) / REFERENCE_TIMESTEPS
    alpha_bar = np.exp(_EXP_COEFFICIENT * t)
    betas = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], _MAX_BETA)
    return np.cumprod(1.0 - betas)


def reference_timesteps(sigmas: Sequence[float] | Any):
    """Map sigmas to the reference's integer timesteps (``GaussianToKarrasDenoiser``).

    ``alpha = 1 / (sigma^2 + 1)``; above the first ``alphas_cumprod`` it is
    step 0, at or below the last it is step 1023, otherwise the timestep is
    interpolated linearly in ``alphas_cumprod`` and truncated to an integer (the
    reference builds a ``torch.long`` tensor from the float). Sigmas are taken
    as float32 (the reference's sigma dtype) and the rest is float64.
    """
    import numpy as np

    alphas_cumprod = reference_alphas_cumprod()
    sigma = np.asarray(sigmas, dtype=np.float32).astype(np.float64)
    alpha = 1.0 / (sigma**2 + 1.0)
    # np.interp needs increasing x; alphas_cumprod decreases with t.
    steps = np.arange(REFERENCE_TIMESTEPS, dtype=np.float64)
    t = np.interp(alpha, alphas_cumprod[::-1], steps[::-1])
    t = np.where(alpha > alphas_cumprod[0], 0.0, t)
    t = np.where(alpha <= alphas_cumprod[-1], REFERENCE_TIMESTEPS - 1.0, t)
    return np.trunc(t).astype(np.int64)


# --- plans ---------------------------------------------------------------------


def reference_plan(
    models: Any, steps: int, sigma_min: float, sigma_max: float, guidance: float
) -> Plan:
    """OpenAI's sampler: Karras sigmas, integer timesteps, x0 clipped per branch."""
    import torch

    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    timesteps = torch.from_numpy(reference_timesteps(sigmas)).to(models.device)
    return Plan(
        sigmas=torch.from_numpy(sigmas),
        timesteps=timesteps,
        init_sigma=float(sigma_max),
        guided=guidance not in (0.0, 1.0),
        clip_per_branch=True,
        clip_range=None,
        divide_input=False,
    )


def diffusers_plan(
    models: Any, steps: int, sigma_min: float, sigma_max: float, guidance: float
) -> Plan:
    """diffusers' ``HeunDiscreteScheduler`` as its Shap-E pipelines configure it.

    The sigma range is the scheduler's own; ``sigma_min``/``sigma_max`` are not used.
    """
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
    return Plan(
        sigmas=sigmas,
        timesteps=timesteps.to(models.device),
        init_sigma=scheduler.init_noise_sigma,
        guided=guidance > 1.0,
        clip_per_branch=False,
        clip_range=clip,
        divide_input=True,
    )


# --- integrators -----------------------------------------------------------------


def heun(
    denoise: Denoiser,
    x: Any,
    sigmas: Any,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> Any:
    """Karras' Heun sampler without churn; the step to sigma 0 is an Euler step.

    ``cancel`` is checked before every prior evaluation, so a cancel set during
    a step's first evaluation stops before its second.
    """
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


# --- the registry ------------------------------------------------------------------
# Menu order: the first is the default.
register(
    Schedule(
        "shap-e",
        "Shap-E",
        "OpenAI's reference sampler (Karras sigmas 160 to 0.001)",
        plan=reference_plan,
        integrate=heun,
    )
)
register(
    Schedule(
        "diffusers",
        "Diffusers",
        "The diffusers port's schedule (same latents as diffusers)",
        plan=diffusers_plan,
        integrate=heun,
    )
)
