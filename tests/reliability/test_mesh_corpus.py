"""Real meshes made by others through ``export --in``: every output passes its own checker.

The corpus (``tests/fixtures/mesh_corpus.py``, Debian's assimp-testmodels) goes
through the CLI as a user would run it, to GLB, OBJ, DXF and STEP at once. Each
output is judged by a third-party reader: the Khronos glTF validator, assimp,
ezdxf's audit and OpenCascade's ``BRepCheck_Analyzer`` on every solid. Triangle
counts and bounding boxes match the input; vertex colours survive GLB and OBJ;
and the summary's label, the report's parts and OpenCascade's count of closed
shells and solids in the STEP file are one answer. The default run takes the
quick subset; ``pytest -m corpus`` takes every file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_img3d.core.mesh.metrics import closedness_label
from blender_img3d.core.mesh.reading import read_mesh
from tests.core.test_exporters_dxf import assimp_counts, polyface_arrays, read_back
from tests.core.test_exporters_glb import assert_clean, validate
from tests.fixtures import mesh_corpus
from tests.fixtures.readers import read_obj, read_step_parts
from tests.reliability.conftest import one_error_line, run_cli, snapshot


def bbox(vertices: np.ndarray) -> np.ndarray:
    return np.stack([vertices.min(axis=0), vertices.max(axis=0)])


def sorted_colours(colors: np.ndarray) -> np.ndarray:
    """Each channel's values in order: the same colours whatever the vertex order."""
    return np.sort(colors, axis=0)


@pytest.mark.parametrize("entry", mesh_corpus.corpus_params())
def test_corpus_file_converts_to_outputs_every_checker_accepts(tmp_path, capsys, entry):
    source = mesh_corpus.require(entry)
    mesh = read_mesh(source)
    formats = ("glb", "obj", "dxf", "step") if entry.step else ("glb", "obj", "dxf")
    outputs = {fmt: tmp_path / f"out.{fmt}" for fmt in formats}
    args = ["export", "--in", source, "--quiet", "--report", tmp_path / "report.json"]
    for path in outputs.values():
        args += ["--out", path]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "report.json").read_text())["variants"][0]["metrics"]
    extent = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0))) or 1.0

    # GLB: validator-clean, every triangle, same box (read back into Blender's frame).
    assert_clean(validate(outputs["glb"]))
    glb = read_mesh(outputs["glb"])
    assert glb.face_count == mesh.face_count
    np.testing.assert_allclose(bbox(glb.vertices), bbox(mesh.vertices), atol=1e-6 * extent)

    # OBJ: our reader and assimp see every triangle in the same box.
    vertices, faces = read_obj(outputs["obj"])
    assert len(faces) == mesh.face_count
    assert assimp_counts(outputs["obj"])[1] == mesh.face_count
    obj = read_mesh(outputs["obj"])
    # The OBJ writer keeps 6 decimals of a metre (a micrometre), whatever the model's size.
    obj_precision = max(1e-6 * extent, 0.6e-6)
    np.testing.assert_allclose(bbox(obj.vertices), bbox(mesh.vertices), atol=obj_precision)

    # DXF: ezdxf's audit is clean and the polyfaces hold every triangle.
    dxf_faces = polyface_arrays(read_back(outputs["dxf"]))[1]
    assert len(dxf_faces) == mesh.face_count

    # Vertex colours survive where the format carries them.
    if mesh.colors is not None:
        for copy in (glb, obj):
            assert copy.colors is not None
            np.testing.assert_allclose(
                sorted_colours(copy.colors), sorted_colours(mesh.colors), atol=2.5 / 255
            )

    if not entry.step:  # nothing with an area to bound: refused in one line, nothing written
        code, _, err = run_cli(
            capsys, "export", "--in", source, "--quiet", "--out", tmp_path / "x.step"
        )
        assert code == 1 and "zero area" in one_error_line(err)
        assert not (tmp_path / "x.step").exists()
        return

    # STEP: OpenCascade finds every solid valid, and its bodies are the report's parts.
    step = read_step_parts(outputs["step"])
    assert step.invalid_solids == 0 and step.valid
    assert step.closed_shells == step.solids == metrics["closed_parts"]
    assert step.shells == metrics["parts"]
    assert metrics["watertight"] == (metrics["open_parts"] == 0)
    assert f": {mesh.face_count} faces" in out and closedness_label(metrics) in out


@pytest.mark.parametrize("relative", mesh_corpus.REFUSED)
def test_corpus_files_that_cannot_be_converted_are_refused_in_one_line(tmp_path, capsys, relative):
    source = mesh_corpus.require(relative)
    before = mesh_corpus.ROOT.stat().st_mtime, mesh_corpus.ROOT.exists()
    code, _, err = run_cli(
        capsys, "export", "--in", source, "--quiet", "--out", tmp_path / "a.glb",
        "--out", tmp_path / "a.step",
    )  # fmt: skip
    assert code == 1
    assert one_error_line(err)
    assert snapshot(tmp_path) == {}
    assert (mesh_corpus.ROOT.stat().st_mtime, mesh_corpus.ROOT.exists()) == before


def test_an_unwelded_closed_stl_is_labelled_closed_like_its_step_solid(tmp_path, capsys):
    """STL never shares vertices; the label is the surface's, not the storage's."""
    source = mesh_corpus.require("PLY/cube.ply")
    mesh = read_mesh(source)
    soup = tmp_path / "soup.stl"
    import trimesh

    corners = mesh.vertices[mesh.faces].reshape(-1, 3)
    trimesh.Trimesh(corners, np.arange(len(corners)).reshape(-1, 3), process=False).export(soup)
    code, out, err = run_cli(
        capsys, "export", "--in", soup, "--quiet", "--out", tmp_path / "a.step",
        "--report", tmp_path / "r.json",
    )  # fmt: skip
    assert code == 0, err
    assert "watertight" in out
    metrics = json.loads((tmp_path / "r.json").read_text())["variants"][0]["metrics"]
    assert metrics["vertices"] == 36 and metrics["welded_vertices"] == 8
    step = read_step_parts(tmp_path / "a.step")
    assert (step.solids, step.invalid_solids) == (1, 0)
