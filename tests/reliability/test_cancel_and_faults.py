"""Cancel and life cycle, faults: a cancelled or failed run leaves no file of its own.

All of a run's outputs are staged and renamed together at its end
(``exporters/atomic.staged_writes``): a cancel during export removes what that
run wrote so far, a disk that fills half-way through the set leaves the whole
set as it was, and a failure after sampling keeps only the latents (so
``decode`` can retry without sampling again).
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

from blender_img3d.core import pipeline
from blender_img3d.core.errors import CancelledError, EmptySurfaceError, ExportError
from blender_img3d.core.exporters import atomic
from blender_img3d.core.exporters.atomic import atomic_write, staged_writes
from blender_img3d.core.progress import Phase
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request
from tests.reliability.conftest import one_error_line, run_cli, snapshot, temporary_files

OLD = b"the user's previous file\n"


def _request(tmp_path, names, **kwargs) -> Request:
    return Request(outputs=[tmp_path / name for name in names], mesh=MeshSettings(enabled=False),
                   **kwargs)  # fmt: skip


def _cancel_at(phase: str, step: int):
    cancel = threading.Event()

    def progress(name, done, total):
        if name == phase and done >= step:
            cancel.set()

    return cancel, progress


def test_cancel_between_exports_removes_the_files_already_written(mesh_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part.step").write_bytes(OLD)
    request = _request(out, ["part.glb", "part.obj", "part.step"], report_path=out / "r.json")
    cancel, progress = _cancel_at(Phase.EXPORTING, 2)  # GLB and OBJ done, STEP next
    with pytest.raises(CancelledError):
        pipeline.convert_mesh_file(mesh_files["glb"], request, progress=progress, cancel=cancel)
    assert snapshot(out) == {"part.step": OLD}
    assert temporary_files(tmp_path) == []


def test_a_full_disk_on_the_third_file_leaves_the_first_two_as_they_were(
    mesh_files, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("part.glb", "part.dxf"):
        (out / name).write_bytes(OLD)
    from blender_img3d.core.exporters import step

    def full_disk(mesh, path, **options):
        with atomic_write(path, "wb") as stream:
            stream.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(step, "write_step", full_disk)  # the registry looks it up by name
    request = _request(out, ["part.glb", "part.dxf", "part.step"])
    with pytest.raises(ExportError, match="the disk is full"):
        pipeline.convert_mesh_file(mesh_files["glb"], request)
    assert snapshot(out) == {"part.glb": OLD, "part.dxf": OLD}


def test_a_failure_after_sampling_keeps_the_latents_and_nothing_else(
    tiny_image_model_dir, example_image, tmp_path
):
    """The tiny random renderer decodes to no surface: EmptySurfaceError after sampling."""
    request = Request(
        image=example_image,
        generation=GenerationSettings(model=str(tiny_image_model_dir), steps=2, grid_size=8),
        outputs=[tmp_path / "m.glb"],
        latents_out=tmp_path / "z.npy",
        report_path=tmp_path / "r.json",
    )
    with pytest.raises(EmptySurfaceError):
        pipeline.run(request)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npy", "z.npy.json"]


def test_a_cancel_after_sampling_keeps_not_even_the_latents(
    tiny_image_model_dir, example_image, tmp_path
):
    request = Request(
        image=example_image,
        generation=GenerationSettings(model=str(tiny_image_model_dir), steps=2, grid_size=8),
        outputs=[tmp_path / "m.glb"],
        latents_out=tmp_path / "z.npy",
        save_input=tmp_path / "seen.png",
    )
    cancel, progress = _cancel_at(Phase.DECODING, 0)
    with pytest.raises(CancelledError):
        pipeline.run(request, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_save_input_jpg_writes_a_real_jpeg(
    surface_image_model_dir, example_image, tmp_path, capsys
):
    code, _, err = run_cli(
        capsys, "generate", "--image", example_image, "--model", surface_image_model_dir,
        "--steps", 1, "--grid-size", 16, "--out", tmp_path / "o.glb",
        "--save-input", tmp_path / "seen.jpg", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "seen.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (tmp_path / "o.glb").read_bytes()[:4] == b"glTF"


# --- the staging itself ------------------------------------------------------------


def test_staged_files_appear_together_only_at_the_end(tmp_path):
    with staged_writes() as batch:
        for name in ("a", "b"):
            with atomic_write(tmp_path / name, "w") as stream:
                stream.write(name)
        assert not (tmp_path / "a").exists() and len(temporary_files(tmp_path)) == 2
        assert batch.targets == [(tmp_path / "a").absolute(), (tmp_path / "b").absolute()]
    assert (tmp_path / "a").read_text() == "a" and (tmp_path / "b").read_text() == "b"
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("interrupt", [CancelledError(), KeyboardInterrupt(), SystemExit(143)])
def test_an_interrupt_discards_even_what_was_marked_to_keep(tmp_path, interrupt):
    (tmp_path / "a").write_bytes(OLD)
    with pytest.raises(type(interrupt)):
        with staged_writes() as batch:
            with atomic_write(tmp_path / "a", "wb") as stream:
                stream.write(b"new")
            batch.keep_staged()
            raise interrupt
    assert snapshot(tmp_path) == {"a": OLD}


def test_a_plain_failure_commits_only_what_was_kept(tmp_path):
    with pytest.raises(ValueError):
        with staged_writes() as batch:
            with atomic_write(tmp_path / "kept", "w") as stream:
                stream.write("latents")
            batch.keep_staged()
            with atomic_write(tmp_path / "dropped", "w") as stream:
                stream.write("mesh")
            raise ValueError("decode failed")
    assert snapshot(tmp_path) == {"kept": b"latents"}


def test_remove_temporary_files_deletes_every_live_one(tmp_path):
    """What the CLI's second-signal exit calls; a commit afterwards finds nothing to rename."""
    with pytest.raises(ExportError, match="No such file"):
        with staged_writes():
            with atomic_write(tmp_path / "a", "w") as stream:
                stream.write("x")
            assert atomic.remove_temporary_files() == 1
            assert temporary_files(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_exception_is_one_line_exit_70(tmp_path, capsys, monkeypatch, mesh_files):
    from blender_img3d.core.mesh import reading

    monkeypatch.setattr(reading, "read_mesh_file", lambda *a, **k: 1 / 0)
    code, _, err = run_cli(capsys, "export", "--in", mesh_files["glb"], "--out", tmp_path / "x.glb")
    assert code == 70
    assert "internal error (ZeroDivisionError" in one_error_line(err)


# --- what the mutation run showed unasserted in atomic.py ------------------------------


def test_os_errors_read_as_their_reason_and_what_to_do():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert atomic.describe_os_error(full) == (
        f"{os.strerror(errno.ENOSPC)} (the disk is full; free some space or choose another folder)"
    )
    # No errno, no hint (not the hint of errno 1, EPERM); no strerror, the text itself.
    assert atomic.describe_os_error(OSError("the device went away")) == "the device went away"
    assert atomic.describe_os_error(OSError(errno.EXDEV, "Cross-device link")) == (
        "Cross-device link"
    )


def test_a_hard_exit_skips_temporaries_already_gone_and_counts_the_rest(tmp_path):
    with pytest.raises(ExportError):  # the commit then finds its temporaries gone
        with staged_writes():
            for name in ("a", "b"):
                with atomic_write(tmp_path / name, "w") as stream:
                    stream.write(name)
            first = sorted(tmp_path.glob(".a.*.tmp"))[0]
            first.unlink()  # e.g. removed by a clean-up that ran before the second signal
            assert atomic.remove_temporary_files() == 1
            assert temporary_files(tmp_path) == []
            assert atomic.remove_temporary_files() == 0  # the registry is empty now


def test_a_failed_write_leaves_nothing_for_a_hard_exit_to_delete(tmp_path):
    """The registry forgets a discarded temporary: a later file at that name is not ours."""
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "a", "w"):
            [name] = temporary_files(tmp_path)
            raise ValueError("writer failed")
    assert temporary_files(tmp_path) == []
    reused = tmp_path / name
    reused.write_text("someone else's")
    assert atomic.remove_temporary_files() == 0
    assert reused.read_text() == "someone else's"


