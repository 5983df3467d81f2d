"""Install Dependencies: pip-install the runtime packages into the extension's vendor folder.

The install runs ``core/vendor.py`` in a child process of Blender's own Python,
so Blender stays responsive and a crash in pip can't take it down. With a window
the operator is modal: a timer drains the child's output lines into
``INSTALL_STATUS`` (drawn in the preferences with a progress bar); without one
(background mode, scripts) it runs the same child synchronously.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ...core.system import hardware, vendor
from ...core.system.requirements import BUNDLED_WHEELS
from .task_status import TaskStatus, redraw_preferences

logger = logging.getLogger(__name__)

INSTALL_STATUS = TaskStatus()
TIMER_INTERVAL_SECONDS = 0.2
MAX_LINES_PER_TICK = 200
# A custom package list (tests, advanced use) needs far less room than torch.
SMALL_INSTALL_BYTES = 200 * 1024**2

TORCH_BUILD_ITEMS = tuple(
    (choice.name.upper(), choice.label, choice.description) for choice in hardware.TORCH_BUILDS
)


def vendor_folder() -> Path:
    """The extension's private folder for pip-installed runtime packages."""
    from ..prefs import user_data_dir

    return vendor.vendor_dir_for(user_data_dir("vendor"))


def _start_install(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The installer child process, its stdout and stderr merged into one line stream."""
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def activate_vendor() -> bool:
    """Append the vendor folder to ``sys.path`` if it holds an install."""
    return vendor.activate(vendor_folder())


def install_plan(
    build: str, packages: str = "", torch_index_url: str = "", wheelhouse: str = ""
) -> vendor.InstallPlan:
    """The plan for this Blender: its vendor folder and its own numpy version as the pin."""
    torch_build = None
    if not packages.split():
        torch_build = hardware.choose_build(hardware.probe_machine(), build.lower())
        if torch_index_url:
            torch_build = hardware.with_index_url(torch_build, torch_index_url)
    return vendor.make_plan(
        vendor_folder(),
        build=torch_build,
        numpy_version=vendor.running_numpy_version(),
        packages=packages.split() or None,
        skip=vendor.available_at_pin(BUNDLED_WHEELS),
        wheelhouse=wheelhouse or None,
    )


def _progress_for(plan: vendor.InstallPlan) -> vendor.PipProgress:
    return vendor.PipProgress(plan.download_bytes or 50 * 1024**2)


class IMG3D_OT_install_dependencies(bpy.types.Operator):
    """Download and install PyTorch, diffusers and the other packages into the extension's own folder (Blender's Python is not changed)"""  # noqa: E501

    bl_idname = "img3d.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {"REGISTER", "INTERNAL"}

    torch_build: EnumProperty(
        name="PyTorch Build",
        items=(("PREFERENCES", "From Preferences", "Use the preferences' choice"),)
        + TORCH_BUILD_ITEMS,
        default="PREFERENCES",
    )
    force: BoolProperty(name="Reinstall", description="Install even if up to date", default=False)
    packages: StringProperty(
        name="Packages",
        description="Space-separated requirements to install instead of the runtime list",
        default="",
        options={"HIDDEN", "SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        if INSTALL_STATUS.running:
            cls.poll_message_set("An install is already running")
            return False
        return True

    def _command(self, context) -> tuple[list[str], dict[str, str], vendor.InstallPlan]:
        from ..prefs import get_preferences

        prefs = get_preferences()
        build = prefs.torch_build if self.torch_build == "PREFERENCES" else self.torch_build
        plan = install_plan(build, self.packages, prefs.torch_index_url)
        command, env = vendor.subprocess_command(plan, force=self.force)
        return command, env, plan

    def _refuse_offline(self) -> bool:
        if self.packages or not bpy.app.online_access:
            try:
                vendor.require_online(bool(bpy.app.online_access), headless=bpy.app.background)
            except vendor.OfflineError as exc:
                self.report({"ERROR"}, str(exc))
                return True
        return False

    def execute(self, context):
        """Synchronous path (background mode and scripts): same child process, waited for."""
        if self._refuse_offline():
            return {"CANCELLED"}
        try:
            command, env, plan = self._command(context)
        except vendor.DependencyError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        INSTALL_STATUS.start(f"Installing into {plan.vendor_dir}")
        progress = _progress_for(plan)
        process = _start_install(command, env)
        assert process.stdout is not None
        for line in process.stdout:
            self._take_line(line.rstrip(), progress)
        return self._finished(process.wait(), progress)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if self._refuse_offline():
            return {"CANCELLED"}
        try:
            command, env, plan = self._command(context)
        except vendor.DependencyError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        INSTALL_STATUS.start(f"Installing into {plan.vendor_dir}")
        self._progress = _progress_for(plan)
        self._lines: queue.Queue[str] = queue.Queue()
        self._process = _start_install(command, env)
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()
        self._timer = context.window_manager.event_timer_add(
            TIMER_INTERVAL_SECONDS, window=context.window
        )
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _read_lines(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip())

    def modal(self, context, event):
        if event.type == "ESC" or INSTALL_STATUS.cancel.is_set():
            INSTALL_STATUS.cancel.set()
            if self._process.poll() is None:
                self._process.terminate()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for _ in range(MAX_LINES_PER_TICK):
            try:
                self._take_line(self._lines.get_nowait(), self._progress)
            except queue.Empty:
                break
        redraw_preferences()
        if self._process.poll() is None or self._reader.is_alive() or not self._lines.empty():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finished(self._process.returncode, self._progress)

    def cancel(self, context):
        # Blender is closing or the operator is dropped: don't leave pip running.
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            self._process.terminate()
        INSTALL_STATUS.finish("Install stopped", error="Install stopped before it finished.")

    def _take_line(self, line: str, progress: vendor.PipProgress) -> None:
        logger.info("pip: %s", line)
        INSTALL_STATUS.log(line)
        INSTALL_STATUS.update(progress.feed(line), progress.phase.capitalize())

    def _finished(self, returncode: int, progress: vendor.PipProgress) -> set[str]:
        if INSTALL_STATUS.cancel.is_set():
            INSTALL_STATUS.finish("Install cancelled", error="Cancelled: run it again to finish.")
            self.report({"WARNING"}, "Dependency install cancelled; run it again to finish")
            return {"CANCELLED"}
        if returncode != 0:
            message = progress.error or (
                f"The installer stopped with exit code {returncode}: see the log in the "
                "preferences or the console."
            )
            INSTALL_STATUS.finish("Install failed", error=message)
            self.report({"ERROR"}, message)
            return {"CANCELLED"}
        activate_vendor()
        INSTALL_STATUS.finish("Dependencies installed")
        self.report({"INFO"}, f"Dependencies installed in {vendor_folder()}")
        return {"FINISHED"}


class IMG3D_OT_cancel_task(bpy.types.Operator):
    """Stop the running dependency install or model download"""

    bl_idname = "img3d.cancel_task"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    task: EnumProperty(
        items=(
            ("INSTALL", "Install", "The dependency install"),
            ("DOWNLOAD", "Download", "The model download"),
        ),
        default="INSTALL",
    )

    def execute(self, context):
        from .models import DOWNLOAD_STATUS

        status = INSTALL_STATUS if self.task == "INSTALL" else DOWNLOAD_STATUS
        status.cancel.set()
        status.update(text="Cancelling...")
        return {"FINISHED"}


CLASSES = (IMG3D_OT_install_dependencies, IMG3D_OT_cancel_task)
