"""Encoded image files and PIL images → validated, upright, 8-bit RGB(A) images.

Everything a user hands us is untrusted: the format is restricted to an
allowlist before Pillow parses more than a header, the pixel count is checked
from that header before ``load()`` allocates anything, and every exception a
decoder can raise on damaged data becomes an :class:`ImageInputError` that
says what is wrong and what to do.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from typing import Optional

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageInputError
from .limits import check_pixel_count
from .modes import to_rgb8

log = logging.getLogger(__name__)

# Pillow plugin ids tried, in this order. TGA has no signature, so it goes last
# where it can only claim data that no other format recognised.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "TGA")
_ALLOWED_NAMES = "PNG, JPEG, WebP, BMP, TIFF, TGA or GIF"

# Signatures of formats users commonly try, so the error can name them.
_BLENDER_ONLY = "open it in Blender and pass the image's pixels instead"
_KNOWN_SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"v/1\x01", "an OpenEXR image", _BLENDER_ONLY),
    (0, b"#?RADIANCE", "a Radiance HDR image", _BLENDER_ONLY),
    (0, b"#?RGBE", "a Radiance HDR image", _BLENDER_ONLY),
    (0, b"%PDF", "a PDF document", "export the page as PNG"),
    (0, b"\x00\x00\x01\x00", "an ICO icon", "re-save it as PNG"),
    (0, b"8BPS", "a Photoshop document", "export it as PNG"),
    (0, b"PK\x03\x04", "a ZIP archive", "extract the image first"),
    (4, b"ftypheic", "a HEIC photo", "export it as JPEG"),
    (4, b"ftypheix", "a HEIC photo", "export it as JPEG"),
    (4, b"ftypmif1", "a HEIF image", "export it as JPEG"),
    (4, b"ftypavif", "an AVIF image", "re-save it as PNG or JPEG"),
    (0, b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image", "re-save it as PNG or JPEG"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream", "re-save it as PNG or JPEG"),
    (0, b"DDS ", "a DDS texture", "re-save it as PNG"),
    (0, b"<svg", "an SVG drawing", "export it as PNG"),
    (0, b"<?xml", "an XML/SVG file", "export it as PNG"),
)

# What damaged data makes Pillow's decoders raise; anything else is caught too
# (see _decode_guard) because a decoder bug on bad input is still bad input.
_DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)


@dataclass
class Decoded:
    """A decoded image and the facts the preparation report needs about it."""

    image: Image.Image  # 8-bit RGB or RGBA, upright, frame 0
    original_size: tuple[int, int]  # full-resolution size, after EXIF orientation
    original_mode: str
    format: Optional[str]
    steps: list[str] = field(default_factory=list)


def decode_bytes(data: bytes, *, max_pixels: int, draft_side: Optional[int] = None) -> Decoded:
    """Decode encoded image ``data`` (size already checked by the caller).

    ``draft_side``: when only a preview of about this many pixels on the longest
    side is needed, JPEGs are decoded at 1/2, 1/4 or 1/8 scale, which is far
    faster and lighter for huge photos. ``original_size`` stays the full size.
    """
    _reject_known_unsupported(data)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageInputError(
            "The image header claims more pixels than Pillow will ever decode "
            f"({Image.MAX_IMAGE_PIXELS * 2} at most): it is a decompression bomb or damaged."
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(
            f"The file is not a recognised image ({_ALLOWED_NAMES}): re-save it as PNG or JPEG."
        ) from None
    except MemoryError:
        raise ImageInputError("Not enough memory to read the image header.") from None
    except Exception as error:
        raise _corrupt(None, error) from None
    with image:
        return _decode_opened(image, max_pixels=max_pixels, draft_side=draft_side)


def decode_pil(image: Image.Image, *, max_pixels: int) -> Decoded:
    """Validate and normalise a PIL image the caller already opened or built.

    The caller's choice of frame is respected; its EXIF orientation is applied.
    """
    return _decode_opened(image, max_pixels=max_pixels, draft_side=None, first_frame=False)


def _decode_opened(
    image: Image.Image, *, max_pixels: int, draft_side: Optional[int], first_frame: bool = True
) -> Decoded:
    fmt = image.format
    width, height = image.size
    check_pixel_count(width, height, max_pixels)
    original_mode = image.mode
    steps = [f"decoded {fmt or 'in-memory image'} {width}×{height} {original_mode}"]
    try:
        if first_frame and _is_animated(image):
            steps.append("animated: used the first frame")
        if draft_side and fmt in ("JPEG", "MPO") and max(width, height) > 2 * draft_side:
            scale = draft_side / max(width, height)
            wanted = (max(1, round(width * scale)), max(1, round(height * scale)))
            if image.draft(None, wanted) is not None and image.size != (width, height):
                steps.append(f"JPEG decoded at reduced scale {image.size[0]}×{image.size[1]}")
        image.load()
        upright, swapped = _apply_exif_orientation(image, steps)
        upright = _convert_to_srgb(upright, steps)
        converted, note = to_rgb8(upright)
        if note:
            steps.append(f"converted {note}")
        if converted is image:
            # Closing the source file drops its pixels, so keep our own copy.
            converted = image.copy()
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageInputError(
            f"The image holds more pixels than its {width}×{height} header says: "
            "it is damaged or a decompression bomb."
        ) from None
    except MemoryError:
        raise ImageInputError(
            f"Not enough memory to decode the {width}×{height} image: downscale it first."
        ) from None
    except Exception as error:
        raise _corrupt(fmt, error) from None
    original_size = (height, width) if swapped else (width, height)
    return Decoded(converted, original_size, original_mode, fmt, steps)


def _is_animated(image: Image.Image) -> bool:
    """Whether ``image`` has several frames; leaves it on frame 0 either way."""
    try:
        animated = bool(getattr(image, "is_animated", False))
    except Exception:
        # A damaged later frame must not cost us a good first one.
        log.debug("could not count frames", exc_info=True)
        animated = False
    if image.tell() != 0:
        image.seek(0)
    return animated


def _apply_exif_orientation(image: Image.Image, steps: list[str]) -> tuple[Image.Image, bool]:
    """Rotate/flip as the EXIF Orientation tag says; returns the image and whether w/h swapped.

    An unreadable EXIF block is ignored rather than fatal: the pixels are fine.
    """
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:
        log.warning("ignoring unreadable EXIF data", exc_info=True)
        return image, False
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image, False
    upright = ImageOps.exif_transpose(image)
    steps.append(f"applied EXIF orientation {orientation}")
    return upright, orientation in (5, 6, 7, 8)


def _convert_to_srgb(image: Image.Image, steps: list[str]) -> Image.Image:
    """Apply an embedded ICC profile (phones shoot Display P3, print files CMYK) → sRGB.

    The model saw sRGB pictures. A profile that can't be used is ignored with
    a note: slightly-off colours beat refusing a readable picture.
    """
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
        if image.mode != "CMYK" and description.lower().startswith("srgb"):
            return image
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            image, profile, ImageCms.createProfile("sRGB"), outputMode=output_mode
        )
    except Exception as error:
        log.debug("ignoring ICC profile", exc_info=True)
        steps.append(f"ignored an unusable ICC profile ({type(error).__name__})")
        return image
    steps.append(f"converted colours from ICC profile {description or 'unnamed'!r} to sRGB")
    return converted


def _reject_known_unsupported(data: bytes) -> None:
    head = bytes(data[:32])
    stripped = head.lstrip()
    for offset, signature, name, advice in _KNOWN_SIGNATURES:
        candidate = stripped if signature.startswith(b"<") else head
        if candidate[offset : offset + len(signature)] == signature:
            raise ImageInputError(
                f"The file is {name}, which is not a supported image format "
                f"({_ALLOWED_NAMES}): {advice}."
            )


def _corrupt(fmt: Optional[str], error: BaseException) -> ImageInputError:
    if not isinstance(error, _DECODER_ERRORS):
        log.debug("unexpected decoder error", exc_info=error)
    detail = str(error).strip() or type(error).__name__
    where = f"{fmt}: " if fmt else ""
    return ImageInputError(
        f"The image file is truncated or corrupt ({where}{detail}): re-save it as PNG or JPEG."
    )
