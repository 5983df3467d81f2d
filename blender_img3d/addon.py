"""Registration: joins every module's ``CLASSES`` and installs properties and handlers."""

from __future__ import annotations

import bpy

from . import operators, prefs, props, ui

CLASSES = (*props.CLASSES, *prefs.CLASSES, *operators.CLASSES, *ui.CLASSES)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    props.register_properties()


def unregister() -> None:
    props.unregister_properties()
    _unregister_classes()
