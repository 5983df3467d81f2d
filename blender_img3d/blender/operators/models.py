"""Model buttons of the preferences: download (with progress and cancel), open cache, release.

The download runs ``core.model_store.download_model`` in a worker thread that
never touches bpy; it writes byte progress into ``DOWNLOAD_STATUS`` and a timer
on the main thread redraws the preferences. Cancelling stops the transfer
between chunks; huggingface_hub keeps the ``.incomplete`` file, so the next
Download resumes where this one stopped. Without a window (background mode,
scripts) the same download runs synchronously.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

import bpy
from bpy.props import EnumProperty

from ...core.errors import CancelledError, Img3DError
from ...core.progress import Phase
from ...core.system import model_store
from .task_status import TaskStatus, redraw_preferences

logger = logging.getLogger(__name__)

DOWNLOAD_STATUS = TaskStatus()
TIMER_INTERVAL_SECONDS = 0.25

WHICH_ITEMS = (
    ("BOTH", "Both", "The image-to-3D and the text-to-3D model"),
    ("IMAGE", "Image", "Only the image-to-3D model"),
    ("TEXT", "Text", "Only the text-to-3D model"),
)


def models_to_download(prefs, which: str) -> list[tuple[str, str]]:
    """``(mode, hub id)`` pairs to fetch; local folders are skipped (nothing to download)."""
    wanted = []
    if which in {"BOTH", "IMAGE"}:
        wanted.append(("image", prefs.image_model))
    if which in {"BOTH", "TEXT"}:
        wanted.append(("text", prefs.text_model))
    return [(mode, source) for mode, source in wanted if not Path(source).expanduser().is_dir()]


class _Download:
    """One download job: the list of models, run in order, reporting into DOWNLOAD_STATUS."""

    def __init__(self, models: list[tuple[str, str]], cache_dir: Path, revision: str) -> None:
        self.models = models
        self.cache_dir = cache_dir
        self.revision = revision
        self.error: Optional[Img3DError] = None
        self.folders: list[Path] = []

    def run(self) -> None:
        try:
            for index, (mode, repo_id) in enumerate(self.models):
                DOWNLOAD_STATUS.update(text=f"{repo_id}: starting")
                self.folders.append(
                    model_store.download_model(
                        repo_id,
                        mode=mode,
                        cache_dir=self.cache_dir,
                        revision=self.revision,
                        progress=self._progress_for(index, repo_id),
                        cancel=DOWNLOAD_STATUS.cancel,
                    )
                )
        except Img3DError as exc:
            self.error = exc
        except Exception as exc:  # the worker must always end with a message, never silently
            logger.exception("Model download failed")
            self.error = Img3DError(f"Download failed unexpectedly: {exc}")

    def _progress_for(self, index: int, repo_id: str):
        share = 1.0 / len(self.models)

        def progress(phase: str, step: int, total: int) -> None:
            if phase != Phase.DOWNLOADING or total <= 0:
                return
            done = model_store.format_size(step)
            size = model_store.format_size(total)
            DOWNLOAD_STATUS.update(share * (index + step / total), f"{repo_id}: {done} of {size}")

        return progress


class IMG3D_OT_download_models(bpy.types.Operator):
    """Download the Shap-E models into the cache folder (resumes an interrupted download)"""

    bl_idname = "img3d.download_models"
    bl_label = "Download Models"
    bl_options = {"REGISTER", "INTERNAL"}

    which: EnumProperty(name="Models", items=WHICH_ITEMS, default="BOTH")

    @classmethod
    def poll(cls, context):
        if DOWNLOAD_STATUS.running:
            cls.poll_message_set("A download is already running")
            return False
        return True

    def _prepare(self) -> Optional[_Download]:
        from ...core.system.deps import require
        from ..prefs import get_preferences
        from .dependencies import activate_vendor

        prefs = get_preferences()
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
        activate_vendor()
        try:
            require(["huggingface_hub"])
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        return _Download(models, prefs.resolved_cache_dir(), prefs.revision)

    def execute(self, context):
        job = self._prepare()
        if job is None:
            return {"CANCELLED"}
        DOWNLOAD_STATUS.start("Downloading models")
        job.run()
        return self._finished(job)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        job = self._prepare()
        if job is None:
            return {"CANCELLED"}
        DOWNLOAD_STATUS.start("Downloading models")
        self._job = job
        self._thread = threading.Thread(target=job.run, name="img3d-download", daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(
            TIMER_INTERVAL_SECONDS, window=context.window
        )
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            DOWNLOAD_STATUS.cancel.set()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        redraw_preferences()
        if self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finished(self._job)

    def cancel(self, context):
        DOWNLOAD_STATUS.cancel.set()
        self._thread.join(timeout=5.0)
        DOWNLOAD_STATUS.finish("Download stopped", error="Stopped; Download again to resume.")

    def _finished(self, job: _Download) -> set[str]:
        if isinstance(job.error, CancelledError) or DOWNLOAD_STATUS.cancel.is_set():
            DOWNLOAD_STATUS.finish(
                "Download cancelled", error="Cancelled; Download again to resume."
            )
            self.report({"WARNING"}, "Download cancelled; Download Models again resumes it")
            return {"CANCELLED"}
        if job.error is not None:
            DOWNLOAD_STATUS.finish("Download failed", error=str(job.error))
            self.report({"ERROR"}, str(job.error))
            return {"CANCELLED"}
        DOWNLOAD_STATUS.finish("Models downloaded")
        self.report({"INFO"}, "Downloaded " + ", ".join(repo for _mode, repo in job.models))
        return {"FINISHED"}


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
