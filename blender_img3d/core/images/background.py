"""Find the object in a picture and put it on white.

Shap-E's image model saw one object on plain white during training, so the
background has to go. ``ImageSettings.background`` chooses how (see
:func:`cut_out`); the methods a report can name are:

1. ``alpha``: the picture's own transparency, when it really masks something
   (whatever the choice: it is the user's own cut-out).
2. ``learned``: the salient-object model (:mod:`.learned`), when downloaded.
3. ``flood``: the offline remover for plain or smoothly shaded backgrounds
   (studio shots, gradients): a smooth background model is fitted to the
   border, and pixels close to it and connected to the border are background.
4. ``saliency``: the offline remover for busy photos (:mod:`.saliency`), used
   when the border is not plain or the flood's cut is not trusted.
5. ``none``: nothing removed; the picture is kept whole, and
   :attr:`Cutout.warning` says why and what to do.

Every cut but ``alpha`` carries a confidence in 0..1 (:class:`~.confidence.Scores`):
below ``BACKGROUND_MIN_CONFIDENCE`` the picture is kept rather than damaged;
below ``BACKGROUND_SURE_CONFIDENCE`` the cut is used but called doubtful, and a
cut of a busy photo is called doubtful at any confidence (see :func:`_doubt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..settings import BACKGROUND_MIN_CONFIDENCE, BACKGROUND_SURE_CONFIDENCE, ImageSettings
from .masks import clean_mask, min_hole_pixels

log = logging.getLogger(__name__)

# Alpha masks something when at least this share of pixels is mostly transparent.
_ALPHA_MASK_MIN_SHARE = 0.005
# A border whose residual spread (0..√3 RGB distance) exceeds this is not "plain".
_MAX_BACKGROUND_NOISE = 0.06
# At least this share of the border must fit the background model.
_MIN_BORDER_INLIERS = 0.5
_MAX_FEATHER_SIGMA = 2.0
# The flood judges colours after this Gaussian blur (pixels; none across channels).
_SMOOTHING = (1.0, 1.0, 0.0)
_LEARNED_HINT = "pass --background learned after downloading it with --allow-download"


@dataclass
class Cutout:
    """Where the object is, and how that was decided."""

    method: str  # "alpha" | "learned" | "flood" | "saliency" | "none"
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]: colours to composite
    mask: Optional[np.ndarray] = None  # (H, W) bool, the object; None for "none"
    alpha: Optional[np.ndarray] = None  # (H, W) float32 soft mask, when the method gives one
    background: Optional[np.ndarray] = None  # (H, W, 3) fitted background colours ("flood")
    background_color: Optional[list[int]] = None  # typical background colour, 0..255
    tolerance: Optional[float] = None  # RGB distance that separated background ("flood")
    confidence: Optional[float] = None  # 0..1 for a removal's cut; None for alpha / none
    # One line for the user when the background was kept or the cut is doubtful.
    warning: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def effective_background(settings: ImageSettings) -> str:
    """The background choice in force (``remove_background`` off means "keep")."""
    return settings.background if settings.remove_background else "keep"


def cut_out(
    rgb8: np.ndarray,
    alpha8: Optional[np.ndarray],
    settings: ImageSettings,
    *,
    learned_model: Optional[Path] = None,
) -> Cutout:
    """Separate object from background as ``settings.background`` asks.

    ``rgb8`` is (H, W, 3) uint8, ``alpha8`` the (H, W) uint8 alpha or None.
    A real alpha mask wins whatever the choice. Then ``keep`` keeps the
    picture; ``learned`` and ``auto`` use ``learned_model`` (the remover's
    ONNX file) when given; ``classic``, and ``auto`` without the model, run
    the offline chain (flood, then saliency), each cut gated by its confidence.
    """
    rgb = rgb8.astype(np.float32) / 255.0
    notes: list[str] = []
    if alpha8 is not None:
        if settings.use_alpha and alpha_masks_something(alpha8):
            alpha = alpha8.astype(np.float32) / 255.0
            mask = clean_mask(alpha8 >= 128, fill_small_holes=False)
            # Stray semi-transparent specks far from the kept parts would widen the crop.
            alpha = np.where(_dilate(mask, 2), alpha, 0.0).astype(np.float32)
            return Cutout("alpha", rgb, mask=mask, alpha=alpha, notes=notes)
        weight = alpha8.astype(np.float32)[..., None] / 255.0
        rgb = rgb * weight + (1.0 - weight)
        rgb8 = np.round(rgb * 255.0).astype(np.uint8)
        why = "alpha ignored (use_alpha off)" if not settings.use_alpha else "alpha is opaque"
        notes.append(f"{why}: flattened onto white")
    choice = effective_background(settings)
    if choice == "keep":
        notes.append("background removal off: picture kept as is")
        return Cutout("none", rgb, notes=notes, warning="kept the background, as asked")
    if choice in ("auto", "learned") and learned_model is not None:
        return _learned_cutout(rgb, learned_model, notes)
    return _classic_cutout(rgb8, rgb, notes)


def _learned_cutout(rgb: np.ndarray, model: Path, notes: list[str]) -> Cutout:
    from .confidence import Scores, coverage_score, dominant_share
    from .learned import learned_alpha

    alpha = learned_alpha(rgb, model)
    raw = alpha >= 0.5
    mask = clean_mask(raw, fill_small_holes=True) if raw.any() else raw
    scores = Scores()
    scores.coverage = coverage_score(float(mask.mean())) if mask.any() else 0.0
    scores.dominance = dominant_share(raw) if raw.any() else 0.0
    confidence = round(scores.confidence, 3)
    notes.append(f"learned remover ({model.name}), confidence {confidence:.2f}")
    if confidence < BACKGROUND_MIN_CONFIDENCE:
        return _kept(
            rgb,
            notes,
            confidence,
            f"kept the background: the learned remover found no clear object "
            f"(confidence {confidence:.2f}, weak {scores.weakest()}); crop the picture to "
            "the object, or give a picture with transparency",
        )
    alpha = np.where(_dilate(mask, 2), alpha, 0.0).astype(np.float32)
    return Cutout(
        "learned",
        rgb,
        mask=mask,
        alpha=alpha,
        confidence=confidence,
        warning=_doubt("learned", confidence, scores.weakest()),
        notes=notes,
    )


def _classic_cutout(rgb8: np.ndarray, rgb: np.ndarray, notes: list[str]) -> Cutout:
    """The offline chain: flood for plain backgrounds, saliency for busy ones, else keep."""
    from .saliency import saliency_cut

    flood = _flood_cutout(rgb, notes)
    if flood is not None and not flood.mask.any():
        return flood  # a plain picture with nothing on it: the caller says "no object"
    if flood is not None and flood.confidence >= BACKGROUND_MIN_CONFIDENCE:
        flood.warning = _doubt("flood", flood.confidence, "dominance")
        return flood
    if flood is not None:
        notes.append(f"plain-background cut not trusted (confidence {flood.confidence:.2f})")
    mask, alpha, scores = saliency_cut(rgb8)
    confidence = round(scores.confidence, 3)
    notes.append(
        "saliency cut confidence {:.2f} ({})".format(
            confidence, ", ".join(f"{k} {v:.2f}" for k, v in scores.details.items())
        )
    )
    if confidence < BACKGROUND_MIN_CONFIDENCE or not mask.any():
        return _kept(
            rgb,
            notes,
            confidence,
            f"kept the background: it is too busy for the offline remover (confidence "
            f"{confidence:.2f}, weak {scores.weakest()}); {_LEARNED_HINT}, or give a "
            "picture with transparency",
        )
    return Cutout(
        "saliency",
        rgb,
        mask=mask,
        alpha=alpha,
        confidence=confidence,
        warning=_doubt("saliency", confidence, scores.weakest()),
        notes=notes,
    )


def _kept(rgb: np.ndarray, notes: list[str], confidence: float, warning: str) -> Cutout:
    notes.append("picture kept as is")
    return Cutout("none", rgb, confidence=confidence, warning=warning, notes=notes)


def _doubt(method: str, confidence: float, weakest: str) -> Optional[str]:
    """The line for a cut that is used but not sure; None for a sure one.

    A cut of a busy photo is never sure: on the photo corpus
    (tests/fixtures/photo_corpus.py) no cue that needs no ground truth told
    right cuts from wrong ones there (a house, a shopfront or a lake score as
    high as a coffee cup), so the user is always asked to look at it.
    """
    sure = confidence >= BACKGROUND_SURE_CONFIDENCE
    if sure and method != "saliency":
        return None
    why = f"weak {weakest}" if not sure else "busy photos fool the offline remover"
    other = "--background classic" if method == "learned" else _LEARNED_HINT
    return (
        f"the cut-out is doubtful ({method}, confidence {confidence:.2f}, {why}): "
        f"check it with --save-input (Preview Input in Blender); {other}, or "
        "--background keep if it lost part of the object"
    )


def alpha_masks_something(alpha8: np.ndarray) -> bool:
    """Whether an alpha channel separates an object (not all-opaque, not all-clear)."""
    clear = alpha8 < 128
    return bool(clear.mean() >= _ALPHA_MASK_MIN_SHARE and not clear.all())


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A soft (H, W) float32 alpha from a hard mask, blurred by ``sigma`` pixels."""
    from scipy import ndimage

    soft = mask.astype(np.float32)
    # Past a couple of pixels the final LANCZOS reduction softens the edge anyway.
    sigma = min(sigma, _MAX_FEATHER_SIGMA)
    if sigma <= 0.3:
        return soft
    return np.clip(ndimage.gaussian_filter(soft, sigma), 0.0, 1.0)


