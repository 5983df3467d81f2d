"""Sampling: schedules against independent formulas, latents against diffusers and the reference."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from blender_img3d.core.errors import CancelledError, ConfigError, ImageInputError
from blender_img3d.core.progress import Phase
from blender_img3d.core.shap_e import loading as models
from blender_img3d.core.shap_e import sampling as engine
from blender_img3d.core.shap_e import schedules
from tests.fixtures.tiny_models import build_diffusers_pipeline

PROMPT = "a red chair"


@pytest.fixture(scope="module")
def image_models(tiny_image_model_dir):
    # float32: "auto" may pick bf16 on a CPU with native bf16; the references are float32.
    return models.load_models(tiny_image_model_dir, mode="image", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def text_models(tiny_text_model_dir):
    return models.load_models(tiny_text_model_dir, mode="text", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    models.release()


class CountingPrior:
    """Wraps the prior and counts its forward calls."""

    def __init__(self, prior):
        self.prior = prior
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.seen: list[tuple[torch.dtype, torch.dtype, torch.dtype]] = []

    def __call__(self, hidden_states, *, timestep, proj_embedding):
        self.calls += 1
        self.batch_sizes.append(hidden_states.shape[0])
        self.seen.append((hidden_states.dtype, proj_embedding.dtype, timestep.dtype))
        return self.prior(hidden_states, timestep=timestep, proj_embedding=proj_embedding)

    def __getattr__(self, name):
        return getattr(self.prior, name)


# --- schedules --------------------------------------------------------------


def reference_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0):
    """get_sigmas_karras as OpenAI's shap_e/diffusion/k_diffusion.py computes it (float32)."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def reference_alphas_cumprod() -> np.ndarray:
    betas = []
    for i in range(1024):
        t1, t2 = i / 1024, (i + 1) / 1024
        betas.append(min(1 - np.exp(-12 * t2) / np.exp(-12 * t1), 0.999))
    return np.cumprod(1.0 - np.array(betas, dtype=np.float64))


def reference_sigma_to_t(sigmas: torch.Tensor) -> torch.Tensor:
    """GaussianToKarrasDenoiser.sigma_to_t, one sigma at a time, then a long tensor."""
    from scipy import interpolate

    alphas_cumprod = reference_alphas_cumprod()
    to_t = interpolate.interp1d(alphas_cumprod, np.arange(0, 1024))
    out = []
    for sigma in sigmas.cpu().numpy():
        alpha = 1.0 / (sigma**2 + 1)
        if alpha > alphas_cumprod[0]:
            out.append(0)
        elif alpha <= alphas_cumprod[-1]:
            out.append(1023)
        else:
            out.append(float(to_t(alpha)))
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("steps", [1, 2, 16, 64])
def test_karras_sigmas_follow_the_reference_formula(steps):
    ours = schedules.karras_sigmas(steps, 1e-3, 160.0)
    expected = reference_karras(steps, 1e-3, 160.0).numpy()
    assert ours.shape == (steps + 1,)
    np.testing.assert_array_equal(ours, expected)  # bit-equal: see karras_sigmas
    assert ours[0] == pytest.approx(160.0) and ours[-1] == 0.0
    if steps > 1:
        assert ours[-2] == pytest.approx(1e-3)
        assert np.all(np.diff(ours) < 0)


@pytest.mark.parametrize("steps", [2, 16, 64])
def test_timesteps_follow_the_reference_sigma_to_t(steps):
    sigmas = reference_karras(steps, 1e-3, 160.0)
    ours = schedules.reference_timesteps(sigmas.numpy())
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours, reference_sigma_to_t(sigmas).numpy())
    assert ours[-1] == 0 and 0 < ours[0] < 1023
    assert np.all(np.diff(ours) <= 0)


def test_timesteps_saturate_outside_the_trained_range():
    # Shap-E's 1024-step exp schedule covers sigma ~0.109 .. ~403.
    assert schedules.reference_timesteps([1e4, 500.0, 0.05, 0.0]).tolist() == [1023, 1023, 0, 0]


# --- diffusers schedule: same latents as diffusers' pipelines ----------------


@pytest.fixture(scope="module")
def image_pipeline(tiny_image_model_dir):
    return build_diffusers_pipeline(tiny_image_model_dir)


@pytest.fixture(scope="module")
def text_pipeline(tiny_text_model_dir):
    return build_diffusers_pipeline(tiny_text_model_dir)


