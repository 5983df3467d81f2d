"""Strict structural checks of a glTF 2.0 file before any parser reads its buffers.

trimesh trusts a file's offsets and lengths: a negative ``bufferView.byteOffset``
reads bytes from the end of the buffer, an accessor longer than its view reads
its neighbour's data, and what comes out is exported as garbage with exit 0.
These checks follow the glTF 2.0 specification (GLB header and chunks; buffers,
bufferViews, accessors, mesh primitives, nodes, scenes) and refuse a file that
breaks one as :class:`MeshInputError` naming the first offending field, so a
damaged file is reported instead of silently converted. Values inside the
buffers (indices, positions) are checked too where garbage would pass unseen:
every index must address an existing vertex.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import MeshInputError

_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_INDEX_TYPES = {5121: "<u1", 5123: "<u2", 5125: "<u4"}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


class _SpecError(Exception):
    """One broken rule, as the message's tail."""


def check_gltf_file(path: Union[str, os.PathLike]) -> None:
    """Check the .glb or .gltf at ``path``; :class:`MeshInputError` if it breaks the spec."""
    source = Path(os.fspath(path))
    try:
        data = source.read_bytes()
    except OSError as error:
        raise MeshInputError(f"Can't read {source}: {error.strerror or error}.") from error
    check_gltf_bytes(
        data, glb=source.suffix.lower() == ".glb", name=str(source), folder=source.parent
    )


def check_gltf_bytes(
    data: bytes, *, glb: bool = True, name: str = "the file", folder: Optional[Path] = None
) -> dict[str, Any]:
    """Check a whole glTF file given as bytes; return its JSON document when it is sound.

    ``folder`` resolves external buffer URIs (their length is checked when they exist).
    """
    try:
        if glb:
            document, binary = _split_glb(data)
        else:
            document, binary = _parse_json(data), None
        _check_document(document, binary, folder)
    except _SpecError as problem:
        kind = "GLB" if glb else "glTF"
        raise MeshInputError(
            f"Can't read {name}: the file is damaged or not a valid {kind} file ({problem}); "
            "re-export it from the program that made it."
        ) from None
    return document


def _split_glb(data: bytes) -> tuple[dict[str, Any], Optional[bytes]]:
    if len(data) < 20:
        raise _SpecError(f"{len(data)} bytes is shorter than a GLB header and one chunk")
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != _MAGIC:
        raise _SpecError("it doesn't start with the GLB magic 'glTF'")
    if version != 2:
        raise _SpecError(f"GLB container version {version}, only 2 is glTF 2.0")
    if length != len(data):
        raise _SpecError(f"the header says {length} bytes, the file has {len(data)}")
    offset, chunks = 12, []
    while offset < length:
        if offset + 8 > length:
            raise _SpecError(f"a chunk header at byte {offset} runs past the end")
        chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
        start = offset + 8
        if start + chunk_length > length:
            raise _SpecError(f"a chunk of {chunk_length} bytes at byte {offset} runs past the end")
        if chunk_length % 4:
            raise _SpecError(f"chunk length {chunk_length} is not a multiple of 4")
        chunks.append((chunk_type, data[start : start + chunk_length]))
        offset = start + chunk_length
    if not chunks or chunks[0][0] != _CHUNK_JSON:
        raise _SpecError("the first chunk is not the JSON chunk")
    binary = None
    if len(chunks) > 1 and chunks[1][0] == _CHUNK_BIN:
        binary = chunks[1][1]
    if sum(1 for kind, _ in chunks if kind in (_CHUNK_JSON, _CHUNK_BIN)) > 1 + (binary is not None):
        raise _SpecError("more than one JSON or BIN chunk, or a BIN chunk out of place")
    return _parse_json(chunks[0][1]), binary


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw.decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _SpecError(f"its JSON can't be parsed: {type(error).__name__}") from None
    if not isinstance(document, dict):
        raise _SpecError("its JSON is not an object")
    return document


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _SpecError(f"'{key}' is not an array of objects")
    return value


