"""Registry, suffix dispatch and the ``export --in`` reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_img3d.core.errors import ExportError, MeshInputError
from blender_img3d.core.exporters import SUFFIXES, WRITERS, export_mesh, format_for_path
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.reading import read_mesh
from blender_img3d.core.settings import EXPORT_FORMATS
from tests.fixtures.meshes import cube, icosphere, torus

UNICODE_NAME = "Stuhl «Ö» 'x' \"y\" 椅子"


def test_registry_covers_the_formats_settings_promise():
    assert set(WRITERS) == set(EXPORT_FORMATS)
    assert set(SUFFIXES.values()) == set(EXPORT_FORMATS)


@pytest.mark.parametrize(
    "name, fmt",
    [("a.glb", "glb"), ("A.OBJ", "obj"), ("x/y.dxf", "dxf"), ("p.step", "step"), ("p.STP", "step")],
)
def test_format_comes_from_the_suffix(name, fmt):
    assert format_for_path(name) == fmt


@pytest.mark.parametrize("name", ["mesh.fbx", "mesh", "mesh.glb.bak"])
def test_unknown_suffix_lists_the_supported_ones(name):
    with pytest.raises(ExportError, match=r"\.glb.*\.obj.*\.dxf.*\.step.*\.stp"):
        format_for_path(name)


def test_export_mesh_dispatches_on_suffix_and_passes_units(tmp_path):
    mesh = cube()
    for suffix, magic in [
        (".glb", b"glTF"),
        (".obj", b"# blender_img3d"),
        (".stp", b"ISO-10303-21;"),
    ]:
        path = export_mesh(mesh, tmp_path / f"part{suffix}")
        assert path.read_bytes().startswith(magic)
    text = export_mesh(mesh, tmp_path / "part.step", units="cm").read_text()
    assert "SI_UNIT(.CENTI.,.METRE.)" in text
    # units don't touch formats without a unit field: the OBJ stays in metres
    obj = export_mesh(mesh, tmp_path / "m.obj", units="cm", up_axis="Z").read_text()
    assert "v 0.500000 0.500000 0.500000" in obj


def test_explicit_format_overrides_the_suffix(tmp_path):
    path = export_mesh(cube(), tmp_path / "part.bin", fmt="glb")
    assert path.read_bytes()[:4] == b"glTF"
    with pytest.raises(ExportError, match="Unknown export format"):
        export_mesh(cube(), tmp_path / "part.bin", fmt="fbx")


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".dxf", ".step"])
def test_empty_or_broken_meshes_are_refused_before_writing(tmp_path, suffix):
    empty = MeshData(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ExportError, match="nothing to export"):
        export_mesh(empty, tmp_path / f"e{suffix}")
    nan = MeshData([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]])
    with pytest.raises(MeshInputError, match="NaN"):
        export_mesh(nan, tmp_path / f"n{suffix}")
    out_of_range = MeshData(np.eye(3), [[0, 1, 3]])
    with pytest.raises(MeshInputError, match="corrupt"):
        export_mesh(out_of_range, tmp_path / f"o{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_glb_round_trip_restores_frame_colours_name_and_settings(tmp_path):
    mesh = icosphere(3, colors=True)
    mesh.name = UNICODE_NAME
    mesh.metadata = {"seed": 42, "prompt": "a chair"}
    back = read_mesh(export_mesh(mesh, tmp_path / "m.glb"))
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_allclose(back.colors, mesh.colors, atol=1e-5)
    assert back.name == UNICODE_NAME
    assert back.metadata == {"seed": 42, "prompt": "a chair"}


def test_obj_round_trip_restores_z_up_and_colours(tmp_path):
    mesh = torus(colors=True)
    back = read_mesh(export_mesh(mesh, tmp_path / "t.obj"))
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=2e-6)
    np.testing.assert_allclose(back.colors, mesh.colors, atol=0.6 / 255 + 1e-4)
    z_up = read_mesh(export_mesh(mesh, tmp_path / "z.obj", up_axis="Z"), up_axis="Z")
    np.testing.assert_allclose(z_up.vertices, mesh.vertices, atol=2e-6)


@pytest.mark.parametrize("suffix", [".ply", ".stl"])
def test_ply_and_stl_are_read_as_z_up(tmp_path, suffix):
    trimesh = pytest.importorskip("trimesh")
    mesh = torus()
    path = tmp_path / f"t{suffix}"
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(str(path))
    back = read_mesh(path)
    assert back.face_count == mesh.face_count
    np.testing.assert_allclose(back.vertices[back.faces], mesh.vertices[mesh.faces], atol=1e-5)


def test_reader_errors_are_typed_and_say_what_to_do(tmp_path):
    with pytest.raises(MeshInputError, match="unsupported file type .fbx"):
        read_mesh(tmp_path / "m.fbx")
    with pytest.raises(MeshInputError, match="does not exist"):
        read_mesh(tmp_path / "missing.glb")
    (tmp_path / "folder.obj").mkdir()
    with pytest.raises(MeshInputError, match="is a folder"):
        read_mesh(tmp_path / "folder.obj")
    (tmp_path / "junk.glb").write_bytes(b"not a glb at all")
    with pytest.raises(MeshInputError, match="damaged or not a valid GLB"):
        read_mesh(tmp_path / "junk.glb")
    (tmp_path / "empty.obj").write_text("# nothing here\n")
    with pytest.raises(MeshInputError):
        read_mesh(tmp_path / "empty.obj")


@pytest.fixture
def dummy_ply_format():
    """A PLY writer registered the way a new format would be: one ExportFormat entry."""
    from blender_img3d.core import exporters

    written = []

    def write_ply(mesh, path, **options):
        written.append((mesh.face_count, options))
        Path(path).write_text("ply\n")
        return Path(path)

    exporters.register_format(
        exporters.ExportFormat("ply", (".ply",), "Stanford PLY", "PLY test writer", write_ply)
    )
    try:
        yield written
    finally:
        exporters.unregister_format("ply")


def test_a_registered_format_reaches_settings_cli_and_dispatch(dummy_ply_format, tmp_path, capsys):
    from blender_img3d.cli.main import main
    from blender_img3d.core.settings import Request

    assert "ply" in EXPORT_FORMATS and SUFFIXES[".ply"] == "ply"
    assert format_for_path("mesh.PLY") == "ply"
    Request(prompt="x", outputs=[tmp_path / "a.ply"]).validate()
    export_mesh(cube(), tmp_path / "a.ply", units="cm")
    assert dummy_ply_format == [(12, {})]  # no unit field declared: no units option
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert ".ply" in capsys.readouterr().out


def test_unregistered_format_is_refused_everywhere(tmp_path):
    from blender_img3d.core.errors import ConfigError
    from blender_img3d.core.settings import Request

    with pytest.raises(ConfigError, match=r"use one of \.glb \.obj \.dxf \.step/\.stp"):
        Request(prompt="x", outputs=[tmp_path / "a.ply"]).validate()
    with pytest.raises(ExportError, match="Can't tell the format"):
        export_mesh(cube(), tmp_path / "a.ply")


def test_a_suffix_belongs_to_one_format():
    from blender_img3d.core import exporters

    with pytest.raises(ValueError, match="already belongs to step"):
        exporters.register_format(exporters.ExportFormat("stp2", (".stp",), "x", "y", "m:f"))
    assert "stp2" not in EXPORT_FORMATS
