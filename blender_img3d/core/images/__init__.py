"""Any picture a user brings → the Shap-E image model's input, or a clear ImageInputError.

Shap-E's image model was trained on renders of one centred object on plain
white, so a phone photo, a PNG with alpha or a Blender image has to be decoded
safely, cut out and reframed before it is useful. The steps live in small
modules; this package re-exports the public API:

- :func:`load_image`: any source → a validated, upright, 8-bit RGB(A) PIL image.
- :func:`prepare_image`: any source → :class:`PreparedImage` (the model's input
  on white plus a JSON-serialisable :class:`ImageReport` of what was done).
- :func:`save_model_input`: write the exact model input as a PNG, atomically.

Only numpy and Pillow are imported at module level (scipy is imported where
the background is analysed), so importing this package is cheap.
"""

from __future__ import annotations

from .loading import load_image
from .preparation import (
    DEFAULT_MODEL_INPUT_SIZE,
    ImageReport,
    PreparedImage,
    prepare_image,
    save_model_input,
)

__all__ = [
    "DEFAULT_MODEL_INPUT_SIZE",
    "ImageReport",
    "PreparedImage",
    "load_image",
    "prepare_image",
    "save_model_input",
]
