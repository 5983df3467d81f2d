"""The model's input: the object cut out, centred on white, square, at the encoder's size.

:func:`prepare_image` is what the pipeline calls; its :class:`ImageReport`
says what was done, so the panel can explain a surprising result and the
pipeline can store it with the mesh.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import ConfigError, ExportError, ImageInputError
from ..settings import ImageSettings
from .background import composite_on_white, cut_out, effective_background, feather
from .framing import frame_square, square_side, subject_bbox
from .loading import decode_source

log = logging.getLogger(__name__)

# CLIP ViT-L/14's image processor resizes and centre-crops to 224 px.
DEFAULT_MODEL_INPUT_SIZE = 224
# Background analysis runs at most at this size: plenty for a 224 px output,
# and it bounds time and memory for 64 MP photos.
WORK_MAX_SIDE = 2048
# Edge feathering, in output pixels: softens the cut without visible blur.
_FEATHER_OUTPUT_PIXELS = 0.5
_MAX_SIZE = 4096
# Suffix -> Pillow format for saving the model's input (``--save-input``).
MODEL_INPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


@dataclass
class ImageReport:
    """What preparation did, as plain data (``to_dict()`` is JSON-serialisable).

    Coordinates (``bbox``, ``original_size``) are in source pixels after EXIF
    orientation, top-left origin, ``bbox`` end-exclusive ``[x0, y0, x1, y1]``.
    """

    source: str
    format: Optional[str]
    original_size: list[int]
    original_mode: str
    method: str  # "alpha" | "learned" | "flood" | "saliency" | "none"
    mask_coverage: float  # share of the picture that is object, 0..1
    bbox: list[int]
    background_color: Optional[list[int]]  # estimated RGB 0..255 ("flood" only)
    border: float
    output_size: int
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    background: str = "auto"  # the choice asked for (settings.BACKGROUNDS)
    confidence: Optional[float] = None  # 0..1, the cut's (or the rejected cut's) confidence
    # The one line to show the user: the background was kept, or the cut is doubtful.
    warning: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedImage:
    """The exact RGB image handed to the model (``size``², white background) and its report."""

    image: Image.Image
    report: ImageReport


def prepare_image(
    source: Any,
    settings: Optional[ImageSettings] = None,
    *,
    size: int = DEFAULT_MODEL_INPUT_SIZE,
    linear: bool = False,
    width: Optional[int] = None,
    height: Optional[int] = None,
    bottom_up: bool = True,
    cache_dir: Optional[str | os.PathLike] = None,
    allow_download: bool = False,
    learned_model: Optional[str | os.PathLike] = None,
) -> PreparedImage:
    """Turn any image source into the model's input, or raise ImageInputError.

    Load and validate (see :func:`~.loading.load_image`), separate the object
    from its background (see :mod:`.background`), crop to it, pad to a white
    square leaving ``settings.border`` of the side free on each side, and
    resize to ``size`` with LANCZOS. When nothing is removed (method "none"),
    the whole picture is padded to a square without an extra border.

    The learned remover is looked up in ``cache_dir`` (the hub cache by
    default) and fetched only when ``allow_download``; ``background="learned"``
    without it raises :class:`ModelNotFoundError` saying how to get it.
    ``learned_model`` names another salient-object ONNX file to use instead.
    """
    settings = settings or ImageSettings()
    _check_options(settings, size)
    choice = effective_background(settings)
    if learned_model is not None:
        learned_model = Path(learned_model)
    elif choice in ("auto", "learned"):
        from .learned import locate_background_model

        learned_model = locate_background_model(
            cache_dir, allow_download=allow_download, required=choice == "learned"
        )
    decoded = decode_source(
        source,
        settings,
        linear=linear,
        width=width,
        height=height,
        bottom_up=bottom_up,
        draft_side=WORK_MAX_SIDE,
    )
    steps = list(decoded.steps)
    work = decoded.image
    if max(work.size) > WORK_MAX_SIDE:
        factor = WORK_MAX_SIDE / max(work.size)
        shrunk = (max(1, round(work.width * factor)), max(1, round(work.height * factor)))
        work = work.resize(shrunk, Image.Resampling.LANCZOS, reducing_gap=3.0)
        steps.append(f"analysed at {shrunk[0]}×{shrunk[1]}")
    pixels = np.asarray(work)
    alpha8 = pixels[..., 3] if work.mode == "RGBA" else None
    cutout = cut_out(pixels[..., :3], alpha8, settings, learned_model=learned_model)
    height_px, width_px = pixels.shape[:2]
    if cutout.mask is None:
        bbox, border, alpha = (0, 0, width_px, height_px), 0.0, None
        coverage = 1.0
    else:
        if not cutout.mask.any():
            raise ImageInputError(
                "No object found: the picture looks like plain background. Use a picture "
                "of one object that stands out from its background."
            )
        bbox, border = subject_bbox(cutout.mask), settings.border
        coverage = float(cutout.mask.mean())
        alpha = cutout.alpha
        if alpha is None:
            sigma = _FEATHER_OUTPUT_PIXELS * square_side(bbox, border) / size
            alpha = feather(cutout.mask, sigma)
    steps.append(f"background: {cutout.method}")
    # Only the framed square (inside the picture) is composited: for a small object in
    # a big photo that is a fraction of the pixels.
    left, top, right, bottom = _framed_region(bbox, border, (width_px, height_px))
    region = (slice(top, bottom), slice(left, right))
    framed = replace(
        cutout,
        rgb=cutout.rgb[region],
        background=None if cutout.background is None else cutout.background[region],
    )
    composited = composite_on_white(framed, None if alpha is None else alpha[region])
    if cutout.mask is not None:
        steps.append(f"cropped to the object, {border:.0%} white border each side")
    x0, y0, x1, y1 = bbox
    image = frame_square(composited, (x0 - left, y0 - top, x1 - left, y1 - top), border, size)
    steps.append(f"padded to a white square, resized to {size}×{size} (LANCZOS)")
    report = ImageReport(
        source=_describe(source),
        format=decoded.format,
        original_size=list(decoded.original_size),
        original_mode=decoded.original_mode,
        method=cutout.method,
        mask_coverage=round(coverage, 6),
        bbox=_to_source_pixels(bbox, (width_px, height_px), decoded.original_size),
        background_color=cutout.background_color,
        border=float(border),
        output_size=int(size),
        steps=steps,
        notes=list(cutout.notes),
        background=choice,
        confidence=cutout.confidence,
        warning=cutout.warning,
    )
    log.debug("prepared image: %s", report)
    return PreparedImage(image=image, report=report)


def save_model_input(prepared: PreparedImage | Image.Image, path: str | os.PathLike) -> Path:
    """Write the model's input at ``path`` in the format its suffix names, atomically.

    ``.png`` (lossless: the exact pixels the model saw), ``.jpg``/``.jpeg``,
    ``.webp``, ``.bmp`` or ``.tif``/``.tiff`` (see :data:`MODEL_INPUT_FORMATS`);
    any other suffix is refused rather than given bytes it doesn't announce.
    A failure never leaves a partial file (``exporters/atomic.py``).
    """
    from ..exporters.atomic import atomic_write, check_target

    image = prepared.image if isinstance(prepared, PreparedImage) else prepared
    if not isinstance(image, Image.Image):
        raise ImageInputError(
            f"Nothing to save: expected a prepared image, got {type(prepared).__name__}."
        )
    target = check_target(path)
    image_format = MODEL_INPUT_FORMATS.get(target.suffix.lower())
    if image_format is None:
        raise ExportError(
            f"Can't save the model input as {target.name}: use an image suffix "
            f"({', '.join(MODEL_INPUT_FORMATS)})."
        )
    if image_format in ("JPEG", "BMP") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    try:
        with atomic_write(target, "wb") as stream:
            image.save(stream, format=image_format)
    except (ValueError, KeyError) as error:
        raise ImageInputError(
            f"The prepared image can't be saved as {image_format}: {error}."
        ) from None
    return target


def _check_options(settings: ImageSettings, size: int) -> None:
    from ..settings import check_background

    check_background(settings.background)
    if not 0.0 <= settings.border < 0.5:
        raise ConfigError(f"border must be in [0, 0.5), got {settings.border}.")
    if not isinstance(size, int) or not 1 <= size <= _MAX_SIZE:
        raise ConfigError(f"The model input size must be 1..{_MAX_SIZE} pixels, got {size!r}.")
    if settings.max_file_bytes <= 0 or settings.max_pixels <= 0:
        raise ConfigError("max_file_bytes and max_pixels must be positive.")


def _framed_region(
    bbox: tuple[int, int, int, int], border: float, picture: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The part of the picture the framing square covers, ``(left, top, right, bottom)``."""
    x0, y0, x1, y1 = bbox
    half = square_side(bbox, border) / 2.0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    right = min(picture[0], int(np.ceil(cx + half)))
    bottom = min(picture[1], int(np.ceil(cy + half)))
    return left, top, right, bottom


def _to_source_pixels(
    bbox: tuple[int, int, int, int], work_size: tuple[int, int], original: tuple[int, int]
) -> list[int]:
    sx, sy = original[0] / work_size[0], original[1] / work_size[1]
    x0, y0, x1, y1 = bbox
    return [
        max(0, int(np.floor(x0 * sx))),
        max(0, int(np.floor(y0 * sy))),
        min(original[0], int(np.ceil(x1 * sx))),
        min(original[1], int(np.ceil(y1 * sy))),
    ]


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    if isinstance(source, np.ndarray):
        return f"pixels {source.shape} {source.dtype}"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes"
    return "PIL image"
