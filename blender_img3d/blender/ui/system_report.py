"""Drawing the last system check: one line per entry, a check mark or a red line with advice."""

from __future__ import annotations

import bpy


def draw_check(layout) -> None:
    """The Run System Check button and the last results under it (the WindowManager's)."""
    layout.operator("img3d.system_check", icon="CHECKMARK")
    entries = bpy.context.window_manager.img3d_tasks.system_check
    if not entries:
        layout.label(text="Not run yet", icon="INFO")
        return
    col = layout.column(align=True)
    for entry in entries:
        row = col.row()
        row.alert = not entry.ok
        row.label(text=f"{entry.name}: {entry.detail}", icon="CHECKMARK" if entry.ok else "ERROR")
        if entry.advice and not entry.ok:
            hint = col.row()
            hint.alert = True
            hint.label(text=f"    {entry.advice}")
        elif entry.advice:
            col.label(text=f"    {entry.advice}", icon="BLANK1")