def composite_on_white(cutout: Cutout, alpha: Optional[np.ndarray]) -> np.ndarray:
    """The object over white as (H, W, 3) uint8.

    With a fitted background, edge pixels are un-mixed: the share ``1 - a`` of
    background colour in them is swapped for white, so no grey halo remains.
    """
    rgb = cutout.rgb
    if alpha is None:
        out = rgb
    elif cutout.background is not None:
        a = alpha[..., None]
        out = np.where(a > 0.0, rgb + (1.0 - a) * (1.0 - cutout.background), 1.0)
    else:
        a = alpha[..., None]
        out = rgb * a + (1.0 - a)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def _flood_cutout(rgb: np.ndarray, notes: list[str]) -> Optional[Cutout]:
    """The plain-background cut with its confidence, or None when the border is not plain."""
    from scipy import ndimage

    from .confidence import score_mask

    # The fit reads only the border: smoothing the border strips first decides a busy
    # photo without blurring all of it (a third of a 12 MP photo's analysis time).
    fit = _fit_border_background(_smoothed_border(rgb))
    if fit is None:
        notes.append("background is not plain (busy or textured border)")
        return None
    smooth = ndimage.gaussian_filter(rgb, sigma=_SMOOTHING)
    background, spread, colour = fit
    tolerance = float(np.clip(2.5 * spread + 0.03, 0.06, 0.25))
    distance = np.linalg.norm(smooth - background, axis=2)
    near = distance <= tolerance
    labels, _ = ndimage.label(near)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    is_background = np.isin(labels, edge_labels[edge_labels > 0])
    # Enclosed patches that match the background closely (a mug's handle, the gap
    # between chair legs) are background too; small ones stay part of the object.
    enclosed = (distance <= 0.5 * tolerance) & ~is_background
    hole_labels, hole_count = ndimage.label(enclosed)
    if hole_count:
        sizes = np.bincount(hole_labels.ravel())
        big = np.flatnonzero(sizes >= min_hole_pixels(rgb.shape[:2]))
        is_background |= np.isin(hole_labels, big[big > 0])
    mask = clean_mask(~is_background, fill_small_holes=True)
    # A plain background leaves one object (or a few big parts) outlined by edges, never a
    # scatter of specks (a star field) or a lattice (a brick wall's mortar).
    rgb8 = np.round(rgb * 255.0).astype(np.uint8)
    scores = score_mask(rgb8, mask, ~is_background)
    # Smoothing widened the object by a pixel or two at high-contrast edges:
    # re-decide the outer rim from the unsmoothed colours.
    core = ndimage.binary_erosion(mask, iterations=2)
    raw_distance = np.linalg.norm(rgb - background, axis=2)
    mask = core | (mask & (raw_distance > tolerance))
    confidence = round(scores.confidence, 3)
    notes.append(
        f"background fitted from the border, colour distance tolerance {tolerance:.3f}, "
        f"confidence {confidence:.2f}"
    )
    return Cutout(
        "flood",
        rgb,
        mask=mask,
        background=background,
        background_color=colour,
        tolerance=tolerance,
        confidence=confidence,
        notes=notes,
    )


