"""Size limits checked before any pixel is decoded, with messages that name the limit.

Limits come from :class:`~blender_img3d.core.settings.ImageSettings` per call,
never from Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` (other code in the
same Blender process relies on that), which is therefore left untouched.
"""

from __future__ import annotations

from ..errors import ImageInputError


def describe_bytes(count: int) -> str:
    """``52428800`` → ``"50 MB"``; binary megabytes, as file managers show them."""
    megabytes = count / (1024 * 1024)
    if megabytes >= 1:
        return f"{megabytes:.1f}".rstrip("0").rstrip(".") + " MB"
    return f"{count / 1024:.1f}".rstrip("0").rstrip(".") + " KB"


def describe_pixels(count: int) -> str:
    """``64_000_000`` → ``"64 MP"``; small counts stay exact (``"1,000 pixels"``)."""
    if count < 100_000:
        return f"{count:,} pixels"
    return f"{count / 1e6:.1f}".rstrip("0").rstrip(".") + " MP"


def check_file_bytes(size: int, limit: int) -> None:
    """Reject an empty file or one over ``limit`` bytes."""
    if size <= 0:
        raise ImageInputError("The image file is empty (0 bytes): re-save it as PNG or JPEG.")
    if size > limit:
        raise ImageInputError(
            f"The image file is {describe_bytes(size)}, over the {describe_bytes(limit)} limit "
            "(max_file_bytes): shrink it or re-save it as JPEG."
        )


def check_pixel_count(width: int, height: int, limit: int) -> None:
    """Reject an image with no pixels or more than ``limit`` pixels."""
    if width <= 0 or height <= 0:
        raise ImageInputError(
            f"The image has no pixels ({width}×{height}): re-save it as PNG or JPEG."
        )
    count = width * height
    if count > limit:
        raise ImageInputError(
            f"The image is {width}×{height} pixels ({describe_pixels(count)}), over the "
            f"{describe_pixels(limit)} limit (max_pixels): downscale it first."
        )
