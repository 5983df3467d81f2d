"""Cleaning a cut-out mask: specks and debris dropped, the object kept whole.

Shared by every remover (the flood in :mod:`.background`, the saliency cut in
:mod:`.saliency`, the learned one); imports nothing of the package.
"""

from __future__ import annotations

import numpy as np

# Object parts smaller than this share of the largest part are dropped as debris.
_MIN_PART_SHARE = 0.15


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
            small = np.flatnonzero(hole_sizes < min_hole_pixels(mask.shape))
            kept |= np.isin(hole_labels, small[small > 0])
    return kept


def min_hole_pixels(shape: tuple[int, int]) -> int:
    """Holes (and enclosed background patches) smaller than this many pixels are filled."""
    return max(16, int(0.002 * shape[0] * shape[1]))
