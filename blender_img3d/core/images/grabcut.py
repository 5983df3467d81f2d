"""The offline remover for busy photos: GrabCut (OpenCV), with a score of how much to trust it.

GrabCut (Rother et al., 2004) models object and background as colour mixtures
and cuts the picture along the cheapest boundary between them. Seeded only with
"the object is inside this rectangle", it cuts a cup from a table or a bird
from a blurred garden; on a scene with no single object it still returns
*something*, so every cut here is scored and the caller keeps the picture when
the score is low (see :func:`cut_confidence`).

OpenCV (``opencv-python-headless``) is imported only when this runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

from .masks import clean_mask

log = logging.getLogger(__name__)

# GrabCut runs at this long side: its graph cut and colour models cost time per
# pixel, and the box and the mask's shape are settled long before full size.
GRABCUT_SIDE = 256
# Two seeds: the object within 2 % of the frame, and within 8 %. A real object
# comes out the same from both; a cut that depends on the seed is a guess. (One
# round for the second run is cheaper but lets wrong cuts through on the corpus.)
_MARGINS = (0.02, 0.08)
_ITERATIONS = (3, 3)
# Colour-histogram bins per channel for the object/background separation.
_BINS = 8
# A mask holding less / more than these shares of the picture is a miss / the scene.
_MIN_COVERAGE, _MAX_COVERAGE = 0.03, 0.85
# Separation (1 - Bhattacharyya coefficient of object and background colours) that counts as full.
_FULL_SEPARATION = 0.5
# The outline's mean gradient over the picture's: a real object's outline runs along
# edges (3 to 7 times the average on the corpus's good cuts), a guessed one crosses
# texture (2 to 2.8). Scored 0 at _ZERO, 0.5 (the gate) at 3, 1 at _ZERO + _SPAN.
_EDGE_CONTRAST_ZERO = 1.75
_EDGE_CONTRAST_SPAN = 2.5
# Specks below this share of the picture are ignored when judging the mask's parts.
_SPECK_SHARE = 0.0005


@dataclass
class Scores:
    """The parts of a cut's confidence, each 0..1; the confidence is the smallest."""

    agreement: float = 1.0  # the same cut from different seeds (mask IoU)
    dominance: float = 1.0  # share of the mask in its largest part
    separation: float = 1.0  # object and background colours differ
    coverage: float = 1.0  # neither a speck nor the whole picture
    edges: float = 1.0  # the outline follows the picture's edges
    details: dict[str, float] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return float(
            min(self.agreement, self.dominance, self.separation, self.coverage, self.edges)
        )

    def weakest(self) -> str:
        """The name of the lowest part, to say why a cut was not trusted."""
        parts = {
            "agreement": self.agreement,
            "dominance": self.dominance,
            "separation": self.separation,
            "coverage": self.coverage,
            "edges": self.edges,
        }
        return min(parts, key=parts.get)


def grabcut_mask(rgb8: np.ndarray) -> tuple[np.ndarray, np.ndarray, Scores]:
    """The object's (H, W) bool mask and soft alpha in the (H, W, 3) uint8 picture, and scores."""
    cv2 = _opencv()
    height, width = rgb8.shape[:2]
    factor = min(1.0, GRABCUT_SIDE / max(height, width))
    small_size = (max(8, round(width * factor)), max(8, round(height * factor)))
    small = np.asarray(Image.fromarray(rgb8, "RGB").resize(small_size, Image.Resampling.BOX))
    bgr = np.ascontiguousarray(small[..., ::-1])
    raw = [
        _rect_grabcut(cv2, bgr, margin, iterations)
        for margin, iterations in zip(_MARGINS, _ITERATIONS)
    ]
    masks = [_main_parts(cut) for cut in raw]
    scores = cut_confidence(small, masks[0], masks[1], raw=raw[0])
    if not masks[0].any():
        empty = np.zeros((height, width), bool)
        return empty, empty.astype(np.float32), scores
    # Cleaned here, at GrabCut's size: at full size the same work costs 50 times more.
    cleaned = clean_mask(masks[0], fill_small_holes=True)
    soft = Image.fromarray(cleaned.astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    # The bilinear ramp (about one model-input pixel wide) is the cut's feathered edge.
    alpha = np.clip(np.asarray(soft, np.float32), 0.0, 1.0)
    return alpha >= 0.5, alpha, scores


def score_mask(rgb8: np.ndarray, mask: np.ndarray, raw: np.ndarray) -> Scores:
    """:func:`cut_confidence` of another remover's full-size mask, judged at GrabCut's size."""
    height, width = mask.shape
    factor = min(1.0, GRABCUT_SIDE / max(height, width))
    size = (max(8, round(width * factor)), max(8, round(height * factor)))

    def shrink(values: np.ndarray) -> np.ndarray:
        image = Image.fromarray(values.astype(np.float32), "F")
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR)) >= 0.5

    small = np.asarray(Image.fromarray(rgb8, "RGB").resize(size, Image.Resampling.BOX))
    return cut_confidence(small, shrink(mask), raw=shrink(raw))


