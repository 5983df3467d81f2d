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
    no_vertices = MeshData(np.zeros((0, 3)), [[0, 1, 2]])
    check_mesh(no_vertices)
    check_for_format(no_vertices, "step", 1000.0, "mm")
    one_face = MeshData([[1e300, 0, 0]], [[0, 0, 0]])
    with pytest.raises(MeshInputError, match="1e\\+300"):
        check_for_format(one_face, "dxf", 1.0, "m")


# --- one case per glTF rule, with the exact words the user reads --------------------
# Each builds the cube's GLB, breaks one rule (or sits exactly on its edge) and
# checks the problem named inside "... not a valid GLB file (PROBLEM); re-export ...".


def _glb_with(*edits, binary_tail: bytes = b"") -> bytes:
    document, binary = glb_parts()
    for edit in edits:
        edit(document)
    return pack_glb(document, binary + binary_tail)


def _chunk(kind: int, payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), kind) + payload


def _container(*chunks: bytes) -> bytes:
    body = b"".join(chunks)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


JSON_CHUNK, BIN_CHUNK = 0x4E4F534A, 0x004E4942


def _padded(text: bytes, pad: bytes) -> bytes:
    return text + pad * (-len(text) % 4 + 4)


def _shifted_views(by: int) -> bytes:
    """The cube's GLB with ``by`` bytes of 0xFF before its data: every view starts later."""
    document, binary = glb_parts()
    for view in document["bufferViews"]:
        view["byteOffset"] = view.get("byteOffset", 0) + by
    document["buffers"][0]["byteLength"] += by
    return pack_glb(document, b"\xff" * by + binary)


def _with_u32_indices(indices) -> bytes:
    """The cube's GLB whose 72-byte index view holds 18 little-endian uint32 indices."""
    document, binary = glb_parts()
    document["accessors"][0].update(componentType=5125, count=len(indices))
    return pack_glb(document, np.asarray(indices, "<u4").tobytes() + binary[72:])


def _problem(data: bytes, glb: bool = True, folder=None) -> str:
    kind = "GLB" if glb else "glTF"
    with pytest.raises(MeshInputError) as info:
        check_gltf_bytes(data, glb=glb, name="m", folder=folder)
    head = f"Can't read m: the file is damaged or not a valid {kind} file ("
    tail = "); re-export it from the program that made it."
    message = str(info.value)
    assert message.startswith(head) and message.endswith(tail), message
    return message[len(head) : -len(tail)]


def _add(path: str, item):
    def edit(document: dict) -> None:
        document.setdefault(path, []).append(item)

    return edit


def _pop(path: str):
    def edit(document: dict) -> None:
        *keys, last = path.split(".")
        target = document
        for key in keys:
            target = target[int(key)] if key.isdigit() else target[key]
        del target[int(last) if last.isdigit() else last]

    return edit


