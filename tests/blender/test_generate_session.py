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


def start_session(installed_extension, work, output_dir=None):
    sessions = extension(installed_extension, "blender.session")
    session = sessions.GenerateSession(
        text_request(installed_extension),
        sessions.ImportOptions(),
        backend=FakeBackend(work),
        output_dir=output_dir,
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
    assert session.job.join(5)  # the session ended at the tick; the worker at its next step
    assert len(steps_done) <= at_cancel + 1
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
    # Cancel only flags the job; the next tick ends the session, the worker its next step.
    assert first.run_to_end(bpy.context, timeout=10) == sessions.CANCELLED
    assert first.job.join(5)


def test_loading_a_file_cancels_the_running_job(installed_extension):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(installed_extension, fake_pipeline(installed_extension, steps=500))
    bpy.ops.wm.read_homefile(app_template="")  # fires load_pre
    assert session.cancelling  # flagged at once; the load did not wait for the worker
    assert session.run_to_end(bpy.context, timeout=10) == sessions.CANCELLED
    assert session.job.join(5)
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


def test_a_cancel_between_the_workers_last_message_and_the_tick_leaves_no_file(
    installed_extension, tmp_path
):
    """The race of #28, made deterministic: the worker has written its files and queued
    its result, then the cancel comes, then the timer ticks."""
    sessions = extension(installed_extension, "blender.session")
    session = start_session(
        installed_extension, fake_pipeline(installed_extension, steps=1, delay=0.0), tmp_path
    )
    assert session.job.join(10)  # the last message is queued; no tick has read it
    assert any(tmp_path.iterdir())  # GLB, latents, ... are on disk
    assert sessions.cancel_active()  # accepted: the run hasn't ended
    assert session.tick(bpy.context) == sessions.CANCELLED
    assert list(tmp_path.iterdir()) == []
    assert session.objects == [] and "fake" not in bpy.data.objects
    state = bpy.context.window_manager.img3d_tasks.generate
    assert not state.running and state.message == session.cancelled_text


def test_a_cancel_after_the_tick_took_the_result_is_refused_and_the_run_finished(
    installed_extension, tmp_path
):
    sessions = extension(installed_extension, "blender.session")
    session = start_session(
        installed_extension, fake_pipeline(installed_extension, steps=1, delay=0.0), tmp_path
    )
    assert session.run_to_end(bpy.context, timeout=10) == sessions.FINISHED
    assert not session.cancel() and not sessions.cancel_active()
    assert session.state == sessions.FINISHED and "fake" in bpy.data.objects
    assert any(path.suffix == ".glb" for path in tmp_path.iterdir())


def test_a_cancel_during_a_first_load_frees_generate_at_once_and_writes_nothing(
    installed_extension, tmp_path
):
    """A first model load can't stop mid-way (imports, weights): the session ends at the
    next tick anyway, a new Generate starts while the old worker winds down, and what
    that worker still returns is discarded, files included."""
    sessions = extension(installed_extension, "blender.session")
    tasks = extension(installed_extension, "blender.tasks")
    loading, release = threading.Event(), threading.Event()
    finish = fake_pipeline(installed_extension, steps=1, delay=0.0)

    def first_load(request, progress, cancel):
        loading.set()
        release.wait(20)  # deaf to the cancel, like an import or a weight read
        return finish(request, progress, None)

    old_folder, new_folder = tmp_path / "old", tmp_path / "new"
    old_folder.mkdir()
    new_folder.mkdir()
    old = start_session(installed_extension, first_load, old_folder)
    assert loading.wait(10)
    assert sessions.cancel_active()
    assert old.tick(bpy.context) == sessions.CANCELLED  # the next tick, not the worker's end
    assert old.job.alive and old in tasks.winding_down()
    assert sessions.active_session() is None and bpy.ops.img3d.generate.poll()
    new = start_session(
        installed_extension, fake_pipeline(installed_extension, steps=1, delay=0.0), new_folder
    )
    release.set()
    assert new.run_to_end(bpy.context, timeout=10) == sessions.FINISHED
    assert old.job.join(10)
    [ticker] = [t for t in tasks._BACKGROUND_TICKERS if t.__qualname__.startswith("wind_down")]
    assert ticker() is None  # what Blender's timer does next: the old worker is gone
    bpy.app.timers.unregister(ticker)
    assert list(old_folder.iterdir()) == [] and old not in tasks.winding_down()
    assert any(path.suffix == ".glb" for path in new_folder.iterdir())
    assert [obj.name for obj in new.objects] == ["fake"]


def test_a_result_the_wound_down_worker_still_makes_is_deleted(installed_extension, tmp_path):
    """The worker passed its own cancel checks before the cancel came: it has written its
    files and returns after its session already ended; they are deleted all the same (by
    the task's last look at the cancel, or the wind-down timer when that raced too)."""
    sessions = extension(installed_extension, "blender.session")
    tasks = extension(installed_extension, "blender.tasks")
    checked, go_on = threading.Event(), threading.Event()

    class PastTheLastCheck(sessions.GenerateSession):
        def work(self, progress, cancel):
            result = super().work(progress, cancel)
            checked.set()
            go_on.wait(20)
            return result

    session = PastTheLastCheck(
        text_request(installed_extension),
        sessions.ImportOptions(),
        backend=FakeBackend(fake_pipeline(installed_extension, steps=1, delay=0.0)),
        output_dir=tmp_path,
    ).start(bpy.context.window_manager)
    assert checked.wait(10) and any(tmp_path.iterdir())
    assert sessions.cancel_active()
    assert session.tick(bpy.context) == sessions.CANCELLED
    go_on.set()
    assert session.job.join(10)
    [ticker] = [t for t in tasks._BACKGROUND_TICKERS if t.__qualname__.startswith("wind_down")]
    assert ticker() is None
    bpy.app.timers.unregister(ticker)
    assert list(tmp_path.iterdir()) == []
