"""Python API for scripts inside Blender: the same path as the Generate button, synchronous.

    from bl_ext.user_default.blender_img3d.blender import api
    objects = api.generate(image_path="//chair.png", seed=3, steps=64)

Every keyword is optional and named like the CLI flag / operator property
(``image_path``, ``prompt``, ``model``, ``steps``, ``guidance``, ``seed``,
``batch``, ``grid_size``, ``device``, ``target_faces``, ``schedule``); what
isn't given comes from the scene's Img3D settings and the preferences.
Failures raise the core's typed errors (``Img3DError`` subclasses).
"""

from __future__ import annotations

from typing import Any, Optional

import bpy

from ..core.errors import CancelledError, Img3DError
from . import session as sessions

ENUM_OVERRIDES = {"device", "schedule"}


def _as_enum(value: str) -> str:
    return str(value).upper().replace("-", "_")


def generate(
    context: Optional[bpy.types.Context] = None,
    *,
    timeout: Optional[float] = None,
    **overrides: Any,
) -> list[bpy.types.Object]:
    """Generate and import synchronously; return the new objects (one per variant)."""
    from .operators.dependencies import activate_vendor
    from .operators.generate import (
        OVERRIDABLE,
        import_options,
        keep_model_loaded,
        request_from_scene,
    )

    context = context or bpy.context
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    for name in ENUM_OVERRIDES & set(overrides):
        overrides[name] = _as_enum(overrides[name])
    activate_vendor()
    request = request_from_scene(context, overrides)
    session = sessions.GenerateSession(
        request, import_options(context), release_model=not keep_model_loaded()
    )
    session.start(context.window_manager)
    state = session.run_to_end(context, timeout=timeout)
    if state == sessions.FAILED:
        raise Img3DError(session.error or "Generation failed.")
    if state == sessions.CANCELLED:
        raise CancelledError()
    return session.objects


def cancel() -> bool:
    """Cancel the running generation (if any) and wait for its thread."""
    return sessions.cancel_active()
