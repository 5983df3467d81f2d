"""Shared helpers of the reliability suite: the CLI in-process, file snapshots, fuzz sizes.

Every case builds its inputs in code inside ``tmp_path`` and asserts the whole
outcome: the typed error and its single line, the exit code, which files exist
afterwards and the input's bytes. ``--nightly`` (or ``IMG3D_NIGHTLY=1``) lifts
each fuzzer from a few hundred cases to 10,000.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from blender_img3d.cli.main import main

CI_EXAMPLES = int(os.environ.get("IMG3D_FUZZ_EXAMPLES", "200"))
NIGHTLY_EXAMPLES = 10_000


@pytest.fixture(scope="session")
def fuzz_examples(pytestconfig) -> int:
    """How many cases each fuzzer tries: a few hundred in CI, 10,000 nightly."""
    if pytestconfig.getoption("--nightly") or os.environ.get("IMG3D_NIGHTLY") == "1":
        return NIGHTLY_EXAMPLES
    return CI_EXAMPLES


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m blender_img3d ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The CLI's error output, asserted to be exactly one ``error: ...`` line."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "\n" not in errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes), to compare before and after."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def temporary_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.tmp"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


@pytest.fixture
def mesh_files(tmp_path) -> dict[str, Path]:
    """A small cube as chair.obj (with the user's own chair.mtl) and cube.glb, written in code."""
    from blender_img3d.core.exporters import export_mesh
    from tests.fixtures.meshes import cube

    glb = export_mesh(cube(colors=True), tmp_path / "cube.glb")
    obj = tmp_path / "chair.obj"
    obj.write_text(
        "mtllib chair.mtl\no chair\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
        "usemtl wood\n"
        "f 1 3 2\nf 1 4 3\nf 5 6 7\nf 5 7 8\nf 1 2 6\nf 1 6 5\n"
        "f 2 3 7\nf 2 7 6\nf 3 4 8\nf 3 8 7\nf 4 1 5\nf 4 5 8\n"
    )
    (tmp_path / "chair.mtl").write_text("newmtl wood\nKd 0.6 0.4 0.2\n")
    return {"glb": glb, "obj": obj, "mtl": tmp_path / "chair.mtl"}
