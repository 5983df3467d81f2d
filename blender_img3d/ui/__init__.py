"""Panels in the 3D View sidebar (tab "Img3D")."""

from . import panel

CLASSES = (*panel.CLASSES,)
