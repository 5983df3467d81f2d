"""Add-on preferences: models and their cache, downloads, device, dependencies, system check.

The buttons run operators from ``operators/dependencies.py`` and
``operators/models.py``; their progress is the WindowManager task state
(``tasks``), drawn here. Nothing heavy is imported, and nothing is activated,
to draw this page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..core import choices
from ..core import settings as defaults
from ..core.errors import Img3DError
from ..core.system import hardware, vendor
from ..core.system.requirements import BUNDLED_WHEELS
from . import tasks
from .props import enum_items

BACKEND_ITEMS = (
    ("LOCAL", "Local", "Generate on this computer (needs the dependencies installed)"),
    (
        "REMOTE",
        "Remote Server",
        "Send jobs to a GPU server started with 'python -m blender_img3d serve'; "
        "nothing heavy is installed here",
    ),
)

TORCH_BUILD_ITEMS = enum_items(hardware.TORCH_BUILDS)
# How long the model list drawn in the preferences is reused before the cache is read again.
MODEL_LISTING_SECONDS = 5.0

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


_CONNECTION_CHECK: list = [True, ""]  # the last Test Connection: not saved, drawn below


def record_connection_check(ok: bool, message: str) -> None:
    _CONNECTION_CHECK[:] = [ok, message]


def last_connection_check() -> tuple[bool, str]:
    """``(ok, message)`` of the last Test Connection (empty message: none yet)."""
    return bool(_CONNECTION_CHECK[0]), str(_CONNECTION_CHECK[1])


def get_preferences() -> "IMG3D_Preferences":
    return bpy.context.preferences.addons[ADDON_PACKAGE].preferences


# --- what Install Dependencies would do with these preferences ------------------------


def vendor_root() -> Path:
    """The folder holding the per-ABI install folders: the preference, or the extension's own."""
    custom = get_preferences().install_folder
    return Path(bpy.path.abspath(custom)) if custom else user_data_dir("vendor")


def vendor_folder() -> Path:
    """This Blender's install folder (``…/vendor/cp311-win_amd64``)."""
    return vendor.vendor_dir_for(vendor_root())


_MACHINE: list[hardware.Machine] = []


def this_machine() -> hardware.Machine:
    """The probed machine, once per session (``nvidia-smi`` is too slow for every redraw)."""
    if not _MACHINE:
        _MACHINE.append(hardware.probe_machine())
    return _MACHINE[0]


def install_plan(
    build: Optional[str] = None,
    packages: str = "",
    torch_index_url: Optional[str] = None,
    wheelhouse: Optional[str] = None,
) -> vendor.InstallPlan:
    """The plan for this Blender: its vendor folder, its own numpy as the pin, the prefs' choices.

    Unset arguments come from the preferences. Raises ``DependencyError``
    (an unsupported platform, a missing wheelhouse) before anything runs.
    """
    prefs = get_preferences()
    build = prefs.torch_build if build is None else build
    torch_index_url = prefs.torch_index_url if torch_index_url is None else torch_index_url
    wheelhouse = prefs.wheelhouse if wheelhouse is None else wheelhouse
    torch_build = None
    if not packages.split():
        torch_build = hardware.choose_build(this_machine(), build.lower())
        if torch_index_url:
            torch_build = hardware.with_index_url(torch_build, torch_index_url)
    return vendor.make_plan(
        vendor_folder(),
        build=torch_build,
        numpy_version=vendor.running_numpy_version(),
        packages=packages.split() or None,
        skip=vendor.available_at_pin(BUNDLED_WHEELS),
        wheelhouse=bpy.path.abspath(wheelhouse) if wheelhouse else None,
    )


_PLAN_LINES: dict[tuple, list[str]] = {}


def plan_lines() -> list[str]:
    """What Install Dependencies would do with the current preferences (cached per choice)."""
    prefs = get_preferences()
    key = (prefs.torch_build, prefs.torch_index_url, prefs.wheelhouse, prefs.install_folder)
    if key not in _PLAN_LINES:
        try:
            plan = install_plan()
            lines = plan.describe()
            try:
                vendor.check_path_lengths(plan.vendor_dir)
            except vendor.InstallError as exc:
                lines.append("Warning: " + str(exc))
        except Img3DError as exc:
            lines = [f"Can't install here: {exc}"]
        _PLAN_LINES.clear()
        _PLAN_LINES[key] = lines
    return _PLAN_LINES[key]


def last_check() -> Optional[vendor.CheckResult]:
    """The saved result of the last check of this Blender's install, if any."""
    return vendor.load_check(vendor_folder())


