"""Install Dependencies and its neighbours: Check, Repair, Uninstall, Copy Log.

The install runs ``core/system/vendor.py`` in a child process of Blender's own
Python, so Blender stays responsive and a crash in pip can't take it down. The
plan it runs is the one the preferences showed (torch build and why, sources,
sizes, folder: :func:`plan_lines`), passed to the child as JSON. The
``install`` task's worker thread reads the child's output lines and queues
them (``tasks``); pip's byte progress (``--progress-bar raw``) moves the bar
through :class:`vendor.PipProgress`. With a window the operator is modal and
the shared timer mirrors them into the preferences; without one (background
mode, scripts) the same task is ticked to its end. After the install the child
imports torch and multiplies on the device; the result is kept beside the
install and drawn in the preferences. A finished install is activated at once
(and at every ``register()``), never from ``draw()``/``poll()``.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from typing import IO, Optional

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ...core.errors import CancelledError, Img3DError
from ...core.system import vendor
from .. import tasks
from ..prefs import (
    TORCH_BUILD_ITEMS,
    forget_plan,
    get_preferences,
    install_plan,
    last_check,
    plan_lines,
    vendor_folder,
)

logger = logging.getLogger(__name__)

OUTPUT_POLL_SECONDS = 0.1
# A custom package list (tests, advanced use): pip's default progress scale.
SMALL_INSTALL_BYTES = 50 * 1024**2


def activate_vendor() -> bool:
    """Append the vendor folder to ``sys.path`` if it holds an install (register, after install)."""
    return vendor.activate(vendor_folder())


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


def _pump(stream: IO[str], lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line.rstrip())


class InstallTask(tasks.Task):
    """The installer child process, watched from a worker thread."""

    kind = "install"
    busy_message = "An install is already running: wait for it or cancel it first."
    cancelled_text = "Dependency install cancelled; run it again to finish"
    cancelled_hint = "Cancelled: run it again to finish."
    failed_text = "Install failed"
    done_text = "Dependencies installed"

    def __init__(self, command: list[str], env: dict[str, str], plan: vendor.InstallPlan) -> None:
        super().__init__()
        self.command, self.env, self.plan = command, env, plan
        self.pip = vendor.PipProgress(plan.download_bytes or SMALL_INSTALL_BYTES)
        self.start_text = f"Installing into {plan.vendor_dir}"
        self.process: Optional[subprocess.Popen] = None
        self.check: Optional[vendor.CheckResult] = None

    def work(self, progress, cancel):
        self.process = process = _start_install(self.command, self.env)
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=_pump, args=(process.stdout, lines), name="img3d-install-output", daemon=True
        )
        reader.start()
        while True:
            if cancel.is_set() and process.poll() is None:
                process.terminate()
            try:
                line = lines.get(timeout=OUTPUT_POLL_SECONDS)
            except queue.Empty:
                if process.poll() is not None and not reader.is_alive() and lines.empty():
                    break
                continue
            check = vendor.parse_check_line(line)
            if check is not None:
                self.check = check
                line = check.summary
            if not line.startswith("Progress "):  # raw byte counts: the bar, not the log
                logger.info("pip: %s", line)
                self.log(line)
            fraction = self.pip.feed(line)
            self.report(fraction, self._status_text())
        returncode = process.wait()
        if cancel.is_set():
            raise CancelledError()
        if returncode != 0:
            raise vendor.InstallError(
                self.pip.error
                or f"The installer stopped with exit code {returncode}: see the log in the "
                "preferences (Copy Log) or the console."
            )
        return returncode

    def _status_text(self) -> str:
        from ...core.system.model_store import format_size

        if self.pip.current_total and self.pip.phase.startswith(("collecting", "downloading")):
            done, total = format_size(self.pip.done_bytes), format_size(self.pip.total_bytes)
            return f"{self.pip.phase.capitalize()}: {done} of about {total}"
        return self.pip.phase.capitalize()

    def cancel(self) -> None:
        super().cancel()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()  # don't leave pip running if Blender is closing

    def on_result(self, context, result) -> str:
        activate_vendor()
        forget_plan()
        if self.check is not None and not self.check.ok:
            raise vendor.InstallError(f"Installed, but {self.check.summary}")
        return self.check.summary if self.check is not None else self.done_text

    def report_text(self) -> str:
        check = f": {self.check.summary}" if self.check is not None else ""
        return f"Dependencies installed in {self.plan.vendor_dir}{check}"


def _refuse_offline(operator, wheelhouse: str) -> bool:
    """Report Blender's setting (or ``--online-mode``) and return True when offline."""
    if wheelhouse:
        return False  # a wheelhouse install contacts nothing
    try:
        vendor.require_online(bool(bpy.app.online_access), headless=bpy.app.background)
    except vendor.OfflineError as exc:
        operator.report({"ERROR"}, str(exc))
        return True
    return False


