"""The sRGB transfer function (IEC 61966-2-1), one copy for images, meshes and writers.

Shap-E predicts sRGB-encoded vertex colours and Blender stores them so; glTF
wants linear light, and Blender's float pixels are linear. Every conversion
between the two goes through these functions.
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """sRGB-encoded values (clipped to [0, 1]) to linear light."""
    c = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(colors: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) to sRGB encoding (inverse of :func:`srgb_to_linear`)."""
    c = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)