def forget_plan() -> None:
    """Drop the cached plan text (after an install or uninstall changes what is there)."""
    _PLAN_LINES.clear()


class IMG3D_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend: EnumProperty(
        name="Backend",
        description="Where Generate runs",
        items=BACKEND_ITEMS,
        default="LOCAL",
    )
    server_url: StringProperty(
        name="Server URL",
        description="Address of the GPU server, e.g. http://gpu-box.local:8765",
        default="http://127.0.0.1:8765",
    )
    server_token: StringProperty(
        name="Token",
        description=(
            "The token in the server's --token-file (kept in Blender's preferences, "
            "never in a .blend file)"
        ),
        subtype="PASSWORD",
        default="",
    )
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
        description=(
            "Where downloaded models are kept (empty: Hugging Face's standard cache, shared "
            "with diffusers and every Blender version; HF_HUB_CACHE / HF_HOME move it)"
        ),
        subtype="DIR_PATH",
        default="",
    )
    allow_download: BoolProperty(
        name="Allow Downloads",
        description="Download missing models (needs Blender's Allow Online Access)",
        default=False,
    )
    device: EnumProperty(
        name="Preferred Device", items=enum_items(choices.DEVICES), default=choices.DEVICES[0].name
    )
    keep_model_loaded: BoolProperty(
        name="Keep Model Loaded",
        description="Keep the model in memory between runs (faster, uses memory)",
        default=True,
    )
    preload_engine: BoolProperty(
        name="Preload Engine",
        description=(
            "When the Img3D tab first shows, import PyTorch and the model code in the "
            "background, so the first Generate starts at once (several seconds of one CPU "
            "core, about 450 MB of memory)"
        ),
        default=True,
    )
    torch_build: EnumProperty(
        name="PyTorch Build",
        description="Which PyTorch Install Dependencies fetches",
        items=TORCH_BUILD_ITEMS,
        default=hardware.BUILD_NAMES[0],
    )
    torch_index_url: StringProperty(
        name="PyTorch Index",
        description=(
            "Fetch torch from this index instead of the one the build implies, e.g. a mirror or "
            "https://download.pytorch.org/whl/cu126 for an older CUDA (empty: as detected)"
        ),
        default="",
    )
    wheelhouse: StringProperty(
        name="Wheelhouse",
        description=(
            "Install offline from this folder of wheels (pip --find-links --no-index): for "
            "studios without internet; nothing is contacted (empty: download)"
        ),
        subtype="DIR_PATH",
        default="",
    )
    install_folder: StringProperty(
        name="Install Folder",
        description=(
            "Where the packages go (empty: the extension's user folder). On Windows choose a "
            "short one such as C:\\Img3D when the default path is too long"
        ),
        subtype="DIR_PATH",
        default="",
    )
    show_plan: BoolProperty(name="Plan", default=True)
    show_system: BoolProperty(name="System Check", default=False)
    show_install_log: BoolProperty(name="Log", default=False)

    def resolved_cache_dir(self) -> Path:
        from ..core.system.model_store import default_cache_dir

        return Path(bpy.path.abspath(self.cache_dir)) if self.cache_dir else default_cache_dir()

    @property
    def remote(self) -> bool:
        """True when Generate goes to the GPU server (no local dependencies needed)."""
        return self.backend == "REMOTE"

    def remote_backend(self):
        """The ``remote`` backend for the configured server.

        Every call it makes first checks Blender's Allow Online Access, read
        here on the main thread (the worker thread never touches bpy).
        """
        from ..core.backend import get_backend

        allowed = bool(bpy.app.online_access)
        return get_backend(
            "remote",
            url=self.server_url,
            token=self.server_token.strip() or None,
            online=lambda: allowed,
        )

    def downloads_allowed(self) -> bool:
        """Downloads need both this preference and Blender's global online access."""
        return bool(self.allow_download and bpy.app.online_access)

    def draw(self, context):
        layout = self.layout
        self._draw_backend(layout.box())
        self._draw_models(layout.box())
        self._draw_dependencies(layout.box())
        self._draw_system(layout.box())

    def _draw_backend(self, box) -> None:
        box.label(text="Backend", icon="NETWORK_DRIVE")
        box.row().prop(self, "backend", expand=True)
        if not self.remote:
            return
        col = box.column()
        col.prop(self, "server_url")
        col.prop(self, "server_token")
        row = box.row()
        row.enabled = bool(bpy.app.online_access)
        row.operator("img3d.test_connection", icon="PLUGIN")
        if not bpy.app.online_access:
            box.label(text="Needs Preferences > System > Allow Online Access", icon="ERROR")
        ok, message = last_connection_check()
        if message:
            line = box.row()
            line.alert = not ok
            line.label(text=message, icon="CHECKMARK" if ok else "ERROR")

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
        col.prop(self, "preload_engine")
        row = box.row(align=True)
        sub = row.row(align=True)
        sub.enabled = self.downloads_allowed()
        sub.operator("img3d.download_models", icon="IMPORT")
        row.operator("img3d.open_cache_folder", icon="FILE_FOLDER")
        row.operator("img3d.release_model", icon="X")
        _draw_task(box, tasks.state_of("download"), "DOWNLOAD")
        _draw_model_listing(box, self.resolved_cache_dir())

    def _draw_dependencies(self, box) -> None:
        from ..core.system.deps import missing_modules

        box.label(text="Dependencies (needed by Generate only)", icon="SCRIPT")
        missing = missing_modules()
        if missing:
            box.label(text="Missing: " + ", ".join(missing), icon="ERROR")
        check = last_check()
        if check is not None:
            row = box.row()
            row.alert = not check.ok
            row.label(text=check.summary, icon="CHECKMARK" if check.ok else "ERROR")
        col = box.column()
        col.row().prop(self, "torch_build", expand=True)
        col.prop(self, "torch_index_url")
        col.prop(self, "wheelhouse")
        col.prop(self, "install_folder")
        header = box.row()
        header.prop(
            self, "show_plan", icon="TRIA_DOWN" if self.show_plan else "TRIA_RIGHT", emboss=False
        )
        if self.show_plan:
            plan = box.column(align=True)
            plan.scale_y = 0.8
            for line in plan_lines():
                plan.label(text=line)
        offline = not bpy.app.online_access and not self.wheelhouse
        row = box.row(align=True)
        sub = row.row(align=True)
        sub.enabled = not offline
        sub.operator("img3d.install_dependencies", icon="IMPORT")
        repair = sub.operator("img3d.install_dependencies", text="Repair", icon="FILE_REFRESH")
        repair.repair = True
        row.operator("img3d.check_dependencies", icon="CHECKMARK")
        row.operator("img3d.uninstall_dependencies", icon="TRASH")
        row.operator("img3d.copy_install_log", icon="COPYDOWN")
        if offline:
            box.label(
                text="Needs Preferences > System > Allow Online Access (or a Wheelhouse folder)",
                icon="INFO",
            )
        install = tasks.state_of("install")
        _draw_task(box, install, "INSTALL")
        if install.log:
            box.prop(self, "show_install_log", icon="TEXT")
            if self.show_install_log:
                log = box.column(align=True)
                log.scale_y = 0.7
                for line in install.log_lines()[-12:]:
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


