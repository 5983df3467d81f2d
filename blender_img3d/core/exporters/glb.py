"""glTF 2.0 binary (.glb) writer: our own struct + numpy code, checked by the Khronos validator.

Layout: a 12-byte header, a JSON chunk padded with spaces and a BIN chunk padded
with zeros (both to 4 bytes), one buffer holding tightly packed bufferViews
(each starting on a 4-byte boundary) for indices, positions, normals and colours.
glTF is Y-up and in metres, so coordinates are swapped (x, y, z) -> (x, z, -y), as
Blender's own glTF exporter does, and never scaled. Colours go to ``COLOR_0`` in
linear light, as the spec requires, under a white material they multiply.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..colorspace import srgb_to_linear
from ..mesh.meshdata import MeshData
from ..mesh.placement import z_up_to_y_up
from .atomic import PathLike, atomic_write
from .geometry import checked_arrays, vertex_normals
from .metadata import generator_name, json_safe
from .options import refuse_unknown

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A  # "JSON"
_CHUNK_BIN = 0x004E4942  # "BIN\0"
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT = 5126
_UNSIGNED_SHORT = 5123
_UNSIGNED_INT = 5125
_TRIANGLES = 4
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE, _REPEAT = 9729, 9987, 33071, 10497
# uint16 indices may not use 65535: the validator reserves it for primitive restart.
_MAX_UINT16_INDEX = 65534


def write_glb(mesh: MeshData, path: PathLike, **options: Any) -> Path:
    """Write ``mesh`` as a .glb file at ``path`` (atomically) and return the path.

    Options: ``double_sided`` (bool, default: False) for meshes with holes seen from
    both sides; ``extras`` (dict) merged into ``asset.extras`` beside the settings
    (e.g. the metrics); ``texture`` (a ``core.mesh.bake.BakedTexture`` of this
    mesh) to carry a base-colour texture instead of vertex colours. Length units
    are ignored: glTF is always in metres.
    """
    refuse_unknown("write_glb", options, ("double_sided", "units", "extras", "texture"))
    double_sided = bool(options.get("double_sided", False))
    extras = dict(options.get("extras") or {})
    texture = options.get("texture")
    if texture is not None:
        mesh = texture.mesh
    data = glb_bytes(mesh, double_sided=double_sided, extras=extras, texture=texture)
    with atomic_write(path, "wb") as stream:
        stream.write(data)
    return Path(path)


def glb_bytes(
    mesh: MeshData,
    *,
    double_sided: bool = False,
    extras: dict[str, Any] | None = None,
    texture: Any = None,
) -> bytes:
    """The complete .glb file for ``mesh`` as bytes (``texture``: see :func:`write_glb`)."""
    if texture is not None:
        mesh = texture.mesh
    vertices, faces, colors = checked_arrays(mesh)
    if texture is not None:
        colors = None  # the texture carries the colour; COLOR_0 would multiply it again
    normals = vertex_normals(vertices, faces)
    positions = z_up_to_y_up(vertices).astype("<f4")
    normals = z_up_to_y_up(normals).astype("<f4")
    # float32 rounding can leave a unit vector a hair off unit length; renormalise in float32.
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if len(vertices) - 1 <= _MAX_UINT16_INDEX:
        indices, index_type = faces.astype("<u2"), _UNSIGNED_SHORT
    else:
        indices, index_type = faces.astype("<u4"), _UNSIGNED_INT

    blobs: list[bytes] = []
    buffer_views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []
    offset = 0

    def add_view(array: Any, target: int | None) -> int:
        nonlocal offset
        raw = array if isinstance(array, bytes) else np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(raw)}
        if target is not None:  # image data is no vertex or index buffer
            view["target"] = target
        buffer_views.append(view)
        padding = -len(raw) % 4
        blobs.append(raw + b"\0" * padding)
        offset += len(raw) + padding
        return len(buffer_views) - 1

    def add_accessor(array: np.ndarray, component: int, kind: str, target: int, **extra) -> int:
        view = add_view(array, target)
        accessors.append(
            {
                "bufferView": view,
                "componentType": component,
                "count": int(len(array)),
                "type": kind,
                **extra,
            }
        )
        return len(accessors) - 1

    index_accessor = add_accessor(indices.reshape(-1), index_type, "SCALAR", _ELEMENT_ARRAY_BUFFER)
    attributes = {
        "POSITION": add_accessor(
            positions,
            _FLOAT,
            "VEC3",
            _ARRAY_BUFFER,
            min=[float(x) for x in positions.min(axis=0)],
            max=[float(x) for x in positions.max(axis=0)],
        ),
        "NORMAL": add_accessor(normals, _FLOAT, "VEC3", _ARRAY_BUFFER),
    }
    if colors is not None:
        linear = np.clip(srgb_to_linear(colors), 0.0, 1.0).astype("<f4")
        attributes["COLOR_0"] = add_accessor(linear, _FLOAT, "VEC3", _ARRAY_BUFFER)

    material_extra: dict[str, Any] = {}
    texture_parts: dict[str, Any] = {}
    if texture is not None:
        attributes["TEXCOORD_0"] = add_accessor(
            np.asarray(texture.uvs, dtype="<f4"), _FLOAT, "VEC2", _ARRAY_BUFFER
        )
        image_view = add_view(texture.png_bytes(), None)
        wrap = _REPEAT if getattr(texture, "repeat", False) else _CLAMP_TO_EDGE
        texture_parts = {
            "images": [{"bufferView": image_view, "mimeType": "image/png"}],
            "samplers": [
                {
                    "magFilter": _LINEAR,
                    "minFilter": _LINEAR_MIPMAP_LINEAR,
                    "wrapS": wrap,
                    "wrapT": wrap,
                }
            ],
            "textures": [{"sampler": 0, "source": 0}],
        }
        material_extra = {"baseColorTexture": {"index": 0, "texCoord": 0}}

    binary = b"".join(blobs)
    name = str(mesh.name)
    document: dict[str, Any] = {
        "asset": {
            "version": "2.0",
            "generator": generator_name(),
            "extras": {
                **json_safe(extras or {}),
                "name": name,
                "settings": json_safe(mesh.metadata),
            },
        },
        "scene": 0,
        "scenes": [{"name": "Scene", "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {
                        "attributes": attributes,
                        "indices": index_accessor,
                        "material": 0,
                        "mode": _TRIANGLES,
                    }
                ],
            }
        ],
        "materials": [
            {
                "name": _material_name(name, colors is not None, texture is not None),
                "pbrMetallicRoughness": {
                    **material_extra,
                    "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.8,
                },
                "doubleSided": double_sided,
            }
        ],
        **texture_parts,
        "accessors": accessors,
        "bufferViews": buffer_views,
        "buffers": [{"byteLength": len(binary)}],
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    json_chunk = text.encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(json_chunk), _CHUNK_JSON),
            json_chunk,
            struct.pack("<II", len(binary), _CHUNK_BIN),
            binary,
        ]
    )


def _material_name(name: str, vertex_colours: bool, textured: bool) -> str:
    if textured:
        return f"{name} baked texture"
    return f"{name} vertex colours" if vertex_colours else name
