"""Find the object in a picture and put it on white.

Shap-E's image model saw one object on plain white during training, so the
background has to go. In order of preference (see :func:`cut_out`):

1. ``alpha``: the picture's own transparency, when it really masks something.
2. ``rembg``: a learned remover, only if installed *and* allowed (it may
   download a model, which the user must opt into).
3. ``flood``: an offline remover for plain or smoothly shaded backgrounds
   (studio shots, gradients): a smooth background model is fitted to the
   border, and pixels close to it and connected to the border are background.
4. ``none``: the background is too busy to remove safely; the picture is kept.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image

from ..settings import ImageSettings

log = logging.getLogger(__name__)

# Alpha masks something when at least this share of pixels is mostly transparent.
_ALPHA_MASK_MIN_SHARE = 0.005
# A border whose residual spread (0..√3 RGB distance) exceeds this is not "plain".
_MAX_BACKGROUND_NOISE = 0.06
# At least this share of the border must fit the background model.
_MIN_BORDER_INLIERS = 0.5
# Object parts smaller than this share of the largest part are dropped as debris.
_MIN_PART_SHARE = 0.15
_MAX_FEATHER_SIGMA = 2.0


@dataclass
class Cutout:
    """Where the object is, and how that was decided."""

    method: str  # "alpha" | "rembg" | "flood" | "none"
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]: colours to composite
    mask: Optional[np.ndarray] = None  # (H, W) bool, the object; None for "none"
    alpha: Optional[np.ndarray] = None  # (H, W) float32 soft mask, when the method gives one
    background: Optional[np.ndarray] = None  # (H, W, 3) fitted background colours ("flood")
    background_color: Optional[list[int]] = None  # typical background colour, 0..255
    tolerance: Optional[float] = None  # RGB distance that separated background ("flood")
    notes: list[str] = field(default_factory=list)


def cut_out(
    rgb8: np.ndarray, alpha8: Optional[np.ndarray], settings: ImageSettings, *, allow_auto=True
) -> Cutout:
    """Choose and run the best available way to separate object from background.

    ``rgb8`` is (H, W, 3) uint8, ``alpha8`` the (H, W) uint8 alpha or None.
    ``allow_auto`` false (``remove_background`` off) keeps the picture unless
    its own alpha masks the object.
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
        why = "alpha ignored (use_alpha off)" if not settings.use_alpha else "alpha is opaque"
        notes.append(f"{why}: flattened onto white")
    if not allow_auto:
        notes.append("background removal off: picture kept as is")
        return Cutout("none", rgb, notes=notes)
    if settings.allow_rembg:
        alpha = _rembg_alpha(rgb, notes)
        if alpha is not None and (alpha >= 0.5).any():
            mask = clean_mask(alpha >= 0.5, fill_small_holes=True)
            alpha = np.where(_dilate(mask, 2), alpha, 0.0).astype(np.float32)
            return Cutout("rembg", rgb, mask=mask, alpha=alpha, notes=notes)
    return _flood_cutout(rgb, notes)


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


def clean_mask(mask: np.ndarray, *, fill_small_holes: bool) -> np.ndarray:
    """Drop specks and debris, keep the main part(s) whole, optionally fill pinholes.

    Parts are judged after an opening (so a speck touching the object by a
    thread of noise does not count as the object), but kept with their
    original pixels, so thin real parts (legs, handles, antennas) survive.
    """
    from scipy import ndimage

    height, width = mask.shape
    eight = np.ones((3, 3), bool)
    radius = max(1, round(min(height, width) / 400))
    opened = ndimage.binary_opening(mask, iterations=radius)
    if not opened.any():
        # A thin object (a wire, a pen) can vanish under opening: judge the raw mask.
        opened = mask
    labels, count = ndimage.label(opened, structure=eight)
    if count == 0:
        return opened
    sizes = np.bincount(labels.ravel())[1:]
    main = np.isin(labels, np.flatnonzero(sizes >= _MIN_PART_SHARE * sizes.max()) + 1)
    raw_labels, _ = ndimage.label(mask, structure=eight)
    touched = np.unique(raw_labels[main])
    kept = np.isin(raw_labels, touched[touched > 0])
    if fill_small_holes:
        holes = ndimage.binary_fill_holes(kept) & ~kept
        hole_labels, hole_count = ndimage.label(holes)
        if hole_count:
            hole_sizes = np.bincount(hole_labels.ravel())
            small = np.flatnonzero(hole_sizes < _min_hole_pixels(mask.shape))
            kept |= np.isin(hole_labels, small[small > 0])
    return kept


def _flood_cutout(rgb: np.ndarray, notes: list[str]) -> Cutout:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(rgb, sigma=(1.0, 1.0, 0.0))
    fit = _fit_border_background(smooth)
    if fit is None:
        notes.append("background is not plain (busy or textured border): picture kept as is")
        return Cutout("none", rgb, notes=notes)
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
        big = np.flatnonzero(sizes >= _min_hole_pixels(rgb.shape[:2]))
        is_background |= np.isin(hole_labels, big[big > 0])
    mask = clean_mask(~is_background, fill_small_holes=True)
    # Smoothing widened the object by a pixel or two at high-contrast edges:
    # re-decide the outer rim from the unsmoothed colours.
    core = ndimage.binary_erosion(mask, iterations=2)
    raw_distance = np.linalg.norm(rgb - background, axis=2)
    mask = core | (mask & (raw_distance > tolerance))
    notes.append(f"background fitted from the border, colour distance tolerance {tolerance:.3f}")
    return Cutout(
        "flood",
        rgb,
        mask=mask,
        background=background,
        background_color=colour,
        tolerance=tolerance,
        notes=notes,
    )


def _fit_border_background(rgb: np.ndarray):
    """Fit a smooth (quadratic in x, y) background to the image border, robustly.

    Returns ``(background (H, W, 3), residual spread, typical colour)`` or None
    when the border is too busy to be a plain background. Pixels of an object
    touching the edge are outliers and are discarded by the iterative refit.
    """
    height, width = rgb.shape[:2]
    ring = max(1, min(height, width) // 100)
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


def _min_hole_pixels(shape: tuple[int, int]) -> int:
    return max(16, int(0.002 * shape[0] * shape[1]))


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=iterations)


def _rembg_alpha(rgb: np.ndarray, notes: list[str]) -> Optional[np.ndarray]:
    """rembg's alpha for ``rgb``, or None (with a note) when unavailable or failing.

    rembg is optional and never installed by us: it pulls onnxruntime and
    downloads a segmentation model on first use.
    """
    try:
        rembg = importlib.import_module("rembg")
    except ImportError:
        notes.append("rembg not installed: used the built-in remover")
        return None
    except Exception as error:  # a broken install (missing onnxruntime, ...)
        notes.append(f"rembg unusable ({error}): used the built-in remover")
        return None
    picture = Image.fromarray(np.round(rgb * 255.0).astype(np.uint8), "RGB")
    try:
        result = rembg.remove(picture)
        if not isinstance(result, Image.Image):
            raise TypeError(f"rembg returned {type(result).__name__}, not an image")
        alpha = np.asarray(result.convert("RGBA"))[..., 3]
    except Exception as error:
        log.warning("rembg failed, falling back to the built-in remover", exc_info=True)
        notes.append(f"rembg failed ({error}): used the built-in remover")
        return None
    if alpha.shape != rgb.shape[:2]:
        notes.append("rembg returned a mask of the wrong size: used the built-in remover")
        return None
    return alpha.astype(np.float32) / 255.0
