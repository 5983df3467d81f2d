"""Mesh files and arrays: nothing out of range reaches a writer, no damaged GLB is converted.

Coordinates of 1e307 (unit conversion overflows), 1e39 (past float32), NaN and
bad indices to every format, with and without processing; GLB files whose
offsets, lengths, accessors or node graph break the glTF spec. Each refusal is
a MeshInputError in one line and leaves no file.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from blender_img3d.core.errors import MeshInputError
from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.mesh.gltf_check import check_gltf_bytes
from blender_img3d.core.mesh.meshdata import MeshData
from blender_img3d.core.mesh.reading import read_mesh
from tests.fixtures.meshes import cube
from tests.reliability.conftest import one_error_line, run_cli, snapshot

FORMATS = ("glb", "obj", "dxf", "step")


def scaled_cube(factor: float) -> MeshData:
    mesh = cube()
    mesh.vertices = mesh.vertices * factor
    return mesh


def write_obj(path, mesh: MeshData) -> None:
    rows = [f"v {x!r} {y!r} {z!r}" for x, y, z in mesh.vertices]
    rows += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("fmt", FORMATS)
def test_coordinates_of_1e307_are_refused_for_every_format(tmp_path, fmt):
    with pytest.raises(MeshInputError, match="beyond the 1e\\+70 m") as info:
        export_mesh(scaled_cube(1e307), tmp_path / f"m.{fmt}")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_past_float32_is_refused_for_glb_only(tmp_path):
    with pytest.raises(MeshInputError, match="GLB stores float32 positions"):
        export_mesh(scaled_cube(1e39), tmp_path / "m.glb")
    assert not (tmp_path / "m.glb").exists()
    obj = export_mesh(scaled_cube(1e39), tmp_path / "m.obj")
    assert "nan" not in obj.read_text() and "inf" not in obj.read_text()


@pytest.mark.parametrize("units, allowed", [("mm", False), ("m", True)])
def test_the_unit_narrows_the_cad_range(tmp_path, units, allowed):
    mesh = scaled_cube(1e68)  # 5e67 m: fine in metres, 5e70 mm is past the limit
    if allowed:
        text = export_mesh(mesh, tmp_path / "m.dxf", units=units).read_text(errors="replace")
        assert "inf" not in text.lower().split("$")[0] or "nan" not in text.lower()
    else:
        with pytest.raises(MeshInputError, match="mm, beyond"):
            export_mesh(mesh, tmp_path / "m.dxf", units=units)


@pytest.mark.parametrize("process", [False, True])
def test_export_cli_refuses_a_1e307_obj_in_one_line(tmp_path, capsys, process):
    source = tmp_path / "huge.obj"
    write_obj(source, scaled_cube(1e307))
    before = snapshot(tmp_path)
    args = ["export", "--in", source, "--quiet"] + (["--process"] if process else [])
    for fmt in FORMATS:
        args += ["--out", tmp_path / f"out.{fmt}"]
    code, _, err = run_cli(capsys, *args)
    assert code == 1
    assert "Can't convert mesh 'huge'" in one_error_line(err)
    assert snapshot(tmp_path) == before


def test_size_1e300_to_step_names_the_range_not_zero_area(tmp_path, capsys, mesh_files):
    code, _, err = run_cli(
        capsys, "export", "--in", mesh_files["glb"], "--process", "--size", "1e300",
        "--out", tmp_path / "big.step",
    )  # fmt: skip
    assert code == 1
    line = one_error_line(err)
    # Refused up front by the settings' bound on --size (not "zero area" after the work).
    assert "zero area" not in line and "size" in line and "1e+300" in line
    assert not (tmp_path / "big.step").exists()


def test_one_format_out_of_range_writes_none_of_the_set(tmp_path, capsys, mesh_files):
    """GLB can't hold 5e38 m but OBJ could: the plan refuses before the OBJ is written."""
    source = tmp_path / "big.obj"
    write_obj(source, scaled_cube(1e39))
    code, _, err = run_cli(
        capsys, "export", "--in", source, "--out", tmp_path / "a.obj", "--out", tmp_path / "a.glb"
    )
    assert code == 1 and "float32" in one_error_line(err)
    assert not (tmp_path / "a.obj").exists() and not (tmp_path / "a.mtl").exists()