_MODEL_LISTING: dict[str, tuple[float, list]] = {}


def cached_models(cache_dir: Path) -> list:
    """The models in ``cache_dir`` with their sizes, read at most every few seconds."""
    import time

    from ..core.system.model_store import list_cached_models

    key = str(cache_dir)
    now = time.monotonic()
    found = _MODEL_LISTING.get(key)
    if found is None or now - found[0] > MODEL_LISTING_SECONDS:
        try:
            models = list_cached_models(cache_dir)
        except OSError:
            models = []
        found = _MODEL_LISTING[key] = (now, models)
    return found[1]


def _draw_model_listing(layout, cache_dir: Path) -> None:
    """What the model cache holds: one line per model repository with its size."""
    from ..core.system.model_store import format_size

    column = layout.column(align=True)
    column.label(text=f"In {cache_dir}:", icon="DISK_DRIVE")
    models = cached_models(cache_dir)
    if not models:
        column.label(text="No models downloaded yet")
    for model in models:
        partial = (
            f", {format_size(model.incomplete_bytes)} partial" if model.incomplete_bytes else ""
        )
        column.label(text=f"{model.repo_id}: {format_size(model.size_bytes)}{partial}")


def _draw_task(layout, state, task: str) -> None:
    """Progress bar with a Cancel button while running; the last result otherwise."""
    if state.running:
        row = layout.row(align=True)
        row.progress(factor=state.progress, type="BAR", text=state.message or "Working…")
        cancel = row.row(align=True)
        cancel.enabled = not state.cancelling
        cancel.operator("img3d.cancel_task", text="", icon="CANCEL").task = task
    elif state.last_error:
        row = layout.row()
        row.alert = True
        row.label(text=state.last_error, icon="ERROR")
    elif state.message:
        layout.label(text=state.message, icon="CHECKMARK")


CLASSES = (IMG3D_Preferences,)
