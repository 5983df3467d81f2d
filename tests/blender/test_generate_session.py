"""The modal path's logic, driven for real: GenerateSession ticks, cancel, lifecycle, one job.

The pipeline is replaced by a small fake that reports sampling steps and
returns a coloured cube, so these tests exercise the thread/queue/import
machinery quickly; tests/blender/test_generate.py runs the real pipeline.
"""

from __future__ import annotations

import importlib
import threading
import time

import addon_utils
import bpy
import numpy as np
import pytest

from tests.blender.fakes import FakeBackend


def extension(installed_extension: str, name: str):
    """A module of the installed extension (imported on first use, like the add-on does)."""
    return importlib.import_module(f"{installed_extension}.{name}")


def fake_pipeline(installed_extension, steps=20, delay=0.01, record=None):
    pipeline = extension(installed_extension, "core.pipeline")
    meshdata = extension(installed_extension, "core.mesh.meshdata")
    progress_mod = extension(installed_extension, "core.progress")

    def work(request, progress, cancel):
        for step in range(1, steps + 1):
            progress_mod.raise_if_cancelled(cancel)
            time.sleep(delay)
            if record is not None:
                record.append(step)
            progress(progress_mod.Phase.SAMPLING, step, steps)
        vertices = np.array(
            [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (0.0, 1.0)], dtype=float
        )
        faces = np.array(
            [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
             [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
        )  # fmt: skip
        mesh = meshdata.MeshData(
            vertices, faces, colors=np.full((8, 3), 0.5, np.float32), name="fake",
            metadata={"seed": 7, "model": "fake-model", "revision": "local", "prompt": "x"},
        )  # fmt: skip
        return pipeline.Result(
            meshes=[mesh], metrics=[{"faces": 12, "watertight": True}], settings={"a": 1}
        )

    return work


def text_request(installed_extension):
    settings = extension(installed_extension, "core.settings")
    return settings.Request(prompt="a cube")


def start_session(installed_extension, work):
    sessions = extension(installed_extension, "blender.session")
    session = sessions.GenerateSession(
        text_request(installed_extension), sessions.ImportOptions(), backend=FakeBackend(work)
    )
    return session.start(bpy.context.window_manager)


def test_ticks_report_increasing_progress_then_import(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(installed_extension, fake_pipeline(installed_extension))
    seen = []
    while session.tick(bpy.context) == sessions.RUNNING:
        seen.append(bpy.context.window_manager.img3d_tasks.generate.progress)
        time.sleep(0.005)
    assert session.state == sessions.FINISHED
    assert seen == sorted(seen) and seen[-1] > 0
    job = bpy.context.window_manager.img3d_tasks.generate
    assert not job.running and "faces" in job.last_summary
    assert [obj.name for obj in session.objects] == ["fake"]
    assert bpy.context.view_layer.objects.active == session.objects[0]
    assert not session.job.alive


def test_cancel_stops_within_one_step_and_leaves_no_thread(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    steps_done: list[int] = []
    session = start_session(
        installed_extension, fake_pipeline(installed_extension, steps=500, record=steps_done)
    )
    while not steps_done:
        time.sleep(0.005)
    session.cancel()
    at_cancel = len(steps_done)
    assert session.run_to_end(bpy.context, timeout=10) == sessions.CANCELLED
    assert len(steps_done) <= at_cancel + 1
    assert not session.job.alive
    assert bpy.context.window_manager.img3d_tasks.generate.running is False
    assert len(bpy.data.objects) == len([o for o in bpy.data.objects if o.name != "fake"])


def test_second_job_is_refused_while_one_runs(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    errors = extension(installed_extension, "core.errors")
    first = start_session(installed_extension, fake_pipeline(installed_extension, steps=500))
    try:
        assert not bpy.ops.img3d.generate.poll()
        with pytest.raises(errors.Img3DError, match="already running"):
            start_session(installed_extension, fake_pipeline(installed_extension))
    finally:
        sessions.cancel_active()
    # Cancel only flags the job; ticking ends the session once the worker has stopped.
    assert first.run_to_end(bpy.context, timeout=10) == sessions.CANCELLED
    assert not first.job.alive


def test_loading_a_file_cancels_the_running_job(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(installed_extension, fake_pipeline(installed_extension, steps=500))
    bpy.ops.wm.read_homefile(app_template="")  # fires load_pre
    assert session.cancelling  # flagged at once; the load did not wait for the worker
    assert session.run_to_end(bpy.context, timeout=10) == sessions.CANCELLED
    assert not session.job.alive
    assert sessions.active_session() is None
    assert "fake" not in bpy.data.objects


def test_disabling_the_addon_cancels_and_joins_the_job(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(installed_extension, fake_pipeline(installed_extension, steps=500))
    thread_count = threading.active_count()
    addon_utils.disable(installed_extension, default_set=True)
    try:
        assert session.state == sessions.CANCELLED and session.cancelling
        assert session.job.join(10)  # the worker stops by itself at its next check
        assert threading.active_count() < thread_count
    finally:
        addon_utils.enable(installed_extension, default_set=True)


def test_errors_from_the_pipeline_show_in_the_panel_state(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    errors = extension(installed_extension, "core.errors")

    def failing(request, progress, cancel):
        raise errors.ImageInputError("The image is blank: pick a picture of an object.")

    session = start_session(installed_extension, failing)
    assert session.run_to_end(bpy.context, timeout=10) == sessions.FAILED
    assert bpy.context.window_manager.img3d_tasks.generate.last_error.startswith(
        "The image is blank"
    )


def test_a_result_step_missing_a_package_fails_in_one_line_and_leaves_no_object(
    installed_extension, monkeypatch
):
    """Blender without Pillow once crashed after the import, leaving a stray object."""
    sessions = extension(installed_extension, "blender.session")

    def needs_pillow(self, files):
        raise ModuleNotFoundError("No module named 'PIL'", name="PIL")

    monkeypatch.setattr(sessions.GenerateSession, "rerun_record", needs_pillow)
    before = set(bpy.data.objects.keys())
    session = start_session(installed_extension, fake_pipeline(installed_extension, steps=2))
    assert session.run_to_end(bpy.context, timeout=10) == sessions.FAILED
    error = bpy.context.window_manager.img3d_tasks.generate.last_error
    assert error.startswith("This step needs the Python package Pillow") and "\n" not in error
    assert "Install Dependencies" in error
    assert set(bpy.data.objects.keys()) == before and session.objects == []


def test_draining_a_tick_stays_within_budget(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(
        installed_extension, fake_pipeline(installed_extension, steps=2000, delay=0.0)
    )
    session.job.join(30)
    start = time.perf_counter()
    session.tick(bpy.context)
    elapsed = time.perf_counter() - start
    sessions.cancel_active()
    session.run_to_end(bpy.context, timeout=10)
    assert elapsed < 0.25  # the 2 ms budget plus the import of one cube, with slack for CI