@pytest.mark.parametrize("umask", [0o027, 0o077, 0o002])
def test_a_new_file_gets_the_umask_default_not_mkstemp_0600(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "new.glb", "wb") as stream:
            stream.write(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.glb").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failure_after_a_partial_commit_keeps_nothing_more(tmp_path):
    """What was renamed early stays; what was staged after it, unkept, is discarded."""
    with pytest.raises(ValueError):
        with staged_writes() as batch:
            with atomic_write(tmp_path / "early", "w") as stream:
                stream.write("early")
            batch.commit(1)
            with atomic_write(tmp_path / "late", "w") as stream:
                stream.write("late")
            raise ValueError("failed after the first file")
    assert snapshot(tmp_path) == {"early": b"early"}


def test_a_dot_name_is_refused_as_a_folder(tmp_path):
    parent = os.path.join(str(tmp_path), "..")
    with pytest.raises(ExportError) as info:
        with atomic_write(parent, "w"):
            pass
    assert str(info.value) == f"Can't write {parent!r}: give a file name, not a folder."
    with pytest.raises(ExportError) as info:  # "x/." is "x" to pathlib: the folder itself
        with atomic_write(os.path.join(str(tmp_path), "."), "w"):
            pass
    assert str(info.value) == f"Can't write {tmp_path}: it is a folder; give a file name."
