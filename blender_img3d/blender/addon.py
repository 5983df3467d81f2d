"""Registration: joins every module's ``CLASSES`` and installs properties and handlers."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import operators, prefs, props, ui

CLASSES = (*props.CLASSES, *prefs.CLASSES, *operators.CLASSES, *ui.CLASSES)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


@persistent
def _cancel_job_on_load(*_args) -> None:
    """A file load replaces the scene the job would import into: stop the job first."""
    from .session import cancel_active

    cancel_active()


def register() -> None:
    _register_classes()
    props.register_properties()
    bpy.app.handlers.load_pre.append(_cancel_job_on_load)
    bpy.types.TOPBAR_MT_file_export.append(operators.export.menu_func_export)


def unregister() -> None:
    from .session import cancel_active

    cancel_active()
    bpy.types.TOPBAR_MT_file_export.remove(operators.export.menu_func_export)
    if _cancel_job_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_job_on_load)
    props.unregister_properties()
    _unregister_classes()
