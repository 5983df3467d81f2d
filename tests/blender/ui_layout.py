"""A stand-in for ``bpy.types.UILayout`` that records what a ``draw`` function puts on screen.

Blender creates real layouts only while it draws a window, which the bpy module
in background mode never does; this records every label, property and operator
call instead, so a test can run a panel's or the preferences' ``draw`` and read it.
"""

from __future__ import annotations

from types import SimpleNamespace


class RecordingLayout:
    """Accepts any layout call; sub-layouts share one list of ``(kind, text)`` records."""

    def __init__(self, records: list | None = None, parent: "RecordingLayout | None" = None):
        self.records = [] if records is None else records
        self.parent = parent
        self.alert = False
        self.enabled = True
        self.scale_y = 1.0
        self.use_property_split = False

    def _child(self, *_args, **_kwargs) -> "RecordingLayout":
        return RecordingLayout(self.records, self)

    row = column = box = split = _child

    @property
    def greyed(self) -> bool:
        """Drawn disabled: this layout or one it sits in has ``enabled = False``."""
        return not self.enabled or (self.parent is not None and self.parent.greyed)

    def label(self, text: str = "", **_kwargs) -> None:
        self.records.append(("label", text))

    def prop(self, data, name: str, **kwargs) -> None:
        self.records.append(("prop", kwargs.get("text", name)))
        if self.greyed:
            self.records.append(("greyed", kwargs.get("text", name)))

    def operator(self, idname: str, **_kwargs) -> SimpleNamespace:
        self.records.append(("operator", idname))
        return SimpleNamespace()

    def progress(self, **kwargs) -> None:
        self.records.append(("progress", kwargs.get("text", "")))

    def template_ID(self, *_args, **_kwargs) -> None:  # noqa: N802  (Blender's name)
        self.records.append(("template_ID", ""))

    def template_list(self, list_type: str, *_args, **_kwargs) -> None:
        self.records.append(("template_list", list_type))

    def template_icon(self, **_kwargs) -> None:
        self.records.append(("template_icon", ""))

    def menu(self, menu: str, **_kwargs) -> None:
        self.records.append(("menu", menu))

    def texts(self, kind: str) -> list[str]:
        return [text for record_kind, text in self.records if record_kind == kind]


class PreferencesView:
    """The add-on's preferences with a recording layout in place of Blender's read-only one."""

    def __init__(self, prefs, layout) -> None:
        self._prefs, self.layout = prefs, layout

    def __getattr__(self, name):
        return getattr(self._prefs, name)
