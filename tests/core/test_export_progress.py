"""Long exports report faces written and stop on a cancel without leaving a file (#28).

Through ``export_mesh`` (every format), the pipeline's export phase (one count over
every file, what the CLI's bar draws), the server's job events, and the size warning
said before any work. A cancel set from inside the progress callback lands exactly
mid-export, so these tests need no timing. The 2M-face figures are in
``benchmarks/bench_big_export.py``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time

import pytest

from blender_img3d.core import exporters
from blender_img3d.core.errors import CancelledError
from blender_img3d.core.progress import Phase
from tests.fixtures.meshes import torus

pytest.importorskip("ezdxf")


def big_torus():
    return torus(1.0, 0.3, 220, 100)  # 44,000 faces: five POLYFACE entities, many STEP blocks


class Recorder:
    """A progress callback that keeps every report and can set a cancel after ``cancel_after``
    reports with faces already written."""

    def __init__(self, cancel=None, cancel_after: int = 0) -> None:
        self.seen: list[tuple[str, int, int]] = []
        self.cancel, self.cancel_after = cancel, cancel_after

    def __call__(self, phase: str, step: int, total: int) -> None:
        self.seen.append((phase, step, total))
        written = [s for s in self.seen if s[1] > 0]
        if self.cancel is not None and len(written) == self.cancel_after:
            self.cancel.set()

    @property
    def steps(self) -> list[int]:
        return [step for _, step, _ in self.seen]


@pytest.mark.parametrize("suffix, options", [(".dxf", {}), (".step", {}), (".glb", {})])
def test_progress_counts_faces_written_up_to_the_mesh_and_the_file_is_complete(
    tmp_path, suffix, options
):
    mesh = big_torus()
    progress = Recorder()
    path = exporters.export_mesh(mesh, tmp_path / f"t{suffix}", progress=progress, **options)
    assert path.stat().st_size > 0
    assert {phase for phase, _, _ in progress.seen} == {Phase.EXPORTING}
    assert {total for _, _, total in progress.seen} == {mesh.face_count}
    assert progress.steps == sorted(progress.steps) and progress.steps[-1] == mesh.face_count
    if suffix != ".glb":  # the streaming writers report while they write
        assert len([s for s in progress.steps if 0 < s < mesh.face_count]) >= 3


@pytest.mark.parametrize("suffix", [".dxf", ".step"])
def test_a_cancel_mid_export_raises_and_leaves_no_file(tmp_path, suffix):

    cancel = threading.Event()
    progress = Recorder(cancel, cancel_after=2)
    target = tmp_path / f"t{suffix}"
    with pytest.raises(CancelledError):
        exporters.export_mesh(big_torus(), target, progress=progress, cancel=cancel)
    assert 0 < max(progress.steps) < big_torus().face_count  # it stopped part-way
    assert list(tmp_path.iterdir()) == []  # no file, no temporary


def test_the_pipeline_counts_faces_over_every_file_and_the_cli_bar_draws_them(tmp_path):
    from blender_img3d.cli.progress import ProgressBar
    from blender_img3d.core.pipeline import convert_mesh_file
    from blender_img3d.core.settings import Request

    source = exporters.export_mesh(big_torus(), tmp_path / "in.glb")
    outputs = [tmp_path / "out.dxf", tmp_path / "out.step"]
    request = Request(outputs=outputs)
    request.mesh.enabled = False
    progress = Recorder()
    convert_mesh_file(source, request, progress=progress)
    exporting = [s for s in progress.seen if s[0] == Phase.EXPORTING]
    faces = 44_000
    assert {total for _, _, total in exporting} == {2 * faces}
    steps = [step for _, step, _ in exporting]
    assert steps == sorted(steps) and steps[-1] == 2 * faces
    assert any(faces < step < 2 * faces for step in steps)  # inside the second file
    assert all(path.is_file() for path in outputs)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = ProgressBar(stream=screen)
    for phase, step, total in exporting:
        bar(phase, step, total)
    bar.close()
    assert f"{faces}/{2 * faces}" in screen.getvalue()


def test_a_step_too_big_for_cad_is_warned_about_before_any_work(tmp_path, caplog):
    """The warning names the way out (--target-faces) and comes before the first face."""
    from blender_img3d.core.pipeline import convert_mesh_file
    from blender_img3d.core.settings import Request

    assert exporters.size_warning(2_000_000, "x.dxf") is None
    line = exporters.size_warning(2_000_000, "x.step")
    assert "2,000,000 faces" in line and "--target-faces" in line and "\n" not in line
    assert exporters.size_warning(1000, "x.step") is None

    source = exporters.export_mesh(torus(), tmp_path / "in.glb")
    step = exporters.FORMATS["step"]
    order: list[str] = []

    class Order(logging.Handler):
        def emit(self, record) -> None:
            order.append("warning")

    handler = Order(level=logging.WARNING)
    logging.getLogger("blender_img3d").addHandler(handler)
    exporters.register_format(dataclasses.replace(step, usable_faces=100))
    try:
        request = Request(outputs=[tmp_path / "out.step"])
        request.mesh.enabled = False
        convert_mesh_file(
            source, request, progress=lambda phase, step, total: order.append(f"{phase} {step}")
        )
    finally:
        exporters.register_format(step)
        logging.getLogger("blender_img3d").removeHandler(handler)
    assert order.index("warning") < order.index(f"{Phase.EXPORTING} 0")
    assert order.count("warning") == 1


def test_server_job_events_carry_the_export_phase_in_faces(tmp_path):
    """The job store publishes what the pipeline reports: the export's faces written."""
    from blender_img3d.core.errors import EmptySurfaceError
    from blender_img3d.core.server import protocol
    from blender_img3d.core.server.config import ServerConfig
    from blender_img3d.core.server.jobstore import JobStore

    mesh = big_torus()
    read = threading.Event()

    class Exporting:
        def submit(self, request, progress=None, cancel=None):
            exporters.export_mesh(mesh, tmp_path / "job.dxf", progress=progress, cancel=cancel)
            read.wait(30)  # the test reads the events before the job ends and trims them
            raise EmptySurfaceError("stop here: no archive is needed for this test")

    config = ServerConfig(jobs_dir=tmp_path / "jobs", warm_modes=())
    store = JobStore(config, devices=["cpu"], backend_factory=Exporting).start()
    seen: list[dict] = []
    try:
        record = store.new_job()
        request, options = protocol.request_from_settings({"steps": 2}, prompt="a lamp")
        store.prepare(record, request, options)
        store.enqueue(record)
        seq, deadline = 0, time.monotonic() + 60
        while not read.is_set() and time.monotonic() < deadline:
            events, seq = store.events_since(record, seq)
            seen.extend(events)
            if any(e["phase"] == Phase.EXPORTING and e["step"] == e["total"] for e in events):
                read.set()
            time.sleep(0.005)
        read.set()
    finally:
        store.stop()
    exporting = [e for e in seen if e["phase"] == Phase.EXPORTING]
    steps = [e["step"] for e in exporting]
    assert {e["total"] for e in exporting} == {mesh.face_count}
    assert steps == sorted(steps) and steps[-1] == mesh.face_count
    assert any(0 < step < mesh.face_count for step in steps)


