"""GLB writer: the Khronos glTF validator finds nothing, and the content is what we meant."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blender_img3d import __version__
from blender_img3d.core.colorspace import srgb_to_linear
from blender_img3d.core.exporters.glb import glb_bytes, write_glb
from blender_img3d.core.mesh.meshdata import MeshData
from tests.fixtures.meshes import cube, icosphere, open_box, torus

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = REPO_ROOT / ".venv" / "npm" / "node_modules" / "gltf-validator"
RUNNER = REPO_ROOT / "tests" / "gltf_validate.js"
UNICODE_NAME = "Stuhl «Ö» 'x' \"y\" 椅子"


def validate(path: Path) -> dict:
    """The validator's report for ``path`` (skips when node or the package is missing)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Khronos glTF validator can't run")
    if not (VALIDATOR / "package.json").is_file():
        pytest.skip(f"gltf-validator is not installed under {VALIDATOR} (vendor_install.py --dev)")
    done = subprocess.run(
        [node, str(RUNNER), str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    issues = report["issues"]
    if issues["numInfos"] or issues["numHints"]:
        log.warning("glTF validator infos/hints for %s: %s", path.name, issues["messages"])
    return report


def assert_clean(report: dict) -> None:
    issues = report["issues"]
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"]


def parse_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_length, json_kind = struct.unpack_from("<II", data, 12)
    assert json_kind == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length])
    bin_length, bin_kind = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_kind == 0x004E4942 and bin_length % 4 == 0
    binary = data[28 + json_length : 28 + json_length + bin_length]
    return document, binary


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = {5126: "<f4", 5125: "<u4", 5123: "<u2"}[accessor["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3}[accessor["type"]]
    raw = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
    return np.frombuffer(raw, dtype=dtype).reshape(accessor["count"], width)


@pytest.mark.parametrize(
    "mesh",
    [cube(), icosphere(4, colors=True), torus(colors=True), open_box()],
    ids=["cube", "sphere-5k-colours", "torus", "open-box"],
)
def test_validator_reports_no_errors_or_warnings(tmp_path, mesh):
    mesh.name = UNICODE_NAME
    mesh.metadata = {"seed": 7, "prompt": "a 'chair' \"x\"", "steps": 64, "guidance": 3.0}
    path = write_glb(mesh, tmp_path / "mesh.glb")
    assert_clean(validate(path))


@pytest.mark.slow
def test_validator_accepts_a_100k_face_mesh_with_uint32_indices(tmp_path):
    mesh = icosphere(6, colors=True)  # 81920 faces, 40962 vertices
    big = MeshData(
        np.concatenate([mesh.vertices, mesh.vertices + 3.0]),
        np.concatenate([mesh.faces, mesh.faces + mesh.vertex_count]),
        np.concatenate([mesh.colors, mesh.colors]),
    )
    path = write_glb(big, tmp_path / "big.glb")
    report = validate(path)
    assert_clean(report)
    document, _ = parse_glb(path)
    assert document["accessors"][0]["componentType"] == 5125  # uint32: > 65535 vertices


def test_positions_are_y_up_with_bounds_and_indices_are_uint16_when_small(tmp_path):
    mesh = cube()
    mesh.vertices = mesh.vertices + np.array([10.0, 20.0, 30.0])
    document, binary = parse_glb(write_glb(mesh, tmp_path / "c.glb"))
    primitive = document["meshes"][0]["primitives"][0]
    positions = accessor_array(document, binary, primitive["attributes"]["POSITION"])
    x, y, z = mesh.vertices.T
    np.testing.assert_allclose(positions, np.stack([x, z, -y], axis=1), atol=1e-5)
    accessor = document["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_allclose(accessor["min"], positions.min(axis=0))
    np.testing.assert_allclose(accessor["max"], positions.max(axis=0))
    indices = accessor_array(document, binary, primitive["indices"])
    assert document["accessors"][primitive["indices"]]["componentType"] == 5123
    np.testing.assert_array_equal(indices.reshape(-1, 3), mesh.faces)


def test_normals_are_unit_and_point_outwards(tmp_path):
    mesh = icosphere(3)
    document, binary = parse_glb(write_glb(mesh, tmp_path / "s.glb"))
    attributes = document["meshes"][0]["primitives"][0]["attributes"]
    normals = accessor_array(document, binary, attributes["NORMAL"])
    positions = accessor_array(document, binary, attributes["POSITION"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("ij,ij->i", normals, positions) > 0.99).all()  # unit sphere


def test_colours_are_stored_linear_under_a_white_material(tmp_path):
    mesh = torus(colors=True)  # colours between 0 and 1, where sRGB and linear differ
    document, binary = parse_glb(write_glb(mesh, tmp_path / "c.glb"))
    primitive = document["meshes"][0]["primitives"][0]
    colors = accessor_array(document, binary, primitive["attributes"]["COLOR_0"])
    np.testing.assert_allclose(colors, srgb_to_linear(mesh.colors), atol=1e-6)
    assert not np.allclose(colors, mesh.colors)  # the conversion really happened
    material = document["materials"][primitive["material"]]
    assert material["pbrMetallicRoughness"]["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]


def test_generator_and_settings_are_in_asset_extras(tmp_path):
    mesh = cube()
    mesh.name = UNICODE_NAME
    mesh.metadata = {
        "seed": 3,
        "prompt": "Stuhl «Ö»",
        "model": "openai/shap-e",
        "nan": float("nan"),
    }
    document, _ = parse_glb(write_glb(mesh, tmp_path / "c.glb"))
    assert document["asset"]["version"] == "2.0"
    assert document["asset"]["generator"] == f"blender_img3d {__version__}"
    extras = document["asset"]["extras"]
    assert extras["name"] == UNICODE_NAME
    assert extras["settings"] == {
        "seed": 3,
        "prompt": "Stuhl «Ö»",
        "model": "openai/shap-e",
        "nan": None,
    }
    assert document["nodes"][0]["name"] == UNICODE_NAME


def test_buffer_views_start_on_four_byte_boundaries():
    mesh = MeshData(np.eye(3), [[0, 1, 2]])  # 3 uint16 indices = 6 bytes: needs padding
    data = glb_bytes(mesh)
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + json_length])
    assert all(view["byteOffset"] % 4 == 0 for view in document["bufferViews"])
    assert len(data) % 4 == 0


def test_vertex_without_faces_still_gets_a_unit_normal(tmp_path):
    mesh = MeshData(np.vstack([np.eye(3), [[5.0, 5.0, 5.0]]]), [[0, 1, 2]])
    path = write_glb(mesh, tmp_path / "loose.glb")
    report = validate(path)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
