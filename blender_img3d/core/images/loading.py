"""Any image source (path, bytes, PIL image, pixel array) → a validated 8-bit RGB(A) image."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import ImageInputError
from ..settings import ImageSettings
from .blender_pixels import image_from_pixels
from .decoding import Decoded, decode_bytes, decode_pil
from .limits import check_file_bytes

_SOURCE_KINDS = "a file path, encoded image bytes, a PIL image or a numpy pixel array"


def load_image(
    source: Any,
    settings: Optional[ImageSettings] = None,
    *,
    linear: bool = False,
    width: Optional[int] = None,
    height: Optional[int] = None,
    bottom_up: bool = True,
) -> Image.Image:
    """Load ``source`` as an upright 8-bit RGB or RGBA image, or raise ImageInputError.

    ``source`` is a path, encoded bytes, a PIL image, or a pixel array as a
    Blender image gives it (``linear``, ``width``, ``height`` and ``bottom_up``
    describe such an array and are ignored otherwise). Limits come from
    ``settings``. Blank images (one colour, or fully transparent) are refused.
    """
    return decode_source(
        source, settings, linear=linear, width=width, height=height, bottom_up=bottom_up
    ).image


def decode_source(
    source: Any,
    settings: Optional[ImageSettings] = None,
    *,
    linear: bool = False,
    width: Optional[int] = None,
    height: Optional[int] = None,
    bottom_up: bool = True,
    draft_side: Optional[int] = None,
) -> Decoded:
    """:func:`load_image` plus what the preparation report needs (sizes, steps)."""
    settings = settings or ImageSettings()
    if isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source).expanduser(), settings.max_file_bytes)
        decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_side=draft_side)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_file_bytes(len(data), settings.max_file_bytes)
        decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_side=draft_side)
    elif isinstance(source, Image.Image):
        decoded = decode_pil(source, max_pixels=settings.max_pixels)
    elif isinstance(source, np.ndarray):
        image = image_from_pixels(
            source,
            width=width,
            height=height,
            linear=linear,
            bottom_up=bottom_up,
            max_pixels=settings.max_pixels,
        )
        steps = [
            f"read {image.size[0]}×{image.size[1]} {source.dtype} pixels"
            + (" (bottom-up rows flipped)" if bottom_up else "")
            + (" (linear → sRGB)" if linear else "")
        ]
        decoded = decode_pil(image, max_pixels=settings.max_pixels)
        decoded.format = "pixels"
        decoded.original_mode = f"{source.dtype} {image.mode}"
        decoded.steps = steps + decoded.steps[1:]
    else:
        raise ImageInputError(
            f"Can't read an image from a {type(source).__name__}: give {_SOURCE_KINDS}."
        )
    _reject_blank(decoded.image)
    return decoded


def _read_file(path: Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes of ``path``, refusing anything larger before reading it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageInputError(f"Image file not found: {path}. Check the path.") from None
    except OSError as error:
        raise ImageInputError(f"Can't read the image file {path}: {error.strerror}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageInputError(f"{path} is a folder, not an image file.")
    if not stat.S_ISREG(info.st_mode):
        raise ImageInputError(f"{path} is not a regular file: give the path of an image file.")
    check_file_bytes(info.st_size, limit)
    try:
        with open(path, "rb") as handle:
            # +1 catches a file that grew since stat() without reading all of it.
            data = handle.read(limit + 1)
    except OSError as error:
        raise ImageInputError(f"Can't read the image file {path}: {error.strerror}.") from None
    check_file_bytes(len(data), limit)
    return data


def _reject_blank(image: Image.Image) -> None:
    """Refuse images with nothing to see: fully transparent, or one single colour."""
    extrema = image.getextrema()
    if image.mode == "RGBA":
        alpha_low, alpha_high = extrema[3]
        if alpha_high == 0:
            raise ImageInputError(
                "The image is fully transparent: there is no object to turn into 3D."
            )
        extrema = extrema[:3] if alpha_low == alpha_high else ()
    if extrema and all(low == high for low, high in extrema):
        raise ImageInputError(
            "The image is blank (a single colour): use a picture of one object, "
            "ideally on a plain background."
        )
