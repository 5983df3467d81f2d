"""Typed errors for everything a user can get wrong or run into.

Every message says what went wrong and what to do about it, because the
Blender operators and the CLI show ``str(error)`` as the one line a user sees.
"""

from __future__ import annotations


class Img3DError(Exception):
    """Base class: any failure the user can act on."""


class ConfigError(Img3DError):
    """A setting has an impossible value (negative steps, unknown device, ...)."""


class DependencyError(Img3DError):
    """A required Python package is not installed (or too old)."""


class ImageInputError(Img3DError):
    """The input image can't be used: unreadable, unsupported, too large or blank."""


class ModelNotFoundError(Img3DError):
    """The Shap-E model is missing, partial, or can't be fetched offline."""


class ModelLoadError(Img3DError):
    """The model files exist but could not be loaded (corrupt, wrong layout)."""


class DeviceError(Img3DError):
    """The requested compute device is unavailable or ran out of memory."""


class EmptySurfaceError(Img3DError):
    """Decoding produced no surface at all."""


class LatentsError(Img3DError):
    """Saved or given Shap-E latents are missing, corrupt, or don't fit the decoder."""


class MeshProcessingError(Img3DError):
    """A mesh operation got a mesh it can't work on."""


class MeshInputError(Img3DError):
    """A mesh can't be used: a file that is missing, unsupported, damaged or empty, or
    arrays that are not finite, out of range for the target format, or badly indexed."""


class ExportError(Img3DError):
    """A file could not be written; the previous file, if any, is untouched."""


class OutputPathError(ExportError):
    """An output can't go where it was asked to: it collides with another output or an
    input, or its folder or name is unusable. Raised before any work; nothing is written."""


class ServerError(Img3DError):
    """The GPU server can't be reached, refused the request, or lost the job."""


class CancelledError(Img3DError):
    """The user cancelled the job."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)
