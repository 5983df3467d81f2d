"""Panels in the 3D View sidebar (tab "Img3D")."""

from . import panel, tools_panel

CLASSES = (*panel.CLASSES, *tools_panel.CLASSES)
