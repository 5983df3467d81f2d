"""Python API for scripts inside Blender: the same path as the Generate button, synchronous.

    from bl_ext.user_default.blender_img3d.blender import api
    objects = api.generate(image_path="//chair.png", seed=3, steps=64, schedule="shap-e")

Every keyword is optional, named like the CLI flag / operator property and
takes the core's values (``requests.OVERRIDABLE``: ``image_path``, ``prompt``,
``model``, ``steps``, ``guidance``, ``seed``, ``batch``, ``grid_size``,
``device``, ``target_faces``, ``schedule``); what isn't given comes from the
scene's Img3D settings and the preferences. Failures raise the core's typed
errors (``Img3DError`` subclasses).
"""

from __future__ import annotations

from typing import Any, Optional

import bpy

from ..core.errors import CancelledError, Img3DError
from . import session as sessions
from .requests import check_overrides, import_options, request_from_scene


def generate(
    context: Optional[bpy.types.Context] = None,
    *,
    timeout: Optional[float] = None,
    **overrides: Any,
) -> list[bpy.types.Object]:
    """Generate and import synchronously; return the new objects (one per variant)."""
    context = context or bpy.context
    check_overrides(overrides)
    request = request_from_scene(context, overrides)
    session = sessions.GenerateSession(request, import_options(context))
    session.start(context.window_manager)
    state = session.run_to_end(context, timeout=timeout)
    if state == sessions.FAILED:
        raise Img3DError(session.error or "Generation failed.")
    if state == sessions.CANCELLED:
        raise CancelledError()
    return session.objects


def cancel() -> bool:
    """Ask the running generation (if any) to stop; it ends at its next check."""
    return sessions.cancel_active()
