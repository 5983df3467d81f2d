"""Shap-E on diffusers components: loading, sampling, decoding, latents on disk.

- ``loading``: find a model folder (local or hub, pinned revision), load the
  components offline-first, pick device and dtype.
- ``schedules``: the sampler registry (sigmas, timesteps, clipping, the Heun
  integrator); ``core.choices.SCHEDULES`` is derived from it.
- ``sampling``: CLIP conditioning and the guided denoiser, one batched prior
  call per evaluation, driving a registered schedule.
- ``decoding``: latents → SDF grid → marching cubes → ``MeshData``, with our own
  query of the renderer's network and kept marching cubes; colours at every
  vertex (``decode_latents``) or later, at the vertices mesh processing keeps
  (``decode_surfaces``, the pipeline's way).
- ``latents``: ``.npy`` latents with a JSON sidecar, saved and loaded safely.
- ``warmup``: import the engine in a background thread before the first
  Generate (Blender's panel starts it when first drawn): a cold start is mostly
  imports.

May import: ``..errors``, ``..progress``, ``..settings``, ``..mesh.meshdata``;
torch/diffusers/transformers only inside functions (``schedules`` is read by
``core.choices`` and must not even import ``..settings`` at import time).

Why the sampler is what it is
-----------------------------
The default ``"shap-e"`` schedule is OpenAI's reference sampler as the product
we replace ran it (``sample_latents(use_karras=True, karras_steps=64,
sigma_min=1e-3, sigma_max=160, s_churn=0, clip_denoised=True)``), because a
seed must give the user the object they got before. It differs from diffusers'
port in ways that change the latents: the reference maps each Karras sigma to an
*integer* timestep of its 1024-step "exp" diffusion; its prior output *is* the
x0 prediction (mean type ``x_start``, no c_skip/c_out), clipped per branch
*before* guidance; and it scales the input by ``1 / sqrt(sigma^2 + 1)``. The
``"diffusers"`` schedule reproduces ``ShapE(Img2Img)Pipeline`` instead (float
timesteps over the scheduler's own sigma range, x0 clipped *after* guidance),
so its latents equal diffusers' for the same seed; the tests compare both with
independent implementations.

Both use zeros as the unconditional embedding, as both references do (for
image300M the zero patch grid goes through the prior's own LayerNorm +
projection, whose bias is what the reference sees too). Rows never interact in
the prior, so putting the unconditional rows first (diffusers' order, not the
reference's) moves only their batch position. The reference's channel
scales/biases are taken as the identity: its latent bottlenecks already bound
latents with tanh and diffusers applies none; if a future diffusion config
carried scales, both schedules would need ``(x - b) / s`` on the output.

No faster "Draft" sampler: DPM-Solver++(2M) on the same Karras sigmas was
checked on an exact Gaussian-mixture denoiser (``benchmarks/bench_samplers.py``)
and, at 20 prior calls or fewer, lands 5.6-14x further from a 1000-step solution
of the same ODE than the default 64 Heun steps (127 calls); it needs 80-96
calls to match them, so it would save little and is not offered.

Precision: the reference runs under ``torch.autocast`` (fp16 matmuls over fp32
weights). We cast the prior instead and keep x0, guidance and the Heun state in
float32, so reduced-precision runs differ from it by rounding only; timesteps
reach the prior as int64/float32 because float16 can't hold e.g. 1000.37.

Seeds: the initial noise is drawn on the CPU with
``torch.Generator("cpu").manual_seed(seed)`` in diffusers' shape and order, then
moved, so a seed means the same starting point on every device. Variant ``i``
of a batch is row ``i`` of one draw; the row length being a multiple of 16, row
0 of a batch-N draw equals the batch-1 draw bit for bit.
"""
