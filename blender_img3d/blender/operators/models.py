"""Model buttons of the preferences: download (with progress and cancel), open cache, release.

The download runs ``core.model_store.download_model`` in a worker thread that
never touches bpy; it queues byte progress for the ``download`` task state
(``tasks``), which the shared modal timer mirrors into the preferences.
Cancelling stops the transfer between chunks; huggingface_hub keeps the
``.incomplete`` file, so the next Download resumes where this one stopped.
Without a window (background mode, scripts) the same task is ticked to its end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import bpy
from bpy.props import EnumProperty

from ...core import settings as defaults
from ...core.errors import Img3DError
from ...core.progress import Phase
from ...core.system import model_store
from .. import tasks

logger = logging.getLogger(__name__)

WHICH_ITEMS = (
    ("BOTH", "Both", "The image-to-3D and text-to-3D models, and the background remover"),
    ("IMAGE", "Image", "Only the image-to-3D model and the background remover"),
    ("TEXT", "Text", "Only the text-to-3D model"),
)


def models_to_download(prefs, which: str) -> list[tuple[str, str]]:
    """``(mode, hub id)`` pairs to fetch; local folders are skipped (nothing to download)."""
    wanted = []
    if which in {"BOTH", "IMAGE"}:
        wanted.append(("image", prefs.image_model))
    if which in {"BOTH", "TEXT"}:
        wanted.append(("text", prefs.text_model))
    if which in {"BOTH", "IMAGE"} and not _background_model_cached(prefs):
        # The learned background remover cuts pictures out for the image model.
        wanted.append((model_store.BACKGROUND_MODE, defaults.BACKGROUND_MODEL_ID))
    return [(mode, source) for mode, source in wanted if not Path(source).expanduser().is_dir()]


def _background_model_cached(prefs) -> bool:
    return model_store.find_background_model(prefs.resolved_cache_dir()) is not None


class DownloadTask(tasks.Task):
    """The listed models, downloaded in order into the cache folder."""

    kind = "download"
    busy_message = "A download is already running: wait for it or cancel it first."
    start_text = "Downloading models"
    done_text = "Models downloaded"
    cancelled_text = "Download cancelled; Download Models again resumes it"
    cancelled_hint = "Cancelled; Download again to resume."
    failed_text = "Download failed"

    def __init__(self, models: list[tuple[str, str]], cache_dir: Path, revision: str) -> None:
        super().__init__()
        self.models = models
        self.cache_dir = cache_dir
        self.revision = revision
        self.folders: list[Path] = []

    def work(self, progress, cancel):
        for index, (mode, repo_id) in enumerate(self.models):
            self.report(text=f"{repo_id}: starting")
            self.folders.append(
                model_store.download_model(
                    repo_id,
                    mode=mode,
                    cache_dir=self.cache_dir,
                    # The revision preference pins Shap-E; the remover follows its main.
                    revision=(
                        defaults.DEFAULT_REVISION
                        if mode == model_store.BACKGROUND_MODE
                        else self.revision
                    ),
                    progress=self._progress_for(index, repo_id),
                    cancel=cancel,
                )
            )
        return self.folders

    def _progress_for(self, index: int, repo_id: str):
        share = 1.0 / len(self.models)

        def progress(phase: str, step: int, total: int) -> None:
            if phase != Phase.DOWNLOADING or total <= 0:
                return
            done = model_store.format_size(step)
            size = model_store.format_size(total)
            self.report(share * (index + step / total), f"{repo_id}: {done} of {size}")

        return progress

    def report_text(self) -> str:
        return "Downloaded " + ", ".join(repo for _mode, repo in self.models)


class IMG3D_OT_download_models(tasks.ModalTask, bpy.types.Operator):
    """Download the Shap-E models into the cache folder (resumes an interrupted download)"""

    bl_idname = "img3d.download_models"
    bl_label = "Download Models"
    bl_options = {"REGISTER", "INTERNAL"}
    timer_interval = 0.25

    which: EnumProperty(name="Models", items=WHICH_ITEMS, default="BOTH")

    @classmethod
    def poll(cls, context):
        if tasks.active("download") is not None:
            cls.poll_message_set("A download is already running")
            return False
        return True

    def _prepare(self) -> Optional[DownloadTask]:
        from ...core.system.deps import require
        from ...core.system.vendor import OfflineError, require_online
        from ..prefs import get_preferences

        prefs = get_preferences()
        try:
            require_online(bool(bpy.app.online_access), headless=bpy.app.background)
        except OfflineError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        if not prefs.downloads_allowed():
            self.report(
                {"ERROR"},
                "Downloads are off: turn on Allow Downloads in these preferences and "
                "Preferences > System > Network > Allow Online Access.",
            )
            return None
        models = models_to_download(prefs, self.which)
        if not models:
            self.report({"INFO"}, "The models are local folders: nothing to download")
            return None
        try:
            require(["huggingface_hub"])
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return DownloadTask(models, prefs.resolved_cache_dir(), prefs.revision)

    def execute(self, context):
        task = self._prepare()
        return {"CANCELLED"} if task is None else tasks.run_to_end(self, context, task)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        task = self._prepare()
        return {"CANCELLED"} if task is None else self.start_modal(context, task)


class IMG3D_OT_open_cache_folder(bpy.types.Operator):
    """Open the model cache folder in the system's file browser"""

    bl_idname = "img3d.open_cache_folder"
    bl_label = "Open Cache Folder"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        from ..prefs import get_preferences

        folder = get_preferences().resolved_cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.report({"ERROR"}, f"Can't create the cache folder {folder}: {exc}")
            return {"CANCELLED"}
        return bpy.ops.wm.path_open(filepath=str(folder))


class IMG3D_OT_release_model(bpy.types.Operator):
    """Free the memory (and GPU memory) the loaded model holds; the next run loads it again"""

    bl_idname = "img3d.release_model"
    bl_label = "Release Model"
    bl_options = {"REGISTER"}

    def execute(self, context):
        from ...core.shap_e import loading as models

        count = len(models.cached_models())
        models.release()
        self.report({"INFO"}, f"Released {count} loaded model(s)" if count else "No model loaded")
        return {"FINISHED"}


CLASSES = (
    IMG3D_OT_download_models,
    IMG3D_OT_open_cache_folder,
    IMG3D_OT_release_model,
)
