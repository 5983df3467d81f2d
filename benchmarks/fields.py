"""The calibrated decode field: the real renderer MLP's cost, an analytic surface's shape.

A random-weight renderer's SDF is a sponge (millions of faces at grid 128),
which makes marching cubes and the colour query far costlier than for a real
object. :class:`CalibratedField` evaluates the full NeRSTF MLP for every query,
as a real decode does, then replaces the SDF channel by an analytic shape whose
surface has a real object's size: the chair below gives ~120k faces at grid 128.
Colours stay the network's own. Both sides of a benchmark use the same shape.
"""

from __future__ import annotations

from typing import Any, Callable

# Sharpness of tanh(k * distance): the field's slope at the surface, in 1/box units.
SHARPNESS = 8.0


def box_sdf(points: Any, centre: tuple, half: tuple) -> Any:
    """Signed distance, positive inside, of an axis-aligned box (float64 torch tensors)."""
    import torch

    q = (points - torch.tensor(centre, dtype=points.dtype)).abs() - torch.tensor(
        half, dtype=points.dtype
    )
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return -(outside + inside)


def chair_sdf(points: Any) -> Any:
    """A chair (seat, back, four legs) in Shap-E's frame, +Z up, inside [-1, 1]^3."""
    import torch

    parts = [
        box_sdf(points, (0.0, 0.0, 0.0), (0.7, 0.7, 0.07)),  # seat
        box_sdf(points, (0.0, 0.63, 0.5), (0.7, 0.07, 0.45)),  # back
    ]
    for x in (-0.6, 0.6):
        for y in (-0.6, 0.6):
            parts.append(box_sdf(points, (x, y, -0.45), (0.07, 0.07, 0.4)))  # legs
    return torch.stack(parts).max(dim=0).values


def sphere_sdf(points: Any, radius: float = 0.6) -> Any:
    return radius - points.norm(dim=-1)


SHAPES: dict[str, Callable[[Any], Any]] = {"chair": chair_sdf, "sphere": sphere_sdf}


def calibrated(field: Any, shape: str = "chair") -> Any:
    """``field`` (an STFField) whose SDF head is ``shape``'s, at the MLP's full cost."""
    import torch

    from blender_img3d.core.shap_e.decoding import STFField

    sdf = SHAPES[shape]

    class CalibratedField(STFField):
        def query(self, positions, head):
            out = super().query(positions, head)  # the network's real cost
            if head != "sdf":
                return out
            analytic = torch.tanh(SHARPNESS * sdf(positions.double().cpu())).float()
            return analytic[None].expand(self.batch_size, -1).to(out.device)

        def select(self, index):
            chosen = super().select(index)
            chosen.__class__ = CalibratedField
            return chosen

    field.__class__ = CalibratedField
    return field


def analytic_sdf(points: Any, shape: str = "chair") -> Any:
    """The calibrated field's SDF values at ``points`` (for the diffusers side)."""
    import torch

    return torch.tanh(SHARPNESS * SHAPES[shape](points.double().cpu())).float()
