"""Shap-E on diffusers components: loading, sampling, decoding, latents on disk.

- ``loading``: find a model folder (local or hub, pinned revision), load the
  components offline-first, pick device and dtype.
- ``sampling``: CLIP conditioning and the Karras/Heun sampler with guidance in
  one batched prior call (the ``shap-e`` and ``diffusers`` schedules).
- ``decoding``: latents → SDF grid (+ colours) → marching cubes → ``MeshData``,
  with our own query of the renderer's network and kept marching cubes.
- ``latents``: ``.npy`` latents with a JSON sidecar, saved and loaded safely.

May import: ``..errors``, ``..progress``, ``..settings``, ``..mesh.meshdata``;
torch/diffusers/transformers only inside functions.
"""
