"""Install Dependencies: pip-install the runtime packages into the extension's vendor folder.

The install runs ``core/vendor.py`` in a child process of Blender's own Python,
so Blender stays responsive and a crash in pip can't take it down. The
``install`` task's worker thread reads the child's output lines and queues them
(``tasks``); with a window the operator is modal and the shared timer mirrors
them into the preferences' progress bar and log; without one (background
mode, scripts) the same task is ticked to its end. A finished install is
activated at once (and at every ``register()``), never from ``draw()``/``poll()``.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO, Optional

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ...core.errors import CancelledError
from ...core.system import vendor
from ...core.system.requirements import RUNTIME_REQUIREMENTS
from .. import tasks
from ..prefs import TORCH_BUILD_ITEMS

logger = logging.getLogger(__name__)

# A custom package list (tests, advanced use) needs far less room than torch.
SMALL_INSTALL_BYTES = 200 * 1024**2
OUTPUT_POLL_SECONDS = 0.1


def vendor_folder() -> Path:
    """The extension's private folder for pip-installed runtime packages."""
    from ..prefs import user_data_dir

    return user_data_dir("vendor")


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
    """Append the vendor folder to ``sys.path`` if it holds an install (register, after install)."""
    return vendor.activate(vendor_folder())


def install_plan(variant: str, packages: str = "", torch_index_url: str = "") -> vendor.InstallPlan:
    """The plan for this Blender: its vendor folder and its own numpy version as the pin."""
    requirements = tuple(packages.split()) or RUNTIME_REQUIREMENTS
    return vendor.make_plan(
        vendor_folder(),
        numpy_version=vendor.running_numpy_version(),
        variant=variant.lower(),
        requirements=requirements,
        torch_index_url=torch_index_url or None,
        required_free_bytes=None if requirements == RUNTIME_REQUIREMENTS else SMALL_INSTALL_BYTES,
    )


def _progress_for(plan: vendor.InstallPlan) -> vendor.PipProgress:
    full = plan.requirements == RUNTIME_REQUIREMENTS
    # A custom list pulls in a few dependencies per package; the full one about 60.
    return vendor.PipProgress(vendor.EXPECTED_DISTRIBUTIONS if full else len(plan.requirements) * 3)


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

    def __init__(
        self, command: list[str], env: dict[str, str], progress: vendor.PipProgress, where: Path
    ) -> None:
        super().__init__()
        self.command, self.env, self.pip, self.where = command, env, progress, where
        self.start_text = f"Installing into {where}"
        self.process: Optional[subprocess.Popen] = None

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
            logger.info("pip: %s", line)
            self.log(line)
            self.report(self.pip.feed(line), self.pip.phase.capitalize())
        returncode = process.wait()
        if cancel.is_set():
            raise CancelledError()
        if returncode != 0:
            raise vendor.InstallError(
                self.pip.error
                or f"The installer stopped with exit code {returncode}: see the log in the "
                "preferences or the console."
            )
        return returncode

    def cancel(self) -> None:
        super().cancel()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()  # don't leave pip running if Blender is closing

    def on_result(self, context, result) -> str:
        activate_vendor()
        return self.done_text

    def report_text(self) -> str:
        return f"Dependencies installed in {vendor_folder()}"


class IMG3D_OT_install_dependencies(tasks.ModalTask, bpy.types.Operator):
    """Download and install PyTorch, diffusers and the other packages into the extension's own folder (Blender's Python is not changed)"""  # noqa: E501

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
    packages: StringProperty(
        name="Packages",
        description="Space-separated requirements to install instead of the runtime list",
        default="",
        options={"HIDDEN", "SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        if tasks.active("install") is not None:
            cls.poll_message_set("An install is already running")
            return False
        return True

    def _task(self, context) -> InstallTask:
        from ..prefs import get_preferences

        prefs = get_preferences()
        build = prefs.torch_build if self.torch_build == "PREFERENCES" else self.torch_build
        plan = install_plan(build, self.packages, prefs.torch_index_url)
        command, env = vendor.subprocess_command(plan, force=self.force)
        return InstallTask(command, env, _progress_for(plan), plan.vendor_dir)

    def _refuse_offline(self) -> bool:
        if bpy.app.online_access:
            return False
        self.report(
            {"ERROR"},
            "Installing needs the network: turn on Preferences > System > Network > "
            "Allow Online Access, then try again.",
        )
        return True

    def _prepare(self, context) -> Optional[InstallTask]:
        if self._refuse_offline():
            return None
        try:
            return self._task(context)
        except vendor.InstallError as exc:
            self.report({"ERROR"}, str(exc))
            return None

    def execute(self, context):
        """Synchronous path (background mode and scripts): the same task, ticked to its end."""
        task = self._prepare(context)
        return {"CANCELLED"} if task is None else tasks.run_to_end(self, context, task)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        task = self._prepare(context)
        return {"CANCELLED"} if task is None else self.start_modal(context, task)


class IMG3D_OT_cancel_task(bpy.types.Operator):
    """Stop the running dependency install, model download or generation"""

    bl_idname = "img3d.cancel_task"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    task: EnumProperty(
        items=(
            ("INSTALL", "Install", "The dependency install"),
            ("DOWNLOAD", "Download", "The model download"),
            ("GENERATE", "Generate", "The generation"),
        ),
        default="INSTALL",
    )

    def execute(self, context):
        tasks.cancel(self.task.lower())
        return {"FINISHED"}


CLASSES = (IMG3D_OT_install_dependencies, IMG3D_OT_cancel_task)
