"""Pillow pixel modes → 8-bit RGB or RGBA, keeping transparency and tonal range.

Pillow's own ``convert("L")`` clips 16- and 32-bit values at 255, which turns
most 16-bit scans white; here wide modes are scaled by their value range
instead (see :func:`_wide_to_8bit`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageInputError

_OPAQUE_TO_RGB = ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")
_WITH_ALPHA_TO_RGBA = ("LA", "La", "PA", "RGBa")


def to_rgb8(image: Image.Image) -> tuple[Image.Image, str]:
    """Return ``image`` as 8-bit RGB or RGBA, and a note of the conversion ("" if none)."""
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image, ""
    if mode == "P":
        target = "RGBA" if image.has_transparency_data else "RGB"
        return image.convert(target), f"palette to {target}"
    if mode in _OPAQUE_TO_RGB:
        return image.convert("RGB"), f"{mode} to RGB"
    if mode in _WITH_ALPHA_TO_RGBA:
        return image.convert("RGBA"), f"{mode} to RGBA"
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey, how = _wide_to_8bit(np.asarray(image), mode)
        return Image.fromarray(grey, "L").convert("RGB"), f"{mode} to RGB ({how})"
    raise ImageInputError(
        f"The image's pixel mode {mode!r} is not supported: re-save it as 8-bit RGB PNG or JPEG."
    )


def _wide_to_8bit(values: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    """Map a 16/32-bit integer or float channel to uint8 by its value range.

    16-bit data spans 0..65535 whatever the picture, so it is divided by 257.
    32-bit ``I`` and ``F`` carry no declared range: values already in [0, 1]
    (float) or 0..255 / 0..65535 (integer-like) keep their meaning; anything
    else is stretched from its own minimum to maximum.
    """
    data = values.astype(np.float64)
    if mode.startswith("I;16"):
        return _quantise(data / 65535.0), "16-bit scaled by 1/257"
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise ImageInputError("The image holds no finite pixel values: re-save it as PNG.")
    low, high = float(finite.min()), float(finite.max())
    data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return _quantise(data), "float 0..1"
    if low >= 0.0 and high <= 255.0:
        return _quantise(data / 255.0), "0..255"
    if low >= 0.0 and high <= 65535.0:
        return _quantise(data / 65535.0), "0..65535 scaled by 1/257"
    span = high - low
    return _quantise((data - low) / span), f"stretched from {low:g}..{high:g}"


def _quantise(unit: np.ndarray) -> np.ndarray:
    return np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
