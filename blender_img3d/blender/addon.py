"""Registration: joins every module's ``CLASSES`` and installs properties and handlers.

``register()`` also activates the vendor folder (packages installed in an
earlier session), the one place besides a finished install that does.
"""

from __future__ import annotations

import logging

import bpy
from bpy.app.handlers import persistent

from . import operators, prefs, presets, props, tasks, ui

CLASSES = (
    *tasks.CLASSES,
    *props.CLASSES,
    *prefs.CLASSES,
    *operators.CLASSES,
    *presets.CLASSES,
    *ui.CLASSES,
)

log = logging.getLogger(__name__)

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


@persistent
def _move_unsaved_results(*args) -> None:
    """First save of a file: its results leave the temporary folder for ``//img3d/``."""
    from ..core.errors import Img3DError
    from .scene import move_unsaved_results

    target = next((arg for arg in args if isinstance(arg, str) and arg), "")
    if bpy.data.filepath or not target:
        return
    try:
        move_unsaved_results(target)
    except Img3DError as error:  # the save itself must go on; the files stay where they were
        log.warning("Img3D results not moved beside %s: %s", target, error)


def register() -> None:
    _register_classes()
    props.register_properties()
    tasks.register_properties()
    operators.dependencies.activate_vendor()
    presets.install_bundled_presets()
    bpy.app.handlers.load_pre.append(_cancel_job_on_load)
    bpy.app.handlers.save_pre.append(_move_unsaved_results)
    bpy.types.TOPBAR_MT_file_export.append(operators.export.menu_func_export)
    bpy.types.TOPBAR_MT_file_import.append(operators.results.menu_func_import)


def unregister() -> None:
    tasks.abandon_all()
    bpy.types.TOPBAR_MT_file_export.remove(operators.export.menu_func_export)
    bpy.types.TOPBAR_MT_file_import.remove(operators.results.menu_func_import)
    if _cancel_job_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_job_on_load)
    if _move_unsaved_results in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(_move_unsaved_results)
    tasks.unregister_properties()
    props.unregister_properties()
    _unregister_classes()