class IMG3D_OT_install_dependencies(tasks.ModalTask, bpy.types.Operator):
    """Download and install PyTorch (the build for this GPU), diffusers and the other packages that Generate needs into the extension's own folder (Blender's Python is not changed)"""  # noqa: E501

    bl_idname = "img3d.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {"REGISTER", "INTERNAL"}
    timer_interval = 0.2

    torch_build: EnumProperty(
        name="PyTorch Build",
        items=(("PREFERENCES", "From Preferences", "Use the preferences' choice"),)
        + TORCH_BUILD_ITEMS,
        default="PREFERENCES",
    )
    force: BoolProperty(name="Reinstall", description="Install even if up to date", default=False)
    repair: BoolProperty(
        name="Repair",
        description="Delete this Blender's install folder first, then install everything again",
        default=False,
        options={"SKIP_SAVE"},
    )
    packages: StringProperty(
        name="Packages",
        description="Space-separated requirements to install instead of the runtime set",
        default="",
        options={"HIDDEN", "SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        if tasks.active("install") is not None:
            cls.poll_message_set("An install is already running")
            return False
        return True

    def _prepare(self, context) -> Optional[InstallTask]:
        prefs = get_preferences()
        if _refuse_offline(self, prefs.wheelhouse):
            return None
        try:
            build = None if self.torch_build == "PREFERENCES" else self.torch_build
            plan = install_plan(build, self.packages)
            vendor.preflight(plan, online=True)
            if self.repair:
                vendor.uninstall(plan.vendor_dir)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        command, env = vendor.subprocess_command(plan, force=self.force or self.repair)
        return InstallTask(command, env, plan)

    def execute(self, context):
        """Synchronous path (background mode and scripts): the same task, ticked to its end."""
        task = self._prepare(context)
        return {"CANCELLED"} if task is None else tasks.run_to_end(self, context, task)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        task = self._prepare(context)
        return {"CANCELLED"} if task is None else self.start_modal(context, task)


class IMG3D_OT_check_dependencies(bpy.types.Operator):
    """Import PyTorch in a separate process and multiply two matrices on the chosen device, to show whether Generate can run"""  # noqa: E501

    bl_idname = "img3d.check_dependencies"
    bl_label = "Check"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        folder = vendor_folder()
        try:
            device = install_plan().check_device
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        result = vendor.check_install(folder, device)
        vendor.save_check(folder, result)
        tasks.redraw(context)
        self.report({"INFO"} if result.ok else {"ERROR"}, result.summary)
        return {"FINISHED"} if result.ok else {"CANCELLED"}


class IMG3D_OT_uninstall_dependencies(bpy.types.Operator):
    """Delete this Blender's dependency folder (PyTorch and the rest). The models and the exporters are kept"""  # noqa: E501

    bl_idname = "img3d.uninstall_dependencies"
    bl_label = "Uninstall"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        if tasks.active("install") is not None:
            cls.poll_message_set("An install is running: cancel it first")
            return False
        return True

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        folder = vendor_folder()
        try:
            removed = vendor.uninstall(folder)
        except (Img3DError, OSError) as exc:
            self.report({"ERROR"}, f"Couldn't remove {folder}: {exc}")
            return {"CANCELLED"}
        forget_plan()
        state = tasks.state_of("install", context.window_manager)
        state.message = f"Removed {folder}" if removed else f"Nothing installed in {folder}"
        state.last_error = ""
        tasks.redraw(context)
        # Python can't unload compiled modules: what was imported stays until a restart.
        self.report({"INFO"}, state.message + " (restart Blender to unload what was imported)")
        return {"FINISHED"}


class IMG3D_OT_copy_install_log(bpy.types.Operator):
    """Copy the install plan, the last install's output and the last check to the clipboard, for a bug report"""  # noqa: E501

    bl_idname = "img3d.copy_install_log"
    bl_label = "Copy Log"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        text = install_log_text(context)
        context.window_manager.clipboard = text
        self.report({"INFO"}, f"Copied {len(text.splitlines())} lines to the clipboard")
        return {"FINISHED"}


def install_log_text(context) -> str:
    """Versions, the plan, the last check, the last install's output and error: for a report."""
    import platform

    state = tasks.state_of("install", context.window_manager)
    check = last_check()
    parts = [
        f"Blender {bpy.app.version_string}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}",
        "Plan:",
        *plan_lines(),
        "Last check: " + (check.summary if check else "none"),
        "Log:",
        *(state.log_lines() or ["(no install run in this session)"]),
    ]
    if state.last_error:
        parts.append("Error: " + state.last_error)
    return "\n".join(parts)


class IMG3D_OT_cancel_task(bpy.types.Operator):
    """Stop the running dependency install, model download, generation or export"""

    bl_idname = "img3d.cancel_task"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    task: EnumProperty(
        items=(
            ("INSTALL", "Install", "The dependency install"),
            ("DOWNLOAD", "Download", "The model download"),
            ("GENERATE", "Generate", "The generation"),
            ("EXPORT", "Export", "The mesh export (no file is written)"),
        ),
        default="INSTALL",
    )

    def execute(self, context):
        tasks.cancel(self.task.lower())
        return {"FINISHED"}


CLASSES = (
    IMG3D_OT_install_dependencies,
    IMG3D_OT_check_dependencies,
    IMG3D_OT_uninstall_dependencies,
    IMG3D_OT_copy_install_log,
    IMG3D_OT_cancel_task,
)
