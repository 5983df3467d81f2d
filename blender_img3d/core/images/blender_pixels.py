"""Float pixel arrays, as Blender images hold them → 8-bit sRGB PIL images.

``bpy.types.Image.pixels`` is a flat float array of width × height × channels
values, rows stored bottom-up, in the image's colour space: linear for float
buffers (OpenEXR, HDR, renders), sRGB for ordinary 8-bit pictures. This is
also the only way OpenEXR/HDR reach us: Blender decodes them, we never do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..colorspace import linear_to_srgb
from ..errors import ImageInputError
from .limits import check_pixel_count

if TYPE_CHECKING:
    from PIL import Image

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def image_from_pixels(
    pixels: np.ndarray,
    *,
    width: Optional[int] = None,
    height: Optional[int] = None,
    linear: bool = False,
    bottom_up: bool = True,
    max_pixels: int,
) -> Image.Image:
    """Turn a pixel array into an 8-bit, top-down PIL image (L/LA/RGB/RGBA).

    Accepts ``(H, W)``, ``(H, W, C)`` or flat arrays (then ``width`` and
    ``height`` are required), C in 1..4. Floats are taken as 0..1 (brighter
    HDR values are clipped), uint8 as 0..255 and uint16 as 0..65535. With
    ``linear`` the colour channels (never alpha) get the sRGB transfer curve.
    ``bottom_up`` (Blender's order) flips the rows.
    """
    from PIL import Image  # here, so the sRGB curve above works without Pillow (remote mode)

    array = _shaped(np.asarray(pixels), width, height)
    rows, cols, channels = array.shape
    check_pixel_count(cols, rows, max_pixels)
    unit = _to_unit_float(array)
    if linear:
        colour = min(channels, 3) if channels != 2 else 1
        unit[..., :colour] = linear_to_srgb(unit[..., :colour])
    if bottom_up:
        unit = unit[::-1]
    data = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    mode = _MODES[channels]
    if channels == 1:
        data = data[..., 0]
    return Image.fromarray(np.ascontiguousarray(data), mode)


def _shaped(array: np.ndarray, width: Optional[int], height: Optional[int]) -> np.ndarray:
    """Return ``array`` as (H, W, C) or raise an error that says which shapes work."""
    expected = "(H, W), (H, W, 3|4) or a flat array with width and height"
    if width is not None or height is not None:
        if not (_positive_int(width) and _positive_int(height)):
            raise ImageInputError(
                f"width and height must be positive integers, got {width!r} and {height!r}."
            )
    if array.ndim == 1:
        if width is None or height is None:
            raise ImageInputError(
                f"A flat pixel array needs width and height: pass both, or give {expected}."
            )
        pixels = width * height
        channels, remainder = divmod(array.size, pixels)
        if remainder or channels not in _MODES:
            raise ImageInputError(
                f"A flat array of {array.size} values does not fit {width}×{height} pixels "
                "with 1 to 4 channels: check width and height."
            )
        return array.reshape(height, width, channels)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in _MODES:
        raise ImageInputError(
            f"A pixel array of shape {array.shape} can't be read: give {expected}."
        )
    if width is not None and (array.shape[1], array.shape[0]) != (width, height):
        raise ImageInputError(
            f"The pixel array is {array.shape[1]}×{array.shape[0]} but width×height says "
            f"{width}×{height}."
        )
    return array


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        # NaN (e.g. from a broken render) reads as black/transparent, not as an error.
        return np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    raise ImageInputError(
        f"Pixel arrays must be float, uint8 or uint16, got {array.dtype}: convert it first."
    )
