"""Where every Img3D panel lives: the 3D View's sidebar, tab "Img3D"."""

from __future__ import annotations


class SidebarPanel:
    """Mixin for panels in the Img3D sidebar tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Img3D"


class SidebarSubPanel(SidebarPanel):
    """Mixin for the collapsible sections under the main Img3D panel."""

    bl_parent_id = "IMG3D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}
