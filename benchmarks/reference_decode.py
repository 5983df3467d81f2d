"""diffusers' decode path, piece by piece, for the decode benchmarks' reference side.

``ShapERenderer.decode_to_mesh`` can't finish on random weights (its marching-cubes
tables stay zero), so the benchmarks run its stages themselves: project the latent
into the NeRSTF MLP's weights as it does, then query that MLP in its batches. These
two steps are the same in every case; only what is timed around them differs.
"""

from __future__ import annotations

from typing import Any, Iterator


def project_into_mlp(renderer: Any, latents: Any, device: Any) -> None:
    """Write ``latents``' projected weights into ``renderer``'s MLP, as decode_to_mesh does.

    In place, as diffusers does it: give it a copy (``copy.deepcopy``) when the
    renderer also serves our side. Call under ``torch.no_grad()``.
    """
    from blender_img3d.core.shap_e.decoding import latent_shape

    params = renderer.params_proj(latents.to(device).reshape(1, *latent_shape(renderer)))
    for name, param in renderer.mlp.state_dict().items():
        if f"nerstf.{name}" in params:
            param.copy_(params[f"nerstf.{name}"].squeeze(0))


def query_fine(renderer: Any, points: Any, batch: int) -> Iterator[tuple[Any, Any]]:
    """``(points chunk, MLP output)`` for ``points`` (1, N, 3), ``batch`` points per call.

    A generator, so a caller keeps only what it needs of each output.
    """
    for index in range(0, points.shape[1], batch):
        part = points[:, index : index + batch]
        yield (
            part,
            renderer.mlp(
                position=part, direction=None, ts=None, nerf_level="fine", rendering_mode="stf"
            ),
        )
