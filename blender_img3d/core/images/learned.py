"""The learned background remover: a salient-object model in ONNX, run by onnxruntime.

The model (:data:`~..settings.BACKGROUND_MODEL_ID`, BiRefNet lite, MIT) lives in
the Hugging Face cache beside Shap-E and arrives through the same path
(:mod:`..system.model_store`) and the same consent as Shap-E's weights:
``--allow-download`` on the command line, *Download Models* in Blender (which
honours Blender's online access). An ONNX graph is data, not code:
nothing from the hub is executed, and onnxruntime is imported only when a
picture is actually cut out with it.

Any salient-object model with one ``[1, 3, H, W]`` image input (ImageNet
normalisation) and a ``[1, 1, H, W]`` (or ``[1, H, W]``) map as its first
output works: the map may be logits (BiRefNet, IS-Net exports) or already a
probability (U²-Net exports); logits are recognised by leaving [0, 1].
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import DependencyError, ImageInputError, ModelNotFoundError
from ..settings import BACKGROUND_MODEL_ID

log = logging.getLogger(__name__)

# BiRefNet's training size; used when the graph leaves its input size open.
DEFAULT_INPUT_SIDE = 1024
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_ALLOW_DOWNLOAD_HINT = (
    "Download it once with --allow-download (in Blender: Download Models in the add-on's "
    "preferences), or pass --background classic for the offline remover."
)


def locate_background_model(
    cache_dir: Optional[str | Path] = None,
    *,
    allow_download: bool,
    required: bool,
    model: str = BACKGROUND_MODEL_ID,
) -> Optional[Path]:
    """The learned remover's file when it is cached; else, if ``required``, downloaded.

    ``required`` (``--background learned``) fetches it when ``allow_download``
    and otherwise raises :class:`ModelNotFoundError` saying how to get it.
    Not required (``auto``), it is used only if already there: None sends the
    picture to the offline remover, and nothing is downloaded behind the
    user's back (*Download Models*, or one ``--background learned
    --allow-download`` run, fetches it).
    """
    from ..system.model_store import download_background_model, find_background_model

    found = find_background_model(cache_dir, model=model)
    if found is not None or not required:
        return found
    if not allow_download:
        raise ModelNotFoundError(
            f"The learned background remover is not downloaded. {_ALLOW_DOWNLOAD_HINT}"
        )
    return download_background_model(cache_dir, model=model)


def learned_alpha(rgb: np.ndarray, model_path: str | Path) -> np.ndarray:
    """The model's foreground probability for (H, W, 3) float ``rgb`` in [0, 1], as (H, W)."""
    path = Path(model_path)
    try:
        stamp = path.stat()
    except OSError:
        raise ModelNotFoundError(
            f"The background model {path} is missing: download it again, or pass "
            "--background classic."
        ) from None
    # Keyed by size and time too, so a re-downloaded file is not served from the old session.
    session = _session(str(path), stamp.st_size, stamp.st_mtime_ns)
    meta = session.get_inputs()[0]
    side_h, side_w = _input_side(meta.shape)
    picture = Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")
    resized = picture.resize((side_w, side_h), Image.Resampling.BILINEAR)
    pixels = (np.asarray(resized, np.float32) / 255.0 - _MEAN) / _STD
    batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
    try:
        output = session.run(None, {meta.name: batch})[0]
    except Exception as error:  # onnxruntime raises its own (untyped) failures
        raise ImageInputError(
            f"The learned background remover failed on this picture ({error}): "
            "pass --background classic, or re-download the model."
        ) from None
    probability = np.asarray(output, np.float32).squeeze()
    if probability.ndim != 2:
        raise ImageInputError(
            f"The background model returned a map of shape {np.shape(output)}, not one "
            "image: use a salient-object model with a single [1, 1, H, W] output."
        )
    if probability.min() < 0.0 or probability.max() > 1.0:
        probability = 1.0 / (1.0 + np.exp(-np.clip(probability, -30.0, 30.0)))
    height, width = rgb.shape[:2]
    full = Image.fromarray(probability.astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(full, np.float32), 0.0, 1.0)


def _input_side(shape) -> tuple[int, int]:
    """The graph's fixed (H, W), or the default side where it is left open."""
    dims = list(shape)[-2:] if len(shape) >= 2 else []
    sides = [d if isinstance(d, int) and d > 0 else DEFAULT_INPUT_SIDE for d in dims]
    return (sides[0], sides[1]) if len(sides) == 2 else (DEFAULT_INPUT_SIDE, DEFAULT_INPUT_SIDE)


@lru_cache(maxsize=1)
def _session(path: str, _size: int, _mtime: int):
    """One onnxruntime session, kept warm between pictures (one model at a time)."""
    try:
        import onnxruntime
    except ImportError:
        raise DependencyError(
            "The learned background remover needs onnxruntime: install the add-on's "
            "dependencies (python -m blender_img3d info lists what is missing), or pass "
            "--background classic."
        ) from None
    providers = [
        name
        for name in ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
        if name in onnxruntime.get_available_providers()
    ]
    try:
        session = onnxruntime.InferenceSession(path, providers=providers)
    except Exception as error:
        raise ModelNotFoundError(
            f"The background model at {path} can't be loaded ({error}): delete it and "
            "download it again, or pass --background classic."
        ) from None
    log.debug("background model %s on %s", path, session.get_providers())
    return session
