"""Where the object is in a busy photo, without a learned model: boundary connectivity.

A photo's background is what touches the frame. Not literally (an object may
be cut by the bottom edge), but as a region: the sky, a wall or a lawn runs
along a long stretch of the border for its size, while an object touches it
little or not at all. Zhu, Liang, Wei and Sun ("Saliency Optimization from
Robust Background Detection", CVPR 2014) turn that into a number per
superpixel, *boundary connectivity*: the length of border a region of similar
colours reaches, over the square root of its area. From it each superpixel gets
a background weight, a foreground weight (its colour contrast with what is
likely background nearby), and one small least-squares problem makes the
saliency of neighbouring, similar superpixels agree.

Written from the paper's description. On the photo corpus
(tests/fixtures/photo_corpus.py) its thresholded map boxes 13 of 19 one-object
photos within IoU 0.8, where GrabCut seeded with the frame boxes 10 (before
any gate; the numbers and the other methods tried are in benchmarks/RESULTS.md).

The cut is the map split where it best splits in two (Otsu), its outline made
exact by GrabCut (:mod:`.grabcut`), cleaned of debris, and scored by
:mod:`.confidence` (by the frame cue rather than by edge contrast: a right cut
of fur or leaves crosses as much texture as a wrong one). Runs on the picture
reduced to :data:`~.confidence.ANALYSIS_SIDE`; needs scikit-image (SLIC
superpixels, Lab colours), SciPy and OpenCV, imported here only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .confidence import Scores, analysis_picture, cut_confidence
from .grabcut import refine
from .masks import clean_mask

# SLIC superpixels: about this many, of this compactness (the paper's settings).
_SUPERPIXELS = 300
_COMPACTNESS = 10.0
# Gaussian blur (pixels) before SLIC: on grainy pictures, unblurred, its
# connectivity step merges the grain into a few huge superpixels.
_SMOOTHING = 0.5
# Lab distance scale of "similar colours" (geodesic areas, smoothness weights).
_SIGMA_COLOUR = 10.0
# Boundary connectivity at which a superpixel is background with weight 1 - e^-0.5.
_SIGMA_BOUNDARY = 1.0
# Spatial reach of the contrast term, as a share of the picture's long side.
_SIGMA_SPACE = 0.25
# Smoothness floor between neighbours (removes small noise in flat regions).
_SMOOTHNESS_FLOOR = 0.1
# Colour separation that scores full for this cut. Half the flood's: an outline made
# of superpixels mixes some background into the object's colours. Set on the photo
# corpus, where right cuts of a man on a lawn, a dog on a cushion, an aloe on
# patterned cloth and a sign before trees separate by 0.17 to 0.21, textures and
# aerial views by 0 to 0.12 (benchmarks/RESULTS.md).
_FULL_SEPARATION = 0.25


def saliency_cut(rgb8: np.ndarray) -> tuple[np.ndarray, np.ndarray, Scores]:
    """The object's (H, W) bool mask and soft alpha in the (H, W, 3) uint8 picture, and scores."""
    height, width = rgb8.shape[:2]
    small = analysis_picture(rgb8)
    saliency = boundary_saliency(small)
    threshold = otsu_threshold(saliency)
    salient = saliency >= threshold
    # Whether there is one object is judged on the saliency's own cut, which keeps
    # off the frame unless the object really runs along it; GrabCut then makes the
    # outline exact, and may follow a person off the bottom edge.
    scores = cut_confidence(
        small, salient, outline=False, frame=True, full_separation=_FULL_SEPARATION
    )
    raw = refine(small, saliency, threshold)
    # Cleaned here, at the analysis size: at full size the same work costs 50 times more.
    mask = clean_mask(raw, fill_small_holes=True) if raw.any() else raw
    if not mask.any():
        empty = np.zeros((height, width), bool)
        return empty, empty.astype(np.float32), scores
    soft = Image.fromarray(mask.astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    # The bilinear ramp (about one analysis pixel wide) is the cut's feathered edge.
    alpha = np.clip(np.asarray(soft, np.float32), 0.0, 1.0)
    return alpha >= 0.5, alpha, scores


def boundary_saliency(rgb8: np.ndarray) -> np.ndarray:
    """The (H, W) float32 saliency, 0..1, of a small (H, W, 3) uint8 picture."""
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    height, width = rgb8.shape[:2]
    labels = slic(
        rgb8,
        n_segments=_SUPERPIXELS,
        compactness=_COMPACTNESS,
        sigma=_SMOOTHING,
        start_label=0,
        channel_axis=-1,
    )
    count = int(labels.max()) + 1
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=count).astype(np.float64)
    lab = rgb2lab(rgb8).reshape(-1, 3)
    colour = np.stack([np.bincount(flat, lab[:, c], count) for c in range(3)], 1) / pixels[:, None]
    rows, cols = np.indices((height, width))
    side = max(height, width)
    centre = np.stack(
        [np.bincount(flat, cols.ravel(), count), np.bincount(flat, rows.ravel(), count)], 1
    ) / (pixels[:, None] * side)
    pairs = _neighbours(labels)
    step = np.linalg.norm(colour[pairs[:, 0]] - colour[pairs[:, 1]], axis=1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = _background_weight(pairs, step, count, border)
    contrast = _weighted_contrast(colour, centre, background)
    saliency = _optimise(pairs, step, count, background, contrast)
    return saliency[labels].astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits ``values`` (0..1) into two classes (Otsu, 1979)."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    weights = counts.astype(np.float64) / max(counts.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(weights)
    mean_below = np.cumsum(weights * centres)
    total = mean_below[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * below - mean_below) ** 2 / (below * (1.0 - below))
    between[~np.isfinite(between)] = 0.0
    return float(edges[1:][np.argmax(between)])


def _neighbours(labels: np.ndarray) -> np.ndarray:
    """(K, 2) pairs of superpixels that share an edge, each pair once, smaller label first."""
    first = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    second = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    apart = first != second
    low = np.minimum(first[apart], second[apart])
    high = np.maximum(first[apart], second[apart])
    return np.unique(np.stack([low, high], 1), axis=0)


def _background_weight(
    pairs: np.ndarray, step: np.ndarray, count: int, border: np.ndarray
) -> np.ndarray:
    """Per superpixel, 0..1: how much of the border its region of similar colours reaches."""
    from scipy import sparse
    from scipy.sparse import csgraph

    # Geodesic colour distance: the cheapest chain of neighbour-to-neighbour steps.
    # (A step of 0 would read as "no edge" in a sparse matrix: hence the tiny floor.)
    graph = sparse.coo_matrix((step + 1e-6, (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    geodesic = csgraph.dijkstra(graph.tocsr(), directed=False)
    similar = np.exp(-(geodesic**2) / (2 * _SIGMA_COLOUR**2))
    area = similar.sum(axis=1)
    border_length = similar[:, border].sum(axis=1)
    connectivity = border_length / np.sqrt(area)
    return 1.0 - np.exp(-(connectivity**2) / (2 * _SIGMA_BOUNDARY**2))


def _weighted_contrast(colour: np.ndarray, centre: np.ndarray, background: np.ndarray):
    """Per superpixel, 0..1: colour contrast with nearby superpixels that are likely background."""
    difference = np.linalg.norm(colour[:, None] - colour[None], axis=2)
    distance = np.linalg.norm(centre[:, None] - centre[None], axis=2)
    nearby = np.exp(-(distance**2) / (2 * _SIGMA_SPACE**2))
    contrast = (difference * nearby * background[None]).sum(axis=1)
    spread = np.ptp(contrast)
    return (contrast - contrast.min()) / spread if spread > 0 else np.zeros_like(contrast)


def _optimise(pairs, step, count, background, foreground) -> np.ndarray:
    """Saliencies s minimising background·s² + foreground·(s-1)² + smoothness·(sᵢ-sⱼ)²."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    smooth = np.exp(-(step**2) / (2 * _SIGMA_COLOUR**2)) + _SMOOTHNESS_FLOOR
    weights = sparse.coo_matrix((smooth, (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    weights = (weights + weights.T).tocsr()
    laplacian = sparse.diags(np.asarray(weights.sum(axis=1)).ravel()) - weights
    system = sparse.diags(background + foreground) + laplacian
    return np.clip(spsolve(system.tocsc(), foreground), 0.0, 1.0)
