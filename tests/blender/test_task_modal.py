"""The four modal operators, driven through ``modal()`` with synthetic events.

Background mode never runs a modal handler, so these tests call each
operator's ``modal`` themselves with TIMER (and ESC) events, on a context whose
WindowManager records ``event_timer_remove``: whether the task finishes, fails
or is cancelled, the operator must remove its timer exactly once. They also
pin the #17 life cycle: a cancel from another thread writes no bpy data, and
the main thread's tick is what shows "Cancelling…".
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import types
from types import SimpleNamespace

import bpy
import numpy as np
import pytest

from tests.blender.fakes import FakeBackend

TIMER = SimpleNamespace(type="TIMER")
ESC = SimpleNamespace(type="ESC")


def module(installed_extension: str, name: str):
    return importlib.import_module(f"{installed_extension}.{name}")


class RecordingWindowManager:
    """The real WindowManager, except that timer removals are recorded."""

    def __init__(self) -> None:
        self.removed: list[object] = []

    def event_timer_remove(self, timer) -> None:
        self.removed.append(timer)

    def __getattr__(self, name):
        return getattr(bpy.context.window_manager, name)


class RecordingContext:
    def __init__(self) -> None:
        self.window_manager = RecordingWindowManager()

    def __getattr__(self, name):
        return getattr(bpy.context, name)


class Probe:
    """Stands in for the operator instance ``modal`` runs on (Blender makes the real one)."""

    def __init__(self, task, timer) -> None:
        self._task, self._timer = task, timer
        self.reports: list[tuple[str, str]] = []

    def report(self, kinds, message) -> None:
        self.reports.append((next(iter(kinds)), message))


def drive(operator_class, task, *, esc_first=False, timeout=20.0):
    """Start ``task`` and feed the operator's ``modal`` events until it stops running."""
    context = RecordingContext()
    timer = object()
    task.start(bpy.context.window_manager)
    probe = Probe(task, timer)
    if esc_first:
        assert operator_class.modal(probe, context, ESC) == {"PASS_THROUGH"}
    deadline = time.monotonic() + timeout
    while True:
        outcome = operator_class.modal(probe, context, TIMER)
        if outcome != {"PASS_THROUGH"}:
            break
        assert context.window_manager.removed == []  # not while it runs
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.01)
    return outcome, probe, context.window_manager.removed == [timer]


def cube_result(installed_extension):
    pipeline = module(installed_extension, "core.pipeline")
    meshdata = module(installed_extension, "core.mesh.meshdata")
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    mesh = meshdata.MeshData(vertices, faces, name="probe", metadata={"seed": 1})
    return pipeline.Result(meshes=[mesh], metrics=[{"faces": 4}], settings={})


def generate_task(installed_extension, how: str):
    sessions = module(installed_extension, "blender.session")
    settings = module(installed_extension, "core.settings")
    errors = module(installed_extension, "core.errors")

    def work(request, progress, cancel):
        if how == "fail":
            raise errors.ImageInputError("The image is blank: pick a picture of an object.")
        if how == "cancel":
            while not cancel.is_set():
                time.sleep(0.005)
            raise errors.CancelledError()
        return cube_result(installed_extension)

    return sessions.GenerateSession(
        settings.Request(prompt="a probe"), sessions.ImportOptions(), backend=FakeBackend(work)
    )


def download_task(installed_extension, how: str, monkeypatch, tmp_path):
    models = module(installed_extension, "blender.operators.models")
    errors = module(installed_extension, "core.errors")

    def fake_download(repo_id, *, mode, cache_dir, revision, progress, cancel):
        if how == "fail":
            raise errors.ModelLoadError("openai/shap-e: the hub is unreachable.")
        if how == "cancel":
            while not cancel.is_set():
                time.sleep(0.005)
            raise errors.CancelledError()
        progress("downloading", 1, 1)
        return tmp_path / repo_id

    monkeypatch.setattr(models.model_store, "download_model", fake_download)
    return models.DownloadTask([("text", "openai/shap-e")], tmp_path, "main")


def install_task(installed_extension, how: str, tmp_path):
    dependencies = module(installed_extension, "blender.operators.dependencies")
    script = {
        "finish": "print('Successfully installed six-1.16.0')",
        "fail": "import sys; print('Collecting six'); sys.exit(3)",
        "cancel": "import time; print('Collecting six', flush=True); time.sleep(60)",
    }[how]
    # Only what the task reads of a plan: the expected download and the target folder.
    plan = types.SimpleNamespace(download_bytes=3, vendor_dir=tmp_path)
    return dependencies.InstallTask([sys.executable, "-c", script], dict(os.environ), plan)


def export_task(installed_extension, how: str, tmp_path):
    from tests.fixtures.meshes import cube, torus

    export = module(installed_extension, "blender.operators.export")
    settings = module(installed_extension, "core.settings")
    mesh = torus(1.0, 0.3, 220, 100) if how == "cancel" else cube()
    folder = tmp_path / "missing-folder" if how == "fail" else tmp_path
    return export.ExportTask(mesh, folder / "part.dxf", "dxf", "mm", settings.ExportSettings())


