"""How much to trust a cut-out: a confidence from cues that need no ground truth.

Every offline cut, and the learned one, returns *something*, even for a
picture with no single object in it (a landscape, a texture, a crowd). So each
cut is scored here, from what a right cut of one object looks like: one main
part (not a scatter), neither a speck nor the whole picture, colours that
differ from the background's, an outline along the picture's edges, not running
along the frame. The confidence is the weakest cue; the caller keeps the picture
when it is low and names that cue to the user (:mod:`.background`).

Cues are judged at :data:`ANALYSIS_SIDE`, where the offline removers work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

# The offline removers analyse the picture at this long side, and cuts are judged
# there: the box and the mask's shape are settled long before full size.
ANALYSIS_SIDE = 256
# Colour-histogram bins per channel for the object/background separation.
_BINS = 8
# A mask holding less / more than these shares of the picture is a miss / the scene.
_MIN_COVERAGE, _MAX_COVERAGE = 0.03, 0.85
# Separation (1 - Bhattacharyya coefficient of object and background colours) that
# counts as full for a pixel-exact cut (the flood's).
_FULL_SEPARATION = 0.5
# The outline's mean gradient over the picture's: a real object's outline runs along
# edges (3 to 7 times the average on the corpus's good cuts), a guessed one crosses
# texture (2 to 2.8). Scored 0 at _ZERO, 0.5 (the gate) at 3, 1 at _ZERO + _SPAN.
_EDGE_CONTRAST_ZERO = 1.75
_EDGE_CONTRAST_SPAN = 2.5
# Specks below this share of the picture are ignored when judging the mask's parts.
_SPECK_SHARE = 0.0005
# A cut covering more of the frame's border than _MAX_FRAME_SHARE - _FRAME_SPAN runs
# along it: scored 1 up to 10 %, 0.5 at 15 %, 0 at 20 %. The saliency's cut keeps
# off the frame unless the object really reaches it (a person cut by the bottom
# edge: 3 to 10 % of the border on the photo corpus); a region of the scene (a
# building, a street, a wall) runs along more of it.
_MAX_FRAME_SHARE = 0.2
_FRAME_SPAN = 0.1


@dataclass
class Scores:
    """The cues of a cut's confidence, each 0..1; the confidence is the smallest.

    A cue a remover does not judge stays at 1.
    """

    dominance: float = 1.0  # share of the mask in its largest part
    separation: float = 1.0  # object and background colours differ
    coverage: float = 1.0  # neither a speck nor the whole picture
    edges: float = 1.0  # the outline follows the picture's edges
    frame: float = 1.0  # the cut does not run along the picture's frame
    details: dict[str, float] = field(default_factory=dict)

    def _cues(self) -> dict[str, float]:
        return {
            "dominance": self.dominance,
            "separation": self.separation,
            "coverage": self.coverage,
            "edges": self.edges,
            "frame": self.frame,
        }

    @property
    def confidence(self) -> float:
        return float(min(self._cues().values()))

    def weakest(self) -> str:
        """The name of the lowest cue, to say why a cut was not trusted."""
        cues = self._cues()
        return min(cues, key=cues.get)


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of a picture reduced to :data:`ANALYSIS_SIDE` (never enlarged)."""
    factor = min(1.0, ANALYSIS_SIDE / max(height, width))
    return max(8, round(width * factor)), max(8, round(height * factor))


