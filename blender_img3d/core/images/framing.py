"""Crop to the object, pad to a white square with a border, resize to the model's size."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# Big reductions are done in two steps (fast box reduction first, then a
# LANCZOS pass at no more than this many times the output size).
_PRESCALE_FACTOR = 4
# A part of the mask is debris when it holds less than this share of the mask ...
_DEBRIS_SHARE = 0.05
# ... and lies farther than this share of the main part's size from the main part's box.
_DEBRIS_REACH = 0.25


def object_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the True pixels, end-exclusive; the mask must not be empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def subject_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The box to frame: the object's main part and what belongs with it, never stray debris.

    Parts holding less than :data:`_DEBRIS_SHARE` of the mask that lie outside
    the main part's box grown by :data:`_DEBRIS_REACH` of its size are debris
    (a speck of background the remover let through): they don't widen the
    frame, so the object is not pushed off-centre by them. The mask must not
    be empty.
    """
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return object_bbox(mask)
    sizes = np.bincount(labels.ravel())[1:]
    main = int(np.argmax(sizes)) + 1
    x0, y0, x1, y1 = object_bbox(labels == main)
    grow_x, grow_y = _DEBRIS_REACH * (x1 - x0), _DEBRIS_REACH * (y1 - y0)
    reach = (x0 - grow_x, y0 - grow_y, x1 + grow_x, y1 + grow_y)
    kept = np.zeros(count + 1, bool)
    boxes = ndimage.find_objects(labels)
    for index, box in enumerate(boxes, start=1):
        if box is None:
            continue
        rows, cols = box
        inside = (
            cols.start < reach[2]
            and cols.stop > reach[0]
            and rows.start < reach[3]
            and rows.stop > reach[1]
        )
        kept[index] = inside or sizes[index - 1] >= _DEBRIS_SHARE * sizes.sum()
    return object_bbox(kept[labels])


def square_side(bbox: tuple[int, int, int, int], border: float) -> float:
    """Side of the square in which the bbox's longer side fills ``1 - 2 * border``."""
    x0, y0, x1, y1 = bbox
    return max(x1 - x0, y1 - y0) / (1.0 - 2.0 * border)


def frame_square(
    rgb: np.ndarray, bbox: tuple[int, int, int, int], border: float, size: int
) -> Image.Image:
    """Centre ``bbox`` of the (H, W, 3) uint8 ``rgb`` in a white ``size``² square.

    Whatever lies outside the picture is white. The last resampling is LANCZOS,
    which low-passes when shrinking, so fine detail does not alias.
    """
    image = Image.fromarray(rgb, "RGB")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    side = square_side(bbox, border)
    left = (x0 + x1) / 2.0 - side / 2.0
    top = (y0 + y1) / 2.0 - side / 2.0
    if side > _PRESCALE_FACTOR * size:
        # Shrink the whole picture first, so a wide border never builds a huge canvas.
        factor = _PRESCALE_FACTOR * size / side
        scaled = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        fx, fy = scaled[0] / image.width, scaled[1] / image.height
        image = image.resize(scaled, Image.Resampling.LANCZOS, reducing_gap=3.0)
        left, top, side_x, side_y = left * fx, top * fy, side * fx, side * fy
    else:
        side_x = side_y = side
    pad_left = max(0, math.ceil(-left))
    pad_top = max(0, math.ceil(-top))
    pad_right = max(0, math.ceil(left + side_x - image.width))
    pad_bottom = max(0, math.ceil(top + side_y - image.height))
    if pad_left or pad_top or pad_right or pad_bottom:
        canvas = Image.new(
            "RGB",
            (image.width + pad_left + pad_right, image.height + pad_top + pad_bottom),
            (255, 255, 255),
        )
        canvas.paste(image, (pad_left, pad_top))
        image = canvas
    box = (
        max(0.0, left + pad_left),
        max(0.0, top + pad_top),
        min(float(image.width), left + pad_left + side_x),
        min(float(image.height), top + pad_top + side_y),
    )
    return image.resize((size, size), Image.Resampling.LANCZOS, box=box)