OPERATORS = {
    "export": ("blender.operators.export", "IMG3D_OT_export"),
    "generate": ("blender.operators.generate", "IMG3D_OT_generate"),
    "download": ("blender.operators.models", "IMG3D_OT_download_models"),
    "install": ("blender.operators.dependencies", "IMG3D_OT_install_dependencies"),
}
ENDINGS = {
    "finish": ({"FINISHED"}, "INFO"),
    "fail": ({"CANCELLED"}, "ERROR"),
    "cancel": ({"CANCELLED"}, "WARNING"),
}


@pytest.mark.parametrize("how", sorted(ENDINGS))
@pytest.mark.parametrize("kind", sorted(OPERATORS))
def test_modal_removes_its_timer_however_the_task_ends(
    installed_extension, kind, how, monkeypatch, tmp_path
):
    tasks = module(installed_extension, "blender.tasks")
    module_name, class_name = OPERATORS[kind]
    operator_class = getattr(module(installed_extension, module_name), class_name)
    task = {
        "generate": lambda: generate_task(installed_extension, how),
        "download": lambda: download_task(installed_extension, how, monkeypatch, tmp_path),
        "install": lambda: install_task(installed_extension, how, tmp_path),
        "export": lambda: export_task(installed_extension, how, tmp_path),
    }[kind]()
    outcome, probe, timer_removed = drive(operator_class, task, esc_first=how == "cancel")
    expected_return, expected_report = ENDINGS[how]
    assert timer_removed
    assert outcome == expected_return
    assert task.state == {"finish": tasks.FINISHED, "fail": tasks.FAILED}.get(how, tasks.CANCELLED)
    assert [level for level, _ in probe.reports] == [expected_report]
    state = tasks.state_of(kind)
    assert not state.running and not state.cancelling
    assert task.job.join(5) and tasks.active(kind) is None  # a cancelled generate's worker
    if kind == "generate" and how == "finish":  # may still be winding down at the last tick
        assert [obj.name for obj in task.objects] == ["probe"]
    if kind == "export":  # a file only when it finished, and never a temporary one
        assert sorted(p.name for p in tmp_path.iterdir()) == (
            ["part.dxf"] if how == "finish" else []
        )


def test_dropping_the_operator_removes_the_timer_and_leaves_clean_up_to_a_tick(
    installed_extension,
):
    tasks = module(installed_extension, "blender.tasks")
    operators = module(installed_extension, "blender.operators.generate")
    task = generate_task(installed_extension, "cancel")
    task.start(bpy.context.window_manager)
    context, timer = RecordingContext(), object()
    probe = Probe(task, timer)
    started = time.perf_counter()
    operators.IMG3D_OT_generate.cancel(probe, context)  # Blender drops it on a file load
    assert time.perf_counter() - started < 0.5  # flags only: no join on the main thread
    assert context.window_manager.removed == [timer]
    assert task.cancelling and task.state == tasks.RUNNING
    assert task.run_to_end(bpy.context, timeout=10) == tasks.CANCELLED
    assert task.job.join(5)


def test_cancel_from_another_thread_writes_nothing_and_the_tick_shows_cancelling(
    installed_extension,
):
    tasks = module(installed_extension, "blender.tasks")
    sessions = module(installed_extension, "blender.session")
    task = generate_task(installed_extension, "cancel")
    task.start(bpy.context.window_manager)
    state = tasks.state_of("generate")
    other = threading.Thread(target=sessions.cancel_active)
    other.start()
    other.join(5)
    assert task.cancelling
    assert not state.cancelling and state.message != tasks.CANCELLING_TEXT  # untouched
    task.tick(bpy.context)
    assert state.cancelling or task.state == tasks.CANCELLED
    if task.state == tasks.RUNNING:
        assert state.message == tasks.CANCELLING_TEXT
    assert task.run_to_end(bpy.context, timeout=10) == tasks.CANCELLED
    assert not state.running and not state.cancelling


def test_the_background_ticker_ends_a_task_nobody_else_ticks(installed_extension):
    tasks = module(installed_extension, "blender.tasks")
    task = generate_task(installed_extension, "cancel")
    task.start(bpy.context.window_manager)
    task.cancel()
    earlier = list(tasks._BACKGROUND_TICKERS)  # left by other tests' dropped operators
    tasks.finish_in_background(task)
    tasks.finish_in_background(task)  # a second caller adds no second ticker
    [ticker] = [t for t in tasks._BACKGROUND_TICKERS if t not in earlier]
    assert bpy.app.timers.is_registered(ticker)
    deadline = time.monotonic() + 10
    while ticker() is not None:  # what Blender's timer loop would do
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert task.state == tasks.CANCELLED and ticker not in tasks._BACKGROUND_TICKERS
    assert not tasks.state_of("generate").running
    bpy.app.timers.unregister(ticker)
