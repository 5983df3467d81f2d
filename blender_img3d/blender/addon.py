"""Registration: joins every module's ``CLASSES`` and installs properties and handlers.

``register()`` also activates the vendor folder (packages installed in an
earlier session), the one place besides a finished install that does.
"""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import operators, prefs, props, tasks, ui

CLASSES = (*tasks.CLASSES, *props.CLASSES, *prefs.CLASSES, *operators.CLASSES, *ui.CLASSES)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


@persistent
def _cancel_job_on_load(*_args) -> None:
    """A file load replaces the scene the job would import into: stop the job first.

    Only flags it: the worker stops at its next check and an app timer ends the
    session once it has (a result that raced the cancel is dropped), so the load
    never waits for a model load that can't be interrupted.
    """
    task = tasks.active("generate")
    if task is not None:
        task.cancel()
        tasks.finish_in_background(task)


def register() -> None:
    _register_classes()
    props.register_properties()
    tasks.register_properties()
    operators.dependencies.activate_vendor()
    bpy.app.handlers.load_pre.append(_cancel_job_on_load)
    bpy.types.TOPBAR_MT_file_export.append(operators.export.menu_func_export)


def unregister() -> None:
    tasks.abandon_all()
    bpy.types.TOPBAR_MT_file_export.remove(operators.export.menu_func_export)
    if _cancel_job_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_job_on_load)
    tasks.unregister_properties()
    props.unregister_properties()
    _unregister_classes()
