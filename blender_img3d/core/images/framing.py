"""Crop to the object, pad to a white square with a border, resize to the model's size."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# Big reductions are done in two steps (fast box reduction first, then a
# LANCZOS pass at no more than this many times the output size).
_PRESCALE_FACTOR = 4


def object_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the True pixels, end-exclusive; the mask must not be empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


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