PRIMITIVE = "meshes.0.primitives.0"
GLB_RULES = {
    # the container
    "4 bytes": (lambda: b"glTF", "4 bytes is shorter than a GLB header and one chunk"),
    "wrong magic": (
        lambda: b"glTX" + _glb_with()[4:],
        "it doesn't start with the GLB magic 'glTF'",
    ),
    "version 3": (
        lambda: b"glTF" + struct.pack("<I", 3) + _glb_with()[8:],
        "GLB container version 3, only 2 is glTF 2.0",
    ),
    "length one short": (
        lambda: _glb_with()[:8] + struct.pack("<I", len(_glb_with()) - 1) + _glb_with()[12:],
        f"the header says {len(_glb_with()) - 1} bytes, the file has {len(_glb_with())}",
    ),
    "length past 2**31": (
        lambda: _glb_with()[:8] + struct.pack("<I", 2**32 - 4) + _glb_with()[12:],
        f"the header says {2**32 - 4} bytes, the file has {len(_glb_with())}",
    ),
    "chunk length past 2**31": (
        lambda: _container(struct.pack("<II", 2**32 - 16, JSON_CHUNK) + b"{}  "),
        f"a chunk of {2**32 - 16} bytes at byte 12 runs past the end",
    ),
    "chunk header cut": (
        lambda: _container(_chunk(JSON_CHUNK, b"{}  "), b"\0\0\0\0"),
        "a chunk header at byte 24 runs past the end",
    ),
    "chunk body cut": (
        lambda: _container(struct.pack("<II", 8, JSON_CHUNK) + b"{}  "),
        "a chunk of 8 bytes at byte 12 runs past the end",
    ),
    "unpadded chunk": (
        lambda: _container(_chunk(JSON_CHUNK, b"{}")),
        "chunk length 2 is not a multiple of 4",
    ),
    "BIN first": (
        lambda: _container(_chunk(BIN_CHUNK, b"\0" * 4), _chunk(JSON_CHUNK, b"{}  ")),
        "the first chunk is not the JSON chunk",
    ),
    "two JSON chunks": (
        lambda: _container(_chunk(JSON_CHUNK, b"{}  "), _chunk(JSON_CHUNK, b"{}  ")),
        "more than one JSON or BIN chunk, or a BIN chunk out of place",
    ),
    "BIN after another chunk": (
        lambda: _container(
            _chunk(JSON_CHUNK, b"{}  "), _chunk(7, b"\0" * 4), _chunk(BIN_CHUNK, b"")
        ),
        "more than one JSON or BIN chunk, or a BIN chunk out of place",
    ),
    "not UTF-8": (
        lambda: _container(_chunk(JSON_CHUNK, b"\xff\xfe  ")),
        "its JSON can't be parsed: UnicodeDecodeError",
    ),
    "not JSON": (
        lambda: _container(_chunk(JSON_CHUNK, b"{x  ")),
        "its JSON can't be parsed: JSONDecodeError",
    ),
    "JSON nested too deep": (
        lambda: _container(_chunk(JSON_CHUNK, b"[" * 100_000 + b"]" * 100_000)),
        "its JSON can't be parsed: RecursionError",
    ),
    "JSON a string": (lambda: _container(_chunk(JSON_CHUNK, b'"a" ')), "its JSON is not an object"),
    # the document
    "no asset": (lambda: _glb_with(_pop("asset")), "asset.version is None, not a glTF 2.x version"),
    "asset a list": (
        lambda: _glb_with(_set("asset", [])),
        "asset.version is None, not a glTF 2.x version",
    ),
    "version a number": (
        lambda: _glb_with(_set("asset.version", 2)),
        "asset.version is 2, not a glTF 2.x version",
    ),
    "buffers an object": (
        lambda: _glb_with(_set("buffers", {})),
        "'buffers' is not an array of objects",
    ),
    "nodes holding a number": (
        lambda: _glb_with(_set("nodes", [3])),
        "'nodes' is not an array of objects",
    ),
    # buffers
    "buffer length 0": (
        lambda: _glb_with(_set("buffers.0.byteLength", 0)),
        "buffers[0].byteLength is 0, must be >= 1",
    ),
    "buffer length a float": (
        lambda: _glb_with(_set("buffers.0.byteLength", 360.0)),
        "buffers[0].byteLength is 360.0, not an integer",
    ),
    "second buffer without uri": (
        lambda: _glb_with(_add("buffers", {"byteLength": 4})),
        "buffers[1] has no uri and there is no BIN chunk for it",
    ),
    "no BIN chunk": (
        lambda: _container(_chunk(JSON_CHUNK, json.dumps(glb_parts()[0]).encode() + b" " * 3)),
        "buffers[0] has no uri and there is no BIN chunk for it",
    ),
    "BIN 4 bytes longer": (
        lambda: _glb_with(binary_tail=b"\0" * 4),
        "buffers[0].byteLength 360 doesn't match the 364-byte BIN chunk",
    ),
    "BIN shorter": (
        lambda: _glb_with(_set("buffers.0.byteLength", 361)),
        "buffers[0].byteLength 361 doesn't match the 360-byte BIN chunk",
    ),
    "uri a number": (lambda: _glb_with(_set("buffers.0.uri", 5)), "buffers[0].uri is not a string"),
    "bad base64": (
        lambda: _glb_with(_set("buffers.0.uri", "data:application/octet-stream;base64,@@@@")),
        "buffers[0].uri holds invalid base64",
    ),
    "short data uri": (
        lambda: _glb_with(_set("buffers.0.uri", "data:,abc")),
        "buffers[0] declares 360 bytes but its data has 3",
    ),
    "missing external buffer": (
        lambda: _glb_with(_set("buffers.0.uri", "missing.bin")),
        "buffers[0] refers to 'missing.bin', which is not beside the file",
    ),
    # buffer views
    "view past the buffer": (
        lambda: _glb_with(_set("bufferViews.3.byteLength", 97)),
        "bufferViews[3] spans bytes 264..361 of a 360-byte buffer",
    ),
    "view of length 0": (
        lambda: _glb_with(_set("bufferViews.3.byteLength", 0)),
        "bufferViews[3].byteLength is 0, must be >= 1",
    ),
    "view buffer True": (
        lambda: _glb_with(_set("bufferViews.0.buffer", True)),
        "bufferViews[0].buffer is True, but there are 1 buffers",
    ),
    "view buffer -1": (
        lambda: _glb_with(_set("bufferViews.0.buffer", -1)),
        "bufferViews[0].buffer is -1, but there are 1 buffers",
    ),
    "view buffer 1 of 1": (
        lambda: _glb_with(_set("bufferViews.0.buffer", 1)),
        "bufferViews[0].buffer is 1, but there are 1 buffers",
    ),
    "stride 2": (
        lambda: _glb_with(_add("bufferViews", {"buffer": 0, "byteLength": 4, "byteStride": 2})),
        "bufferViews[4].byteStride is 2, must be in 4..252",
    ),
    "stride 256": (
        lambda: _glb_with(_add("bufferViews", {"buffer": 0, "byteLength": 4, "byteStride": 256})),
        "bufferViews[4].byteStride is 256, must be in 4..252",
    ),
    "stride 14": (
        lambda: _glb_with(_set("bufferViews.1.byteStride", 14)),
        "bufferViews[1].byteStride 14 is not a multiple of 4",
    ),
    # accessors
    "componentType 1": (
        lambda: _glb_with(_set("accessors.2.componentType", 1)),
        "accessors[2].componentType is 1, not a glTF component type",
    ),
    "type VEC5": (
        lambda: _glb_with(_set("accessors.2.type", "VEC5")),
        "accessors[2].type is 'VEC5', not a glTF accessor type",
    ),
    "count True": (
        lambda: _glb_with(_set("accessors.2.count", True)),
        "accessors[2].count is True, not an integer",
    ),
    "accessor offset -4": (
        lambda: _glb_with(_set("accessors.2.byteOffset", -4)),
        "accessors[2].byteOffset is -4, must be >= 0",
    ),
    "misaligned accessor": (
        lambda: _glb_with(_set("accessors.2.byteOffset", 2)),
        "accessors[2].byteOffset 2 is not a multiple of its component size 4",
    ),
    "stride narrower than the element": (
        lambda: _glb_with(_set("bufferViews.2.byteStride", 8)),
        "accessors[2]'s elements (12 bytes) are wider than the view's stride",
    ),
    "accessor one element past its view": (
        lambda: _glb_with(_set("accessors.2.byteOffset", 12)),
        "accessors[2] needs 108 bytes of bufferViews[2], which has 96",
    ),
    "strided accessor past its view": (
        lambda: _glb_with(_set("bufferViews.2.byteStride", 16)),
        "accessors[2] needs 124 bytes of bufferViews[2], which has 96",
    ),
    "accessor view 4 of 4": (
        lambda: _glb_with(_set("accessors.2.bufferView", 4)),
        "accessors[2].bufferView is 4, but there are 4 bufferViews",
    ),
    "no data at all": (
        lambda: _glb_with(_pop("accessors.2.bufferView")),
        "accessors[2] has neither a bufferView nor sparse values",
    ),
    "sparse": (
        lambda: _glb_with(_set("accessors.2.sparse", {"count": 1})),
        "accessors[2] is a sparse accessor, which mesh reading doesn't support",
    ),
    "min of 2 numbers": (
        lambda: _glb_with(_set("accessors.1.min", [0, 0])),
        "accessors[1].min is not an array of 3 numbers",
    ),
    "max holding a string": (
        lambda: _glb_with(_set("accessors.1.max", [0, "1", 0])),
        "accessors[1].max holds '1', not a number",
    ),
    "max holding true": (
        lambda: _glb_with(_set("accessors.1.max", [0, True, 0])),
        "accessors[1].max holds True, not a number",
    ),
    "max holding infinity": (
        lambda: _glb_with(_set("accessors.1.max", [0, float("inf"), 0])),
        "accessors[1].max holds a non-finite number",
    ),
    # meshes and primitives
    "no primitives": (
        lambda: _glb_with(_set("meshes.0.primitives", [])),
        "meshes[0].primitives is not a non-empty array",
    ),
    "primitives an object": (
        lambda: _glb_with(_set("meshes.0.primitives", {})),
        "meshes[0].primitives is not a non-empty array",
    ),
    "primitive a number": (
        lambda: _glb_with(_set("meshes.0.primitives", [1])),
        "meshes[0].primitives[0] is not an object",
    ),
    "mode 7": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.mode", 7)),
        "meshes[0].primitives[0].mode is 7, must be in 0..6",
    ),
    "mode -1": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.mode", -1)),
        "meshes[0].primitives[0].mode is -1, must be in 0..6",
    ),
    "no POSITION": (
        lambda: _glb_with(_pop(f"{PRIMITIVE}.attributes.POSITION")),
        "meshes[0].primitives[0] has no POSITION attribute",
    ),
    "attributes a list": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.attributes", ["POSITION"])),
        "meshes[0].primitives[0] has no POSITION attribute",
    ),
    "attribute index past the accessors": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.attributes.NORMAL", 4)),
        "meshes[0].primitives[0].attributes.NORMAL is 4, but there are 4 accessors",
    ),
    "attributes of different counts": (
        lambda: _glb_with(_set("accessors.3.count", 7)),
        "meshes[0].primitives[0]'s attributes have different counts",
    ),
    "POSITION of integers": (
        lambda: _glb_with(_set("accessors.1.componentType", 5125)),
        "meshes[0].primitives[0]'s POSITION is not a float VEC3 accessor",
    ),
    "POSITION a VEC2": (
        lambda: _glb_with(
            _set("accessors.1.type", "VEC2"), _pop("accessors.1.min"), _pop("accessors.1.max")
        ),
        "meshes[0].primitives[0]'s POSITION is not a float VEC3 accessor",
    ),
    "indices of floats": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.indices", 2)),
        "meshes[0].primitives[0].indices is not an unsigned integer SCALAR accessor",
    ),
    "indices past the accessors": (
        lambda: _glb_with(_set(f"{PRIMITIVE}.indices", 4)),
        "meshes[0].primitives[0].indices is 4, but there are 4 accessors",
    ),
    "strided indices": (
        lambda: _glb_with(_set("bufferViews.0.byteStride", 4), _set("accessors.0.count", 18)),
        "an index bufferView has a byteStride",
    ),
    "indices one past the last vertex": (
        lambda: _glb_with(
            _set("accessors.1.count", 7),
            _pop("accessors.1.min"),
            _pop("accessors.1.max"),
            _set("accessors.2.count", 7),
            _set("accessors.3.count", 7),
        ),  # fmt: skip
        "meshes[0].primitives[0].indices reaches vertex 7 of 7",
    ),
    "32-bit index one past the last vertex": (
        lambda: _with_u32_indices([0, 1, 2] * 5 + [0, 1, 8]),
        "meshes[0].primitives[0].indices reaches vertex 8 of 8",
    ),
    # nodes and scenes
    "node mesh 1 of 1": (
        lambda: _glb_with(_set("nodes.0.mesh", 1)),
        "nodes[0].mesh is 1, but there are 1 meshes",
    ),
    "children an object": (
        lambda: _glb_with(_set("nodes.0.children", {})),
        "nodes[0].children is not an array",
    ),
    "child past the nodes": (
        lambda: _glb_with(_set("nodes.0.children", [1])),
        "nodes[0].children is 1, but there are 1 nodes",
    ),
    "two parents": (
        lambda: _glb_with(_add("nodes", {"children": [0]}), _add("nodes", {"children": [0]})),
        "a node has more than one parent (the node hierarchy must be a forest)",
    ),
    "a cycle of three": (
        lambda: _glb_with(
            _set("nodes.0.children", [1]),
            _add("nodes", {"children": [2]}),
            _add("nodes", {"children": [0]}),
        ),
        "nodes[0] is its own ancestor (a cycle in the hierarchy)",
    ),
    "a cycle in a second tree": (
        lambda: _glb_with(
            _set("nodes.0.children", [1]),
            _add("nodes", {}),
            _add("nodes", {"children": [3]}),
            _add("nodes", {"children": [2]}),
        ),
        "nodes[2] is its own ancestor (a cycle in the hierarchy)",
    ),
    "a matrix of 12": (
        lambda: _glb_with(_set("nodes.0.matrix", [0] * 12)),
        "nodes[0].matrix is not an array of 16 numbers",
    ),
    "translation of 2": (
        lambda: _glb_with(_set("nodes.0.translation", [0, 0])),
        "nodes[0].translation is not an array of 3 numbers",
    ),
    "rotation of 3": (
        lambda: _glb_with(_set("nodes.0.rotation", [0, 0, 0])),
        "nodes[0].rotation is not an array of 4 numbers",
    ),
    "scale NaN": (
        lambda: _glb_with(_set("nodes.0.scale", [1, float("nan"), 1])),
        "nodes[0].scale holds a non-finite number",
    ),
    "scene nodes an object": (
        lambda: _glb_with(_set("scenes.0.nodes", {})),
        "scenes[0].nodes is not an array",
    ),
    "scene root past the nodes": (
        lambda: _glb_with(_set("scenes.0.nodes", [1])),
        "scenes[0].nodes is 1, but there are 1 nodes",
    ),
    "scene 1 of 1": (lambda: _glb_with(_set("scene", 1)), "scene is 1, but there are 1 scenes"),
}