def _int(where: str, value: Any, low: int = 0, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _SpecError(f"{where} is {value!r}, not an integer")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise _SpecError(f"{where} is {value}, must be {bound}")
    return value


def _index(where: str, value: Any, items: list[Any], what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(items):
        raise _SpecError(f"{where} is {value!r}, but there are {len(items)} {what}")
    return value


def _check_document(document: dict[str, Any], binary: Optional[bytes], folder: Optional[Path]):
    asset = document.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if not isinstance(version, str) or not version.startswith("2."):
        raise _SpecError(f"asset.version is {version!r}, not a glTF 2.x version")
    buffers = _list(document, "buffers")
    views = _list(document, "bufferViews")
    accessors = _list(document, "accessors")
    meshes = _list(document, "meshes")
    nodes = _list(document, "nodes")
    scenes = _list(document, "scenes")

    buffer_bytes = [_buffer_length(i, b, binary, folder) for i, b in enumerate(buffers)]
    for i, view in enumerate(views):
        where = f"bufferViews[{i}]"
        buffer = _index(f"{where}.buffer", view.get("buffer"), buffers, "buffers")
        offset = _int(f"{where}.byteOffset", view.get("byteOffset", 0))
        length = _int(f"{where}.byteLength", view.get("byteLength"), 1)
        if offset + length > buffer_bytes[buffer]:
            raise _SpecError(
                f"{where} spans bytes {offset}..{offset + length} of a {buffer_bytes[buffer]}-byte "
                "buffer"
            )
        if "byteStride" in view:
            stride = _int(f"{where}.byteStride", view["byteStride"], 4, 252)
            if stride % 4:
                raise _SpecError(f"{where}.byteStride {stride} is not a multiple of 4")

    counts = [_check_accessor(i, a, views) for i, a in enumerate(accessors)]
    for m, mesh in enumerate(meshes):
        primitives = mesh.get("primitives")
        if not isinstance(primitives, list) or not primitives:
            raise _SpecError(f"meshes[{m}].primitives is not a non-empty array")
        for p, primitive in enumerate(primitives):
            _check_primitive(f"meshes[{m}].primitives[{p}]", primitive, accessors, counts, views,
                             buffers, binary, folder)  # fmt: skip
    parents = [0] * len(nodes)
    for n, node in enumerate(nodes):
        if "mesh" in node:
            _index(f"nodes[{n}].mesh", node["mesh"], meshes, "meshes")
        children = node.get("children", [])
        if not isinstance(children, list):
            raise _SpecError(f"nodes[{n}].children is not an array")
        for child in children:
            parents[_index(f"nodes[{n}].children", child, nodes, "nodes")] += 1
        for key, size in (("matrix", 16), ("translation", 3), ("rotation", 4), ("scale", 3)):
            if key in node:
                _check_numbers(f"nodes[{n}].{key}", node[key], size)
    if any(count > 1 for count in parents):
        raise _SpecError("a node has more than one parent (the node hierarchy must be a forest)")
    _check_acyclic(nodes)
    for s, scene in enumerate(scenes):
        roots = scene.get("nodes", [])
        if not isinstance(roots, list):
            raise _SpecError(f"scenes[{s}].nodes is not an array")
        for root in roots:
            _index(f"scenes[{s}].nodes", root, nodes, "nodes")
    if "scene" in document:
        _index("scene", document["scene"], scenes, "scenes")


def _buffer_length(i: int, buffer: dict[str, Any], binary, folder) -> int:
    where = f"buffers[{i}]"
    length = _int(f"{where}.byteLength", buffer.get("byteLength"), 1)
    uri = buffer.get("uri")
    if uri is None:
        if i != 0 or binary is None:
            raise _SpecError(f"{where} has no uri and there is no BIN chunk for it")
        # The BIN chunk is padded to 4 bytes; the buffer may be up to 3 bytes shorter.
        if not length <= len(binary) <= length + 3:
            raise _SpecError(
                f"{where}.byteLength {length} doesn't match the {len(binary)}-byte BIN chunk"
            )
        return length
    if not isinstance(uri, str):
        raise _SpecError(f"{where}.uri is not a string")
    if uri.startswith("data:"):
        head, _, payload = uri.partition(",")
        try:
            actual = (
                len(base64.b64decode(payload, validate=True)) if ";base64" in head else len(payload)
            )
        except ValueError:
            raise _SpecError(f"{where}.uri holds invalid base64") from None
    else:
        target = (folder or Path(".")) / uri
        if not target.is_file():
            raise _SpecError(f"{where} refers to {uri!r}, which is not beside the file")
        actual = target.stat().st_size
    if actual < length:
        raise _SpecError(f"{where} declares {length} bytes but its data has {actual}")
    return length


def _check_accessor(i: int, accessor: dict[str, Any], views: list[Any]) -> int:
    where = f"accessors[{i}]"
    component = accessor.get("componentType")
    if component not in _COMPONENT_BYTES:
        raise _SpecError(f"{where}.componentType is {component!r}, not a glTF component type")
    kind = accessor.get("type")
    if kind not in _TYPE_COMPONENTS:
        raise _SpecError(f"{where}.type is {kind!r}, not a glTF accessor type")
    count = _int(f"{where}.count", accessor.get("count"), 1)
    offset = _int(f"{where}.byteOffset", accessor.get("byteOffset", 0))
    size = _COMPONENT_BYTES[component]
    if offset % size:
        raise _SpecError(
            f"{where}.byteOffset {offset} is not a multiple of its component size {size}"
        )
    element = size * _TYPE_COMPONENTS[kind]
    if "bufferView" in accessor:
        view = views[_index(f"{where}.bufferView", accessor["bufferView"], views, "bufferViews")]
        stride = view.get("byteStride", element)
        if stride < element:
            raise _SpecError(
                f"{where}'s elements ({element} bytes) are wider than the view's stride"
            )
        end = offset + stride * (count - 1) + element
        if end > view["byteLength"]:
            raise _SpecError(
                f"{where} needs {end} bytes of bufferViews[{accessor['bufferView']}], which has "
                f"{view['byteLength']}"
            )
    elif "sparse" not in accessor:
        raise _SpecError(f"{where} has neither a bufferView nor sparse values")
    if "sparse" in accessor:
        raise _SpecError(f"{where} is a sparse accessor, which mesh reading doesn't support")
    for key in ("min", "max"):
        if key in accessor:
            _check_numbers(f"{where}.{key}", accessor[key], _TYPE_COMPONENTS[kind])
    return count


def _check_primitive(where, primitive, accessors, counts, views, buffers, binary, folder) -> None:
    if not isinstance(primitive, dict):
        raise _SpecError(f"{where} is not an object")
    mode = primitive.get("mode", 4)
    _int(f"{where}.mode", mode, 0, 6)
    attributes = primitive.get("attributes")
    if not isinstance(attributes, dict) or "POSITION" not in attributes:
        raise _SpecError(f"{where} has no POSITION attribute")
    vertex_count = None
    for name, value in attributes.items():
        index = _index(f"{where}.attributes.{name}", value, accessors, "accessors")
        if vertex_count is not None and counts[index] != vertex_count:
            raise _SpecError(f"{where}'s attributes have different counts")
        vertex_count = counts[index]
    position = accessors[attributes["POSITION"]]
    if position.get("type") != "VEC3" or position.get("componentType") != 5126:
        raise _SpecError(f"{where}'s POSITION is not a float VEC3 accessor")
    if "indices" in primitive:
        index = _index(f"{where}.indices", primitive["indices"], accessors, "accessors")
        accessor = accessors[index]
        dtype = _INDEX_TYPES.get(accessor.get("componentType"))
        if accessor.get("type") != "SCALAR" or dtype is None:
            raise _SpecError(f"{where}.indices is not an unsigned integer SCALAR accessor")
        values = _read(accessor, views, buffers, binary, folder, dtype)
        if values is not None and len(values) and int(values.max()) >= vertex_count:
            raise _SpecError(
                f"{where}.indices reaches vertex {int(values.max())} of {vertex_count}"
            )


def _read(accessor, views, buffers, binary, folder, dtype) -> Optional[np.ndarray]:
    """An index accessor's values (tightly packed, as the spec requires for indices)."""
    view = views[accessor["bufferView"]]
    if view.get("byteStride") not in (None, np.dtype(dtype).itemsize):
        raise _SpecError("an index bufferView has a byteStride")
    buffer_index = view["buffer"]
    if buffer_index != 0 or buffers[0].get("uri") is not None or binary is None:
        return None  # external data: trimesh reports unreadable files itself
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    return np.frombuffer(binary, dtype=dtype, count=accessor["count"], offset=start)


def _check_numbers(where: str, value: Any, size: int) -> None:
    if not isinstance(value, list) or len(value) != size:
        raise _SpecError(f"{where} is not an array of {size} numbers")
    for number in value:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise _SpecError(f"{where} holds {number!r}, not a number")
        if not np.isfinite(number):
            raise _SpecError(f"{where} holds a non-finite number")


def _check_acyclic(nodes: list[dict[str, Any]]) -> None:
    state = [0] * len(nodes)  # 0 new, 1 on the path, 2 done
    for start in range(len(nodes)):
        if state[start]:
            continue
        stack = [(start, iter(nodes[start].get("children", [])))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state[child] == 1:
                raise _SpecError(f"nodes[{child}] is its own ancestor (a cycle in the hierarchy)")
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(nodes[child].get("children", []))))