def _border_ring(height: int, width: int) -> int:
    """Width in pixels of the border the background model is fitted to."""
    return max(1, min(height, width) // 100)


def _smoothed_border(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` smoothed as the flood smooths it, exactly, but only in the border ring.

    Each strip carries the filter's reach (4 sigma) past the ring, so the ring's
    values equal those of smoothing the whole picture; the inside stays zero.
    """
    from scipy import ndimage

    height, width = rgb.shape[:2]
    ring = _border_ring(height, width)
    reach = ring + 4
    out = np.zeros_like(rgb)
    top = ndimage.gaussian_filter(rgb[:reach], sigma=_SMOOTHING)
    bottom = ndimage.gaussian_filter(rgb[-reach:], sigma=_SMOOTHING)
    left = ndimage.gaussian_filter(rgb[:, :reach], sigma=_SMOOTHING)
    right = ndimage.gaussian_filter(rgb[:, -reach:], sigma=_SMOOTHING)
    out[:ring], out[-ring:] = top[:ring], bottom[-ring:]
    out[:, :ring], out[:, -ring:] = left[:, :ring], right[:, -ring:]
    return out


def _fit_border_background(rgb: np.ndarray):
    """Fit a smooth (quadratic in x, y) background to the image border, robustly.

    Returns ``(background (H, W, 3), residual spread, typical colour)`` or None
    when the border is too busy to be a plain background. Pixels of an object
    touching the edge are outliers and are discarded by the iterative refit.
    """
    height, width = rgb.shape[:2]
    ring = _border_ring(height, width)
    border = np.zeros((height, width), bool)
    border[:ring] = border[-ring:] = True
    border[:, :ring] = border[:, -ring:] = True
    ys, xs = np.nonzero(border)
    design = _quadratic_terms(xs, ys, width, height)
    colours = rgb[ys, xs].astype(np.float64)
    residual = np.linalg.norm(colours - np.median(colours, axis=0), axis=1)
    inliers = residual <= max(3.0 * 1.4826 * np.median(residual), 0.03)
    coef = None
    for _ in range(5):
        if inliers.sum() < design.shape[1] * 3:
            return None
        coef, *_ = np.linalg.lstsq(design[inliers], colours[inliers], rcond=None)
        residual = np.linalg.norm(colours - design @ coef, axis=1)
        spread = max(1.4826 * float(np.median(residual[inliers])), 0.004)
        updated = residual <= max(3.0 * spread, 0.03)
        if np.array_equal(updated, inliers):
            break
        inliers = updated
    share = float(inliers.mean())
    if share < _MIN_BORDER_INLIERS or spread > _MAX_BACKGROUND_NOISE:
        log.debug("border not plain: inlier share %.2f, spread %.3f", share, spread)
        return None
    # Evaluate the fit on the whole grid by broadcasting (no (H*W, 6) design matrix).
    u = (np.arange(width, dtype=np.float32) / max(width - 1, 1) * 2.0 - 1.0)[None, :, None]
    v = (np.arange(height, dtype=np.float32) / max(height - 1, 1) * 2.0 - 1.0)[:, None, None]
    c = coef.astype(np.float32)
    background = (c[0] + c[1] * u + c[4] * u * u) + (c[2] + c[5] * v * v) * np.ones_like(u)
    background = background + c[3] * (u * v)
    colour = np.median(colours[inliers], axis=0)
    return background, spread, [int(round(c * 255)) for c in np.clip(colour, 0.0, 1.0)]


def _quadratic_terms(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    u = xs / max(width - 1, 1) * 2.0 - 1.0
    v = ys / max(height - 1, 1) * 2.0 - 1.0
    return np.stack([np.ones_like(u), u, v, u * v, u * u, v * v], axis=1)


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=iterations)