@pytest.mark.parametrize(
    "vertices, faces, message",
    [
        ([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
        ([[0, 0, 0], [1, 0, 0], [np.inf, 1, 0]], [[0, 1, 2]], "NaN or infinite"),
        (np.eye(3), [[0, 1, 3]], "face indices run from 0 to 3"),
        (np.eye(3), [[0, -1, 2]], "face indices run from -1 to 2"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_broken_arrays_never_reach_a_writer(tmp_path, vertices, faces, message, fmt):
    with pytest.raises(MeshInputError, match=message):
        export_mesh(MeshData(vertices, faces), tmp_path / f"m.{fmt}")
    assert list(tmp_path.iterdir()) == []


def test_nan_colours_are_refused(tmp_path):
    mesh = cube(colors=True)
    mesh.colors[0, 0] = np.nan
    with pytest.raises(MeshInputError, match="colours are NaN"):
        export_mesh(mesh, tmp_path / "m.glb")


# --- GLB files that break the spec -------------------------------------------


def glb_parts(mesh: MeshData | None = None) -> tuple[dict, bytes]:
    from blender_img3d.core.exporters.glb import glb_bytes

    raw = glb_bytes(mesh or cube(colors=True))
    json_length = struct.unpack_from("<I", raw, 12)[0]
    document = json.loads(raw[20 : 20 + json_length])
    return document, raw[20 + json_length + 8 :]


def pack_glb(document: dict, binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _set(path: str, value):
    def edit(document: dict) -> None:
        *keys, last = path.split(".")
        target = document
        for key in keys:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return edit


BROKEN = {
    "negative byteOffset": (_set("bufferViews.1.byteOffset", -12), "byteOffset is -12"),
    "view past the buffer": (_set("bufferViews.0.byteLength", 10**6), "of a"),
    "accessor past its view": (_set("accessors.1.count", 10**5), "needs"),
    "unknown componentType": (_set("accessors.0.componentType", 1), "componentType"),
    "zero count": (_set("accessors.0.count", 0), "count is 0"),
    "index past the vertices": (_set("accessors.1.count", 3), "reaches vertex"),
    "bad buffer index": (_set("bufferViews.0.buffer", 7), "buffer is 7"),
    "buffer longer than BIN": (_set("buffers.0.byteLength", 10**6), "BIN chunk"),
    "node cycle": (_set("nodes.0.children", [0]), "own ancestor"),
    "bad mesh index": (_set("nodes.0.mesh", 5), "mesh is 5"),
    "not glTF 2": (_set("asset.version", "1.0"), "asset.version"),
    "signed indices": (_set("accessors.0.componentType", 5122), "unsigned integer"),
    "stride not a multiple of 4": (_set("bufferViews.1.byteStride", 13), "byteStride"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_glb_spec_violations_are_refused_before_trimesh(tmp_path, case):
    edit, message = BROKEN[case]
    document, binary = glb_parts()
    if case == "index past the vertices":
        # Shrink POSITION (and its siblings) to 3 vertices while indices reach 7.
        for name, index in document["meshes"][0]["primitives"][0]["attributes"].items():
            document["accessors"][index]["count"] = 3
            document["accessors"][index].pop("min", None)
            document["accessors"][index].pop("max", None)
    else:
        edit(document)
    path = tmp_path / "bad.glb"
    path.write_bytes(pack_glb(document, binary))
    before = path.read_bytes()
    with pytest.raises(MeshInputError, match="not a valid GLB file") as info:
        read_mesh(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before


def test_an_intact_glb_passes_the_strict_check():
    document, binary = glb_parts()
    assert check_gltf_bytes(pack_glb(document, binary))["asset"]["version"] == "2.0"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "shorter than a GLB header"),
        (b"glTF" + struct.pack("<II", 1, 20) + b"\0" * 8, "container version 1"),
        (b"glTF" + struct.pack("<II", 2, 99) + b"\0" * 8, "the header says 99 bytes"),
        (b"glTF" + struct.pack("<II", 2, 24) + struct.pack("<II", 4, 0x4E4F534A) + b"[]  ",
         "not an object"),
        (b"glTF" + struct.pack("<II", 2, 24) + struct.pack("<II", 400, 0x4E4F534A) + b"{}  ",
         "runs past the end"),
    ],
)  # fmt: skip
def test_damaged_glb_containers(data, message):
    with pytest.raises(MeshInputError, match=message):
        check_gltf_bytes(data)


# --- the validation's edges (cases the mutation run showed missing) ---------------


def test_the_message_counts_the_bad_vertices():
    from blender_img3d.core.mesh.validate import check_mesh

    mesh = MeshData([[np.nan, 0, 0], [0, np.inf, 0], [0, 0, 1]], [[0, 1, 2]])
    with pytest.raises(MeshInputError, match="2 of its 3 vertices"):
        check_mesh(mesh, "export")
    with pytest.raises(MeshInputError, match="1 of its 1 vertices"):
        check_mesh(MeshData([[np.nan, 0, 0]], [[0, 0, 0]]), "export")


def test_limits_are_inclusive():
    from blender_img3d.core.mesh.validate import FLOAT32_MAX, WORKING_LIMIT, check_for_format

    at_limit = MeshData([[WORKING_LIMIT, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 1, 2]])
    check_for_format(at_limit, "obj")
    check_for_format(at_limit, "step", 1.0, "m")
    with pytest.raises(MeshInputError):
        check_for_format(at_limit, "step", 1.0000001, "m")
    glb_edge = MeshData([[FLOAT32_MAX, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 1, 2]])
    check_for_format(glb_edge, "glb")
    with pytest.raises(MeshInputError, match="float32"):
        check_for_format(glb_edge, "glb", 1.0001)


def test_an_empty_mesh_is_left_to_the_writer_whose_message_knows_why():
    from blender_img3d.core.mesh.validate import check_for_format, check_mesh

    no_faces = MeshData([[np.nan, 0, 0]], np.zeros((0, 3)))
    check_mesh(no_faces)
    check_for_format(no_faces, "glb")
    one_face = MeshData([[1e300, 0, 0]], [[0, 0, 0]])
    with pytest.raises(MeshInputError, match="1e\\+300"):
        check_for_format(one_face, "dxf", 1.0, "m")