@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("steps", [2, 5])
def test_diffusers_schedule_matches_diffusers_img2img(
    image_models, image_pipeline, picture, seed, steps
):
    expected = image_pipeline(
        picture,
        num_inference_steps=steps,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    ours = engine.sample_latents(
        image_models, images=picture, steps=steps, guidance=3.0, seed=seed, schedule="diffusers"
    )
    assert ours.shape == (1, 32 * 16) and ours.dtype == torch.float32
    assert torch.allclose(ours, expected.reshape(1, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("steps", [2, 5])
def test_diffusers_schedule_matches_diffusers_text(text_models, text_pipeline, seed, steps):
    expected = text_pipeline(
        PROMPT,
        num_inference_steps=steps,
        guidance_scale=15.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="latent",
    ).images
    ours = engine.sample_latents(
        text_models, prompt=PROMPT, steps=steps, guidance=15.0, seed=seed, schedule="diffusers"
    )
    assert torch.allclose(ours, expected.reshape(1, -1), atol=1e-4, rtol=0)


def test_diffusers_schedule_matches_a_batch_without_guidance(image_models, image_pipeline, picture):
    expected = image_pipeline(
        picture,
        num_images_per_prompt=3,
        num_inference_steps=3,
        guidance_scale=0.5,  # diffusers skips guidance at or below 1
        generator=torch.Generator("cpu").manual_seed(4),
        output_type="latent",
    ).images
    ours = engine.sample_latents(
        image_models, images=picture, steps=3, guidance=0.5, seed=4, batch=3, schedule="diffusers"
    )
    assert torch.allclose(ours, expected.reshape(3, -1), atol=1e-4, rtol=0)


# --- shap-e schedule: same latents as the reference algorithm ---------------


def reference_sample(models_, embeds, *, steps, guidance, seed, batch, sigma_min, sigma_max):
    """OpenAI's karras_sample + sample_heun with GaussianToKarrasDenoiser, step by step.

    Conditional rows first as the reference orders them; x0 clipped per branch
    before guidance; Euler on the last step to sigma 0.
    """
    prior = models_.prior
    n, d = models_.latent_shape
    sigmas = reference_karras(steps, sigma_min, sigma_max)
    generator = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn((batch, n * d), generator=generator) * sigma_max
    # sample.py: model_kwargs become cat([cond, zeros]) unless guidance is 0 or 1,
    # and karras_sample then runs the conditional model alone.
    guided = guidance not in (0.0, 1.0)
    cond = torch.cat([embeds, torch.zeros_like(embeds)]) if guided else embeds

    def denoiser(x_t, sigma):
        if guided:
            x_t = torch.cat([x_t, x_t])
        t = reference_sigma_to_t(sigma.reshape(1))[0]
        c_in = 1.0 / (sigma**2 + 1) ** 0.5
        out = prior((x_t * c_in).reshape(-1, n, d), timestep=t, proj_embedding=cond)
        x0 = out.predicted_image_embedding[..., :d].reshape(len(x_t), -1).clamp(-1, 1)
        if not guided:
            return x0
        cond_x0, uncond_x0 = torch.split(x0, len(x0) // 2)
        return uncond_x0 + guidance * (cond_x0 - uncond_x0)

    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            denoised = denoiser(x, sigmas[i])
            d_1 = (x - denoised) / sigmas[i]
            dt = sigmas[i + 1] - sigmas[i]
            if sigmas[i + 1] == 0:
                x = x + d_1 * dt
            else:
                x_2 = x + d_1 * dt
                d_2 = (x_2 - denoiser(x_2, sigmas[i + 1])) / sigmas[i + 1]
                x = x + (d_1 + d_2) / 2 * dt
    return x


def image_embeds(models_, picture, batch):
    pixels = models_.image_processor(picture, return_tensors="pt").pixel_values
    with torch.no_grad():
        hidden = models_.image_encoder(pixels).last_hidden_state[:, 1:, :]
    return hidden.repeat_interleave(batch, dim=0)


@pytest.mark.parametrize(("steps", "seed", "batch"), [(3, 0, 1), (6, 9, 2)])
def test_shap_e_schedule_matches_the_reference_algorithm(image_models, picture, steps, seed, batch):
    expected = reference_sample(
        image_models,
        image_embeds(image_models, picture, batch),
        steps=steps,
        guidance=3.0,
        seed=seed,
        batch=batch,
        sigma_min=1e-3,
        sigma_max=160.0,
    )
    ours = engine.sample_latents(image_models, images=picture, steps=steps, seed=seed, batch=batch)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)


def text_embeds(models_, prompt, batch):
    tokens = models_.tokenizer(
        [prompt], padding="max_length", max_length=32, truncation=True, return_tensors="pt"
    )
    ids = tokens.input_ids.masked_fill(tokens.attention_mask == 0, 0)
    with torch.no_grad():
        embeds = models_.text_encoder(ids).text_embeds
    embeds = embeds / embeds.norm(dim=-1, keepdim=True) * embeds.shape[1] ** 0.5
    return embeds.repeat_interleave(batch, dim=0)


@pytest.mark.parametrize("seed", [2, 13])
@pytest.mark.parametrize("steps", [3, 6])
def test_shap_e_text_sampling_matches_the_reference_algorithm(text_models, seed, steps):
    expected = reference_sample(
        text_models, text_embeds(text_models, PROMPT, 1), steps=steps, guidance=15.0,
        seed=seed, batch=1, sigma_min=1e-3, sigma_max=160.0,
    )  # fmt: skip
    ours = engine.sample_latents(text_models, prompt=PROMPT, steps=steps, seed=seed)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_shap_e_schedule_without_guidance_runs_the_conditional_model_alone(
    image_models, picture, guidance
):
    # The reference skips the zero branch for guidance 0 *and* 1 (not "uncond only" at 0).
    expected = reference_sample(
        image_models, image_embeds(image_models, picture, 2), steps=4, guidance=guidance,
        seed=3, batch=2, sigma_min=1e-3, sigma_max=160.0,
    )  # fmt: skip
    counting = CountingPrior(image_models.prior)
    wrapped = dataclasses.replace(image_models, prior=counting)
    ours = engine.sample_latents(
        wrapped, images=picture, steps=4, seed=3, batch=2, guidance=guidance
    )
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)
    assert counting.batch_sizes == [2] * (2 * 4 - 1)


def test_the_two_schedules_give_different_latents(image_models, picture):
    reference = engine.sample_latents(image_models, images=picture, steps=4, seed=1)
    ported = engine.sample_latents(
        image_models, images=picture, steps=4, seed=1, schedule="diffusers"
    )
    assert (reference - ported).abs().max() > 1e-2


# --- seeds, batches, progress, cancel ----------------------------------------


def test_same_seed_same_latents_and_other_seed_differs(image_models, picture):
    first = engine.sample_latents(image_models, images=picture, steps=3, seed=7)
    again = engine.sample_latents(image_models, images=picture, steps=3, seed=7)
    other = engine.sample_latents(image_models, images=picture, steps=3, seed=8)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-2


def test_variant_noise_is_row_i_of_one_draw():
    single = engine.initial_noise(5, 1, (32, 16))
    batch = engine.initial_noise(5, 4, (32, 16))
    assert batch.shape == (4, 512) and batch.dtype == torch.float32
    assert torch.equal(batch[:1], single)
    assert torch.equal(engine.initial_noise(5, 4, (32, 16)), batch)


@pytest.mark.slow
def test_batch_gives_distinct_variants_and_variant_zero_is_the_single_result(image_models, picture):
    single = engine.sample_latents(image_models, images=picture, steps=8, seed=5)
    batch = engine.sample_latents(image_models, images=picture, steps=8, seed=5, batch=4)
    assert batch.shape == (4, 32 * 16)
    for i in range(4):
        for j in range(i + 1, 4):
            assert (batch[i] - batch[j]).abs().max() > 1e-2
    # Same noise row; only the batched matmuls' rounding differs.
    assert torch.allclose(batch[:1], single, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_one_image_per_variant_conditions_each_row(image_models, picture):
    flipped = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    paired = engine.sample_latents(image_models, images=[picture, flipped], steps=8, batch=2)
    alone = engine.sample_latents(image_models, images=[flipped], steps=8, batch=2)
    shared = engine.sample_latents(image_models, images=[picture], steps=8, batch=2)
    assert torch.allclose(paired[1], alone[1], atol=1e-4, rtol=0)
    assert torch.allclose(paired[0], shared[0], atol=1e-4, rtol=0)
    assert (paired[1] - shared[1]).abs().max() > 1e-2
    with pytest.raises(ConfigError, match="one per variant"):
        engine.sample_latents(image_models, images=[picture, flipped], steps=2, batch=3)


def test_progress_is_reported_once_per_step(text_models):
    calls: list[tuple[str, int, int]] = []
    engine.sample_latents(text_models, prompt=PROMPT, steps=5, progress=lambda *a: calls.append(a))
    sampling = [c for c in calls if c[0] == Phase.SAMPLING]
    assert sampling == [(Phase.SAMPLING, k, 5) for k in range(1, 6)]


@pytest.mark.parametrize("schedule", ["shap-e", "diffusers"])
def test_cancel_stops_within_the_step_it_was_set_in(image_models, picture, schedule):
    counting = CountingPrior(image_models.prior)
    wrapped = dataclasses.replace(image_models, prior=counting)
    cancel = threading.Event()
    calls_at_cancel: list[int] = []

    def progress(phase, step, total):
        if phase == Phase.SAMPLING and step == 2:
            cancel.set()
            calls_at_cancel.append(counting.calls)

    with pytest.raises(CancelledError):
        engine.sample_latents(
            wrapped, images=picture, steps=6, schedule=schedule, progress=progress, cancel=cancel
        )
    assert calls_at_cancel == [4]  # two Heun steps, two prior evaluations each
    assert counting.calls == 4


@pytest.mark.parametrize("schedule", ["shap-e", "diffusers"])
def test_cancel_set_during_a_steps_first_prior_call_stops_before_its_second(
    image_models, picture, schedule
):
    # The mid-step check: a cancel that arrives while the prior evaluates the
    # first half of a Heun step must not cost a second evaluation.
    cancel = threading.Event()

    class CancellingPrior(CountingPrior):
        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            if self.calls == 3:  # step 2's first evaluation
                cancel.set()
            return out

    counting = CancellingPrior(image_models.prior)
    wrapped = dataclasses.replace(image_models, prior=counting)
    steps_done: list[int] = []
    with pytest.raises(CancelledError):
        engine.sample_latents(
            wrapped,
            images=picture,
            steps=6,
            schedule=schedule,
            progress=lambda phase, k, total: (
                steps_done.append(k) if phase == Phase.SAMPLING else None
            ),
            cancel=cancel,
        )
    assert counting.calls == 3
    assert steps_done == [1]


def test_initial_noise_is_drawn_on_the_cpu_whatever_the_model_device(text_models, monkeypatch):
    # The models moved to "meta" (shapes without values): if the noise were drawn
    # with a generator on the model's device, a seed would mean different noise on
    # every GPU. The run ends when the meta latents are copied back to the CPU.
    import copy

    meta = dataclasses.replace(
        text_models,
        device=torch.device("meta"),
        prior=copy.deepcopy(text_models.prior).to("meta"),
        text_encoder=copy.deepcopy(text_models.text_encoder).to("meta"),
    )
    draws: list[tuple[torch.device, torch.Tensor]] = []
    real_randn = torch.randn

    def spy(*args, **kwargs):
        out = real_randn(*args, **kwargs)
        generator = kwargs.get("generator")
        draws.append((None if generator is None else generator.device, out))
        return out

    monkeypatch.setattr(torch, "randn", spy)
    with pytest.raises(NotImplementedError, match="meta"):
        engine.sample_latents(meta, prompt=PROMPT, steps=2, seed=21, batch=2)
    assert len(draws) == 1
    device, noise = draws[0]
    assert device == torch.device("cpu") and noise.device == torch.device("cpu")
    expected = real_randn((2, 32 * 16), generator=torch.Generator("cpu").manual_seed(21))
    assert torch.equal(noise, expected)


def test_one_batched_prior_call_per_evaluation(image_models, picture):
    counting = CountingPrior(image_models.prior)
    wrapped = dataclasses.replace(image_models, prior=counting)
    engine.sample_latents(wrapped, images=picture, steps=4)
    assert counting.calls == 2 * 4 - 1  # Heun steps, then one Euler step to sigma 0


def test_wrong_inputs_raise_typed_errors(image_models, text_models, picture):
    with pytest.raises(ConfigError, match="image-to-3D"):
        engine.sample_latents(image_models, prompt=PROMPT)
    with pytest.raises(ConfigError, match="text-to-3D"):
        engine.sample_latents(text_models, images=picture)
    with pytest.raises(ConfigError, match="empty"):
        engine.sample_latents(text_models, prompt="   ")
    with pytest.raises(ImageInputError):
        engine.sample_latents(image_models, images="photo.png")
    with pytest.raises(ConfigError, match="steps"):
        engine.sample_latents(text_models, prompt=PROMPT, steps=0)
    with pytest.raises(ConfigError, match="schedule"):
        engine.sample_latents(text_models, prompt=PROMPT, schedule="ddim")
    with pytest.raises(ConfigError, match="batch"):
        engine.sample_latents(text_models, prompt=PROMPT, batch=0)
    with pytest.raises(ConfigError, match="guidance"):
        engine.sample_latents(text_models, prompt=PROMPT, guidance=float("nan"))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_prior_gets_its_dtype_and_the_state_stays_float32(
    tiny_image_model_dir, image_models, picture, dtype
):
    half = models.load_models(tiny_image_model_dir, mode="image", device="cpu", dtype=dtype)
    counting = CountingPrior(half.prior)
    wrapped = dataclasses.replace(half, prior=counting)
    for schedule in ("shap-e", "diffusers"):
        counting.seen.clear()
        ours = engine.sample_latents(wrapped, images=picture, steps=4, seed=4, schedule=schedule)
        full = engine.sample_latents(
            image_models, images=picture, steps=4, seed=4, schedule=schedule
        )
        assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
        # Latents and conditioning in the prior's dtype; timesteps as int64 (reference) or
        # float32 (diffusers) so the sinusoidal embedding is computed in float32.
        expected_t = torch.int64 if schedule == "shap-e" else torch.float32
        assert set(counting.seen) == {(half.prior.dtype, half.prior.dtype, expected_t)}
        # Half precision changes rounding, not the result: a state kept in half
        # precision, or a cast in the wrong place, is far off.
        error = (ours - full).abs().max() / full.abs().max()
        assert error < (0.05 if dtype == "float16" else 0.3)
        assert torch.corrcoef(torch.stack([ours.flatten(), full.flatten()]))[0, 1] > 0.98


def test_numpy_integers_are_accepted_and_bad_numbers_rejected(image_models, picture):
    ours = engine.sample_latents(
        image_models, images=picture, steps=np.int64(2), seed=np.int64(3), batch=np.int32(1)
    )
    assert torch.equal(ours, engine.sample_latents(image_models, images=picture, steps=2, seed=3))
    bad = [
        ({"seed": 2**64}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"steps": 2.0}, "steps"),
        ({"batch": True}, "batch"),
        ({"guidance": "high"}, "guidance"),
        ({"sigma_max": float("inf")}, "sigma"),
        ({"sigma_min": 0.0}, "sigma"),
    ]
    for kwargs, word in bad:
        with pytest.raises(ConfigError, match=word):
            engine.sample_latents(image_models, images=picture, **{"steps": 2, **kwargs})


# --- reduced precision: drift against float32, autocast, stats --------------------------------


@pytest.mark.parametrize(
    ("dtype", "bound"), [("bfloat16", 0.3), ("autocast", 0.3), ("float16", 0.05)]
)
def test_latent_drift_against_float32_is_reported_and_bounded(
    tiny_image_model_dir, image_models, picture, dtype, bound, record_property
):
    reduced = models.load_models(tiny_image_model_dir, mode="image", device="cpu", dtype=dtype)
    ours = engine.sample_latents(reduced, images=picture, steps=8, seed=2)
    full = engine.sample_latents(image_models, images=picture, steps=8, seed=2)
    drift = float((ours - full).abs().max() / full.abs().max())
    record_property(f"latent_drift_{dtype}", drift)  # in the junit XML; see RESULTS.md
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert 0.0 < drift < bound


def test_autocast_runs_float32_weights_with_bf16_products(tiny_image_model_dir, picture):
    faithful = models.load_models(
        tiny_image_model_dir, mode="image", device="cpu", dtype="autocast"
    )
    seen = []
    real_linear = torch.nn.functional.linear

    def spy(x, weight, bias=None):
        out = real_linear(x, weight, bias)
        seen.append((weight.dtype, out.dtype))
        return out

    counting = CountingPrior(faithful.prior)
    wrapped = dataclasses.replace(faithful, prior=counting)
    try:
        torch.nn.functional.linear = spy
        engine.sample_latents(wrapped, images=picture, steps=2, seed=1)
    finally:
        torch.nn.functional.linear = real_linear
    assert {w for w, _ in seen} == {torch.float32}  # the weights stay float32
    assert torch.bfloat16 in {o for _, o in seen}  # the products run in bf16
    assert {s[0] for s in counting.seen} == {torch.float32}


def test_stats_count_prior_calls_and_split_the_time(image_models, picture):
    stats: dict = {}
    engine.sample_latents(image_models, images=picture, steps=4, stats=stats)
    assert stats["prior_calls"] == 2 * 4 - 1
    assert stats["condition_s"] > 0 and stats["sample_s"] > 0