@pytest.mark.parametrize("case", list(GLB_RULES))
def test_each_glb_rule_is_refused_with_its_field_named(case):
    build, problem = GLB_RULES[case]
    assert _problem(build()) == problem


GLB_EDGES = {
    "JSON padded with NULs": lambda: _container(
        _chunk(JSON_CHUNK, _padded(json.dumps(glb_parts()[0]).encode(), b"\0")),
        _chunk(BIN_CHUNK, glb_parts()[1]),
    ),
    "BIN 3 bytes of padding": lambda: _glb_with(
        _set("buffers.0.byteLength", 361), binary_tail=b"\0" * 4
    ),
    "an unknown chunk after BIN": lambda: _container(
        _chunk(JSON_CHUNK, _padded(json.dumps(glb_parts()[0]).encode(), b" ")),
        _chunk(BIN_CHUNK, glb_parts()[1]),
        _chunk(7, b"\0" * 4),
    ),
    "an empty chunk ending the file": lambda: _container(
        _chunk(JSON_CHUNK, _padded(json.dumps(glb_parts()[0]).encode(), b" ")),
        _chunk(BIN_CHUNK, glb_parts()[1]),
        _chunk(7, b""),
    ),
    "asset version 2.1": lambda: _glb_with(_set("asset.version", "2.1")),
    "view exactly filling the buffer": lambda: _glb_with(_set("bufferViews.3.byteLength", 96)),
    "stride 252 on a view of its own": lambda: _glb_with(
        _add("bufferViews", {"buffer": 0, "byteLength": 4, "byteStride": 252})
    ),
    "stride 4": lambda: _glb_with(
        _add("bufferViews", {"buffer": 0, "byteLength": 4, "byteStride": 4})
    ),
    "accessor ending on its view's last byte": lambda: _glb_with(
        _set("accessors.2.byteOffset", 12),
        _set("accessors.2.count", 7),
        _set("accessors.1.count", 7),
        _pop("accessors.1.min"),
        _pop("accessors.1.max"),
        _set("accessors.3.count", 7),
        _set(f"{PRIMITIVE}.indices", 0),
        _set("accessors.0.count", 3),
    ),  # fmt: skip
    "indices from an offset inside their view": lambda: _glb_with(
        _set("accessors.0.byteOffset", 2), _set("accessors.0.count", 35)
    ),
    "8-bit indices": lambda: _glb_with(
        _set("accessors.0.componentType", 5121), _set("accessors.0.count", 72)
    ),
    "32-bit indices": lambda: _with_u32_indices(np.arange(18) % 8),
    "every view behind 8 bytes of other data": lambda: _shifted_views(8),
    "mode 0 and mode 6": lambda: _glb_with(
        _set(f"{PRIMITIVE}.mode", 0),
        _add("meshes", {"primitives": [{"attributes": {"POSITION": 1}, "mode": 6}]}),
    ),
    "a forest of two trees": lambda: _glb_with(
        _set("nodes.0.children", [1]),
        _add("nodes", {}),
        _add("nodes", {"children": [3]}),
        _add(
            "nodes",
            {
                "matrix": [1.0] * 16,
                "rotation": [0, 0, 0, 1],
                "scale": [1, 1, 1],
                "translation": [0, 0, 0],
            },
        ),
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(GLB_EDGES))
def test_a_glb_on_the_edge_of_each_rule_passes(case):
    assert check_gltf_bytes(GLB_EDGES[case]())["asset"]["version"].startswith("2.")


def _gltf_text(document: dict) -> bytes:
    return json.dumps(document).encode()


def test_a_gltf_with_its_buffer_inline_or_beside_it(tmp_path):
    import base64

    document, binary = glb_parts()
    inline = dict(document, buffers=[{"byteLength": 360, "uri": "data:application/octet-stream;"
                                      "base64," + base64.b64encode(binary).decode()}])  # fmt: skip
    assert check_gltf_bytes(_gltf_text(inline), glb=False)["buffers"] == inline["buffers"]
    (tmp_path / "m.bin").write_bytes(binary)
    beside = dict(document, buffers=[{"byteLength": 360, "uri": "m.bin"}])
    check_gltf_bytes(_gltf_text(beside), glb=False, folder=tmp_path)
    (tmp_path / "m.bin").write_bytes(binary[:10])
    assert _problem(_gltf_text(beside), glb=False, folder=tmp_path) == (
        "buffers[0] declares 360 bytes but its data has 10"
    )
    assert _problem(b"[]", glb=False) == "its JSON is not an object"


def test_a_gltf_file_is_checked_by_its_suffix(tmp_path):
    from blender_img3d.core.mesh.gltf_check import check_gltf_file

    document, binary = glb_parts()
    (tmp_path / "m.gltf").write_bytes(_gltf_text(dict(document, buffers=[{"byteLength": 1}])))
    with pytest.raises(MeshInputError) as info:
        check_gltf_file(tmp_path / "m.gltf")
    assert str(info.value).startswith(
        f"Can't read {tmp_path / 'm.gltf'}: the file is damaged or not a valid glTF file "
        "(buffers[0] has no uri"
    )
    # An external buffer is looked for beside the file, wherever the process runs.
    (tmp_path / "data.bin").write_bytes(binary)
    beside = dict(document, buffers=[{"byteLength": len(binary), "uri": "data.bin"}])
    (tmp_path / "beside.gltf").write_bytes(_gltf_text(beside))
    check_gltf_file(tmp_path / "beside.gltf")
    (tmp_path / "m.GLB").write_bytes(pack_glb(document, binary))
    check_gltf_file(tmp_path / "m.GLB")
    with pytest.raises(MeshInputError, match=r"^Can't read .*missing.glb: No such file"):
        check_gltf_file(tmp_path / "missing.glb")


def _named(vertices, faces, name="part", colors=None) -> MeshData:
    return MeshData(np.asarray(vertices, float), np.asarray(faces), colors=colors, name=name)


TRIANGLE = [[0, 0, 0], [1, 0, 0], [0, 1, 0]]


def _bent(mesh: MeshData, **arrays) -> MeshData:
    for key, value in arrays.items():  # past MeshData's own reshaping, as a buggy step could
        setattr(mesh, key, value)
    return mesh


VALIDATION_MESSAGES = {
    "vertices (3, 2)": (
        lambda: _bent(_named(TRIANGLE, [[0, 1, 2]]), vertices=np.zeros((3, 2))),
        "Can't use mesh 'part': vertices must be (N, 3) and faces (M, 3) triangles, got (3, 2) "
        "and (1, 3).",
    ),
    "faces (1, 4)": (
        lambda: _bent(_named(TRIANGLE, [[0, 1, 2]]), faces=np.zeros((1, 4), int)),
        "Can't use mesh 'part': vertices must be (N, 3) and faces (M, 3) triangles, got (3, 3) "
        "and (1, 4).",
    ),
    "faces flat": (
        lambda: _bent(_named(TRIANGLE, [[0, 1, 2]]), faces=np.zeros(3, int)),
        "Can't use mesh 'part': vertices must be (N, 3) and faces (M, 3) triangles, got (3, 3) "
        "and (3,).",
    ),
    "vertices flat": (
        lambda: _bent(_named(TRIANGLE, [[0, 1, 2]]), vertices=np.zeros(9)),
        "Can't use mesh 'part': vertices must be (N, 3) and faces (M, 3) triangles, got (9,) "
        "and (1, 3).",
    ),
    "one NaN vertex, unnamed": (
        lambda: _named([[0, 0, np.nan], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], name=""),
        "Can't use the mesh: 1 of its 3 vertices have NaN or infinite coordinates; the mesh is "
        "corrupt: repair or regenerate it.",
    ),
    "past the working limit": (
        lambda: _named([[0, 0, -2e70], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]),
        "Can't use mesh 'part': a coordinate reaches 2e+70 m, beyond the 1e+70 m that mesh "
        "arithmetic keeps finite; scale it down (e.g. --size) first.",
    ),
    "negative index": (
        lambda: _named(TRIANGLE, [[0, 1, -1]]),
        "Can't use mesh 'part': face indices run from -1 to 1 but there are 3 vertices; the "
        "mesh is corrupt.",
    ),
    "index = vertex count": (
        lambda: _named(TRIANGLE, [[0, 1, 3]]),
        "Can't use mesh 'part': face indices run from 0 to 3 but there are 3 vertices; the "
        "mesh is corrupt.",
    ),
    "infinite colour": (
        lambda: _named(TRIANGLE, [[0, 1, 2]], colors=[[0, 0, 0], [1, 1, 1], [np.inf, 0, 0]]),
        "Can't use mesh 'part': some vertex colours are NaN or infinite; the mesh is corrupt: "
        "repair or regenerate it.",
    ),
}


@pytest.mark.parametrize("case", list(VALIDATION_MESSAGES))
def test_each_array_refusal_reads_exactly(case):
    from blender_img3d.core.mesh.validate import check_mesh

    build, message = VALIDATION_MESSAGES[case]
    with pytest.raises(MeshInputError) as info:
        check_mesh(build())
    assert str(info.value) == message


def test_each_format_refusal_reads_exactly(monkeypatch):
    from blender_img3d.core.mesh import validate

    far = _named([[0, 0, 1e68], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    with pytest.raises(MeshInputError) as info:
        validate.check_for_format(far, "dxf", 1000.0, "mm")
    assert str(info.value) == (
        "Can't export mesh 'part' as DXF: a coordinate reaches 1e+71 mm, beyond the 1e+70 mm "
        "the exporter's arithmetic can hold; scale the mesh down (e.g. --size) or choose a "
        "larger unit."
    )
    with pytest.raises(MeshInputError, match="reaches 1e\\+71 mm"):  # a mirrored scale too
        validate.check_for_format(far, "step", -1000.0, "mm")
    validate.check_for_format(far, "step")  # metres by default: 1e68 fits
    wide = _named([[0, 0, 1e38], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    with pytest.raises(MeshInputError) as info:
        validate.check_for_format(wide, "glb", 10.0)
    assert str(info.value) == (
        "Can't export mesh 'part' as GLB: a coordinate reaches 1e+39 m, beyond the 3.4e+38 m "
        "GLB stores float32 positions can hold; scale the mesh down (e.g. --size)."
    )
    with pytest.raises(MeshInputError) as info:
        validate.check_for_format(_named([[0, 0, np.nan]] + TRIANGLE, [[1, 2, 3]]), "obj")
    assert str(info.value).startswith("Can't export mesh 'part' as OBJ: 1 of its 4 vertices")
    monkeypatch.setattr(validate, "MAX_GLB_VERTICES", 2)  # 2**32 - 1 vertices won't fit a test
    with pytest.raises(MeshInputError) as info:
        validate.check_for_format(_named(TRIANGLE, [[0, 1, 2]]), "glb")
    assert str(info.value) == (
        "Can't export mesh 'part' as GLB: 3 vertices are more than 32-bit indices address; "
        "decimate it (--target-faces)."
    )
    validate.check_for_format(_named(TRIANGLE, [[0, 1, 2]]), "obj")  # the limit is GLB's only
    monkeypatch.setattr(validate, "MAX_GLB_VERTICES", 3)
    validate.check_for_format(_named(TRIANGLE, [[0, 1, 2]]), "glb")  # exactly at the limit