def test_a_server_job_cancelled_while_its_archive_is_written_ends_cancelled_without_it(
    tmp_path, monkeypatch
):
    """Cancel is final on the server too: the cancel lands between the pipeline's end and
    the archive's, and the job neither finishes nor keeps the archive."""
    from blender_img3d.core.server import jobstore, protocol
    from blender_img3d.core.server.config import ServerConfig

    store_ref: list = []

    class Done:
        def submit(self, request, progress=None, cancel=None):
            return object()

    def archive_then_cancel(record, result):
        path = record.folder / "result.zip"
        path.write_bytes(b"PK")
        store_ref[0].cancel(record)  # accepted: the job is still running
        return path

    monkeypatch.setattr(jobstore, "write_archive", archive_then_cancel)
    config = ServerConfig(jobs_dir=tmp_path / "jobs", warm_modes=())
    store = jobstore.JobStore(config, devices=["cpu"], backend_factory=Done).start()
    store_ref.append(store)
    try:
        record = store.new_job()
        request, options = protocol.request_from_settings({"steps": 2}, prompt="a lamp")
        store.prepare(record, request, options)
        store.enqueue(record)
        deadline = time.monotonic() + 30
        while not record.final and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.status(record)["state"] == protocol.CANCELLED
        assert record.archive is None and not (record.folder / "result.zip").exists()
    finally:
        store.stop()
