"""Add-on preferences: where models come from, whether downloads are allowed, device."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .core import settings as defaults
from .props import DEVICE_ITEMS

ADDON_PACKAGE = __package__


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

    def resolved_cache_dir(self) -> Path:
        return Path(bpy.path.abspath(self.cache_dir)) if self.cache_dir else user_data_dir("models")

    def downloads_allowed(self) -> bool:
        """Downloads need both this preference and Blender's global online access."""
        return bool(self.allow_download and bpy.app.online_access)

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "image_model")
        col.prop(self, "text_model")
        col.prop(self, "revision")
        col.prop(self, "cache_dir")
        row = col.row()
        row.prop(self, "allow_download")
        if self.allow_download and not bpy.app.online_access:
            col.label(
                text="Blender's online access is off: enable it in Preferences > System",
                icon="ERROR",
            )
        col.prop(self, "device")
        col.prop(self, "keep_model_loaded")


CLASSES = (IMG3D_Preferences,)