def cut_confidence(
    rgb8: np.ndarray,
    mask: np.ndarray,
    other: Optional[np.ndarray] = None,
    *,
    raw: Optional[np.ndarray] = None,
) -> Scores:
    """Score a cut: agreement with ``other`` (if given), dominance, separation, coverage.

    ``raw`` is the mask before its debris was dropped: how much of it the
    largest part holds is the dominance (a cut into many equal pieces is a
    scene or a texture, not an object).
    """
    scores = Scores()
    coverage = float(mask.mean())
    scores.details["coverage"] = round(coverage, 4)
    if not mask.any() or mask.all():
        scores.coverage = 0.0
        return scores
    scores.coverage = coverage_score(coverage)
    if other is not None:
        union = np.count_nonzero(mask | other)
        scores.agreement = np.count_nonzero(mask & other) / union if union else 0.0
    scores.dominance = dominant_share(mask if raw is None else raw)
    scores.separation = min(1.0, _colour_separation(rgb8, mask) / _FULL_SEPARATION)
    contrast = _outline_contrast(rgb8, mask)
    scores.edges = float(np.clip((contrast - _EDGE_CONTRAST_ZERO) / _EDGE_CONTRAST_SPAN, 0.0, 1.0))
    scores.details["outline_contrast"] = round(contrast, 3)
    scores.details.update(
        edges=round(scores.edges, 4),
        agreement=round(scores.agreement, 4),
        dominance=round(scores.dominance, 4),
        separation=round(scores.separation, 4),
    )
    return scores


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


def _rect_grabcut(cv2, bgr: np.ndarray, margin: float, iterations: int) -> np.ndarray:
    """GrabCut seeded with "the object lies inside the frame less ``margin`` on each side"."""
    height, width = bgr.shape[:2]
    dx, dy = max(1, round(margin * width)), max(1, round(margin * height))
    mask = np.zeros((height, width), np.uint8)
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means from OpenCV's global generator:
    # fixed here, so a picture always gets the same cut.
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(
            bgr,
            mask,
            (dx, dy, width - 2 * dx, height - 2 * dy),
            background,
            foreground,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error as error:  # e.g. a one-colour picture: no mixture to fit
        log.debug("GrabCut failed: %s", error)
        return np.zeros((height, width), bool)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _main_parts(mask: np.ndarray) -> np.ndarray:
    """The parts holding at least 30 % of the largest one's pixels (no debris)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return np.isin(labels, np.flatnonzero(sizes >= 0.3 * sizes.max()) + 1)


def _opencv():
    try:
        import cv2
    except ImportError:
        from ..errors import DependencyError

        raise DependencyError(
            "The offline remover for busy photos needs OpenCV (opencv-python-headless): "
            "install the add-on's dependencies, or pass --background keep."
        ) from None
    cv2.setNumThreads(1)  # a 256-px cut gains nothing from threads; don't contend with torch
    return cv2
