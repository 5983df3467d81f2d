"""Failed exports never leave half a file: ExportError, old file untouched, no temp file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from blender_img3d.core.errors import ExportError
from blender_img3d.core.exporters import atomic, export_mesh
from blender_img3d.core.exporters.atomic import atomic_write
from tests.fixtures.meshes import cube

SUFFIXES = [".glb", ".obj", ".dxf", ".step"]
OLD = b"previous export, must survive\n"


def _existing_target(folder: Path, suffix: str) -> Path:
    target = folder / f"part{suffix}"
    target.write_bytes(OLD)
    if suffix == ".obj":
        (folder / "part.mtl").write_bytes(OLD)
    return target


def _assert_untouched(folder: Path, target: Path) -> None:
    assert target.read_bytes() == OLD
    if target.suffix == ".obj":
        assert (folder / "part.mtl").read_bytes() == OLD
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


class _FullDisk:
    """A file object whose writes fail with ENOSPC once ``budget`` bytes are written.

    300 bytes: an OBJ's small .mtl completes, its .obj fails (the .mtl must not be
    renamed into place either); every other format fails in its only file.
    """

    def __init__(self, stream, budget: int) -> None:
        self._stream = stream
        self._budget = budget

    def write(self, data):
        self._budget -= len(data)
        if self._budget < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._stream.write(data)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stream.close()
        return False


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_full_disk_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, suffix):
    target = _existing_target(tmp_path, suffix)
    real_open = open
    monkeypatch.setattr(
        atomic, "open", lambda *a, **k: _FullDisk(real_open(*a, **k), budget=300), raising=False
    )
    with pytest.raises(ExportError, match="disk is full"):
        export_mesh(cube(colors=True), target)
    _assert_untouched(tmp_path, target)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_permission_denied_on_rename_keeps_previous_file(tmp_path, monkeypatch, suffix):
    target = _existing_target(tmp_path, suffix)

    def deny(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(atomic.os, "replace", deny)
    with pytest.raises(ExportError, match="permission denied"):
        export_mesh(cube(), target)
    _assert_untouched(tmp_path, target)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_parent_that_is_a_file_is_reported(tmp_path, suffix):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file, not a folder")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export_mesh(cube(), not_a_folder / f"part{suffix}")
    assert not_a_folder.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_target_that_is_a_folder_is_reported(tmp_path, suffix):
    folder = tmp_path / f"looks_like_a_file{suffix}"
    folder.mkdir()
    with pytest.raises(ExportError, match="it is a folder"):
        export_mesh(cube(), folder)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_mesh(cube(), tmp_path / "no" / "such" / "part.glb")


def test_unwritable_folder_is_reported(tmp_path, monkeypatch):
    # Tests may run as root, which ignores permission bits: make mkstemp fail instead.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(ExportError, match="permission denied"):
        export_mesh(cube(), tmp_path / "part.step")
    assert list(tmp_path.iterdir()) == []


def test_error_inside_the_block_discards_the_temp_file(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(OLD)
    with pytest.raises(RuntimeError):
        with atomic_write(target, "wb") as stream:
            stream.write(b"half")
            raise RuntimeError("writer bug")
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_successful_write_replaces_content_and_keeps_permissions(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_write(target, "w") as stream:
        stream.write("new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_new_file_gets_ordinary_permissions_not_mkstemp_private_ones(tmp_path):
    target = tmp_path / "fresh.bin"
    with atomic_write(target) as stream:
        stream.write(b"x")
    umask = atomic._current_umask()
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask != 0o600