def analysis_picture(rgb8: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 picture reduced to :data:`ANALYSIS_SIDE` (box filter)."""
    height, width = rgb8.shape[:2]
    size = analysis_size(width, height)
    return np.asarray(Image.fromarray(rgb8, "RGB").resize(size, Image.Resampling.BOX))


def score_mask(rgb8: np.ndarray, mask: np.ndarray, raw: np.ndarray) -> Scores:
    """:func:`cut_confidence` of a full-size mask, judged at :data:`ANALYSIS_SIDE`."""
    height, width = mask.shape
    size = analysis_size(width, height)

    def shrink(values: np.ndarray) -> np.ndarray:
        image = Image.fromarray(values.astype(np.float32), "F")
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR)) >= 0.5

    return cut_confidence(analysis_picture(rgb8), shrink(mask), raw=shrink(raw))


def cut_confidence(
    rgb8: np.ndarray,
    mask: np.ndarray,
    *,
    raw: Optional[np.ndarray] = None,
    outline: bool = True,
    frame: bool = False,
    full_separation: float = _FULL_SEPARATION,
) -> Scores:
    """Score a cut: coverage, dominance, separation, and the outline or the frame cue.

    ``raw`` is the mask before its debris was dropped: how much of it the
    largest part holds is the dominance (a cut into many equal pieces is a
    scene or a texture, not an object). ``outline`` judges whether the cut
    follows the picture's edges (meaningful for a pixel-exact cut, not for one
    made of superpixels); ``frame`` whether it runs along the picture's border.
    ``full_separation`` is the colour separation that scores 1.
    """
    scores = Scores()
    coverage = float(mask.mean())
    scores.details["coverage"] = round(coverage, 4)
    if not mask.any() or mask.all():
        scores.coverage = 0.0
        return scores
    scores.coverage = coverage_score(coverage)
    scores.dominance = dominant_share(mask if raw is None else raw)
    separation = _colour_separation(rgb8, mask)
    scores.separation = min(1.0, separation / full_separation)
    scores.details["colour_separation"] = round(separation, 4)
    if outline:
        contrast = _outline_contrast(rgb8, mask)
        scores.edges = float(
            np.clip((contrast - _EDGE_CONTRAST_ZERO) / _EDGE_CONTRAST_SPAN, 0.0, 1.0)
        )
        scores.details["outline_contrast"] = round(contrast, 3)
    if frame:
        share = frame_share(mask)
        scores.frame = float(np.clip((_MAX_FRAME_SHARE - share) / _FRAME_SPAN, 0.0, 1.0))
        scores.details["frame_share"] = round(share, 4)
    judged = ["dominance", "separation"] + ["edges"] * outline + ["frame"] * frame
    scores.details.update({name: round(getattr(scores, name), 4) for name in judged})
    return scores


def frame_share(mask: np.ndarray) -> float:
    """Share of the picture's border pixels the mask covers."""
    ring = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(ring.mean())


def dominant_share(mask: np.ndarray) -> float:
    """Share of the mask's pixels in its largest 8-connected part (specks ignored)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:]
    real = sizes[sizes >= _SPECK_SHARE * mask.size]
    sizes = real if real.size else sizes
    return float(sizes.max() / sizes.sum())


def coverage_score(coverage: float) -> float:
    """1 inside [_MIN_COVERAGE, _MAX_COVERAGE], falling linearly to 0 at 1 % / 95 %."""
    if coverage < _MIN_COVERAGE:
        return float(np.clip((coverage - 0.01) / (_MIN_COVERAGE - 0.01), 0.0, 1.0))
    if coverage > _MAX_COVERAGE:
        return float(np.clip((0.95 - coverage) / (0.95 - _MAX_COVERAGE), 0.0, 1.0))
    return 1.0


def _colour_separation(rgb8: np.ndarray, mask: np.ndarray) -> float:
    """1 minus the Bhattacharyya coefficient of the object's and background's colour histograms."""
    quantised = rgb8.astype(np.int32) * _BINS // 256
    index = (quantised[..., 0] * _BINS + quantised[..., 1]) * _BINS + quantised[..., 2]
    inside = np.bincount(index[mask], minlength=_BINS**3).astype(np.float64)
    outside = np.bincount(index[~mask], minlength=_BINS**3).astype(np.float64)
    overlap = np.sum(np.sqrt(inside / inside.sum() * outside / outside.sum()))
    return float(1.0 - overlap)


def _outline_contrast(rgb8: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude on the mask's outline, over the picture's mean gradient."""
    from scipy import ndimage

    grey = ndimage.gaussian_filter(rgb8.astype(np.float32).mean(axis=2), 1.0)
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    outline = mask & ~ndimage.binary_erosion(mask)
    if not outline.any():
        return 0.0
    return float(magnitude[outline].mean() / (magnitude.mean() + 1e-6))
