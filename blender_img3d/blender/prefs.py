"""Add-on preferences: models and their cache, downloads, device, dependencies, system check.

The buttons run operators from ``operators/dependencies.py`` and
``operators/models.py``; their progress lives in those modules' ``TaskStatus``
objects and is drawn here. Nothing heavy is imported to draw this page.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..core import settings as defaults
from .operators.dependencies import INSTALL_STATUS, TORCH_BUILD_ITEMS
from .operators.models import DOWNLOAD_STATUS
from .operators.task_status import TaskStatus
from .props import DEVICE_ITEMS

# The extension's own package (``bl_ext.<repo>.blender_img3d``): one level above ``blender/``.
ADDON_PACKAGE = __package__.rpartition(".")[0]


def user_data_dir(*parts: str) -> Path:
    """A folder of the extension's own user data (created on demand)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="/".join(parts), create=True))
    except ValueError:
        # Loaded as a legacy add-on (not from an extension repository): use Blender's user dir.
        base = Path(bpy.utils.user_resource("DATAFILES", path="blender_img3d", create=True))
        folder = base.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def get_preferences() -> "IMG3D_Preferences":
    return bpy.context.preferences.addons[ADDON_PACKAGE].preferences


class IMG3D_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    image_model: StringProperty(
        name="Image Model",
        description="Hub id or local folder of the image-to-3D model",
        default=defaults.IMAGE_MODEL_ID,
    )
    text_model: StringProperty(
        name="Text Model",
        description="Hub id or local folder of the text-to-3D model",
        default=defaults.TEXT_MODEL_ID,
    )
    revision: StringProperty(
        name="Revision",
        description="Model revision (branch, tag or commit) to pin when downloading",
        default=defaults.DEFAULT_REVISION,
    )
    cache_dir: StringProperty(
        name="Cache Folder",
        description="Where downloaded models are kept (empty: the extension's user folder)",
        subtype="DIR_PATH",
        default="",
    )
    allow_download: BoolProperty(
        name="Allow Downloads",
        description="Download missing models (needs Blender's Allow Online Access)",
        default=False,
    )
    device: EnumProperty(name="Preferred Device", items=DEVICE_ITEMS, default="AUTO")
    keep_model_loaded: BoolProperty(
        name="Keep Model Loaded",
        description="Keep the model in memory between runs (faster, uses memory)",
        default=True,
    )
    torch_build: EnumProperty(
        name="PyTorch Build",
        description="Which PyTorch Install Dependencies fetches",
        items=TORCH_BUILD_ITEMS,
        default="AUTO",
    )
    torch_index_url: StringProperty(
        name="PyTorch Index",
        description=(
            "Optional extra package index for PyTorch, e.g. https://download.pytorch.org/whl/cu128 "
            "for a CUDA 12.8 build or .../whl/cpu for the small CPU build (empty: PyPI)"
        ),
        default="",
    )
    show_system: BoolProperty(name="System Check", default=False)
    show_install_log: BoolProperty(name="Log", default=False)

    def resolved_cache_dir(self) -> Path:
        return Path(bpy.path.abspath(self.cache_dir)) if self.cache_dir else user_data_dir("models")

    def downloads_allowed(self) -> bool:
        """Downloads need both this preference and Blender's global online access."""
        return bool(self.allow_download and bpy.app.online_access)

    def draw(self, context):
        layout = self.layout
        self._draw_models(layout.box())
        self._draw_dependencies(layout.box())
        self._draw_system(layout.box())

    def _draw_models(self, box) -> None:
        box.label(text="Models", icon="FILE_3D")
        col = box.column()
        col.prop(self, "image_model")
        col.prop(self, "text_model")
        col.prop(self, "revision")
        col.prop(self, "cache_dir")
        col.prop(self, "allow_download")
        if self.allow_download and not bpy.app.online_access:
            col.label(
                text="Blender's online access is off: enable it in Preferences > System",
                icon="ERROR",
            )
        col.prop(self, "device")
        col.prop(self, "keep_model_loaded")
        row = box.row(align=True)
        sub = row.row(align=True)
        sub.enabled = self.downloads_allowed()
        sub.operator("img3d.download_models", icon="IMPORT")
        row.operator("img3d.open_cache_folder", icon="FILE_FOLDER")
        row.operator("img3d.release_model", icon="X")
        _draw_task(box, DOWNLOAD_STATUS, "DOWNLOAD")

    def _draw_dependencies(self, box) -> None:
        from ..core.system.deps import missing_modules
        from .operators.dependencies import activate_vendor

        box.label(text="Dependencies", icon="SCRIPT")
        activate_vendor()  # cheap and idempotent: packages installed earlier count as found
        missing = missing_modules()
        if missing:
            box.label(text="Missing: " + ", ".join(missing), icon="ERROR")
        col = box.column()
        col.row().prop(self, "torch_build", expand=True)
        col.prop(self, "torch_index_url")
        row = box.row()
        row.enabled = bool(bpy.app.online_access)
        row.operator("img3d.install_dependencies", icon="IMPORT")
        if not bpy.app.online_access:
            box.label(text="Needs Preferences > System > Allow Online Access", icon="INFO")
        _draw_task(box, INSTALL_STATUS, "INSTALL")
        if INSTALL_STATUS.lines:
            box.prop(self, "show_install_log", icon="TEXT")
            if self.show_install_log:
                log = box.column(align=True)
                log.scale_y = 0.7
                for line in INSTALL_STATUS.tail(12):
                    log.label(text=line[-160:])

    def _draw_system(self, box) -> None:
        from .ui.system_report import draw_check

        header = box.row()
        header.prop(
            self,
            "show_system",
            icon="TRIA_DOWN" if self.show_system else "TRIA_RIGHT",
            emboss=False,
        )
        if self.show_system:
            draw_check(box)


def _draw_task(layout, status: TaskStatus, task: str) -> None:
    """Progress bar with a Cancel button while running; the last result otherwise."""
    if status.running:
        row = layout.row(align=True)
        row.progress(factor=status.fraction, type="BAR", text=status.text or "Working...")
        row.operator("img3d.cancel_task", text="", icon="CANCEL").task = task
    elif status.error:
        row = layout.row()
        row.alert = True
        row.label(text=status.error, icon="ERROR")
    elif status.text:
        layout.label(text=status.text, icon="CHECKMARK")


CLASSES = (IMG3D_Preferences,)
