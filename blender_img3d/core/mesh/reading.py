"""Read a mesh file back into :class:`MeshData` (Blender's Z-up frame), for ``export --in``.

trimesh parses the formats; this module only brings the result into our
conventions: glTF (and, by default, OBJ) are Y-up and converted to Z-up, glTF
colours are linear and converted to sRGB, several meshes in one file are joined
(``meshdata.join_meshes``),
and our own GLBs give back their name and generation settings from
``asset.extras``. Every failure is a :class:`MeshInputError` saying what to fix.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..colorspace import linear_to_srgb
from ..errors import DependencyError, MeshInputError
from .bake import BakedTexture
from .meshdata import MISSING_COLOR, MeshData, join_meshes
from .placement import checked_up_axis, y_up_to_z_up

log = logging.getLogger(__name__)

READ_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
# Files whose coordinates are Y-up by convention (glTF by the spec, OBJ as Blender reads it).
_Y_UP_BY_DEFAULT = {".glb": "Y", ".gltf": "Y", ".obj": "Y", ".ply": "Z", ".stl": "Z"}
_MAX_BYTES = 2 * 1024**3


@dataclass(eq=False)
class ReadMesh:
    """A mesh file's triangles and what it carried for its looks.

    ``mesh`` has vertex colours whenever the file had any colour: its own per-vertex
    colours, else its base-colour textures sampled at each vertex's UV. ``texture``
    is the file's base-colour texture with its UVs (row for row with ``mesh``), kept
    when one image covers every triangle, so GLB and OBJ can carry it as it was;
    ``notes`` say what could not be kept.
    """

    mesh: MeshData
    texture: Optional[BakedTexture] = None
    notes: list[str] = field(default_factory=list)


def read_mesh(path: Union[str, os.PathLike], *, up_axis: Optional[str] = None) -> MeshData:
    """Load the triangle mesh in ``path`` (.glb .gltf .obj .ply .stl) as Z-up MeshData.

    ``up_axis`` ("Y" or "Z") overrides the file type's convention for OBJ, PLY and
    STL; glTF is always Y-up. Textures come back sampled into vertex colours; see
    :func:`read_mesh_file` for the texture itself.
    """
    return read_mesh_file(path, up_axis=up_axis).mesh


def read_mesh_file(path: Union[str, os.PathLike], *, up_axis: Optional[str] = None) -> ReadMesh:
    """:func:`read_mesh` with the file's base-colour texture and notes (:class:`ReadMesh`)."""
    source = Path(os.fspath(path)).expanduser()
    suffix = source.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise MeshInputError(
            f"Can't read {source}: unsupported file type {suffix or '(none)'}; "
            f"use one of {', '.join(READ_SUFFIXES)}."
        )
    if not source.is_file():
        what = "is a folder" if source.is_dir() else "does not exist"
        raise MeshInputError(f"Can't read {source}: it {what}; check the path.")
    if source.stat().st_size > _MAX_BYTES:
        raise MeshInputError(f"Can't read {source}: larger than 2 GiB; decimate it first.")
    axis = (
        "Y" if suffix in (".glb", ".gltf") else checked_up_axis(up_axis or _Y_UP_BY_DEFAULT[suffix])
    )

    try:
        import trimesh
    except ImportError as error:
        raise DependencyError(
            "Reading mesh files needs the 'trimesh' package; install the add-on's dependencies."
        ) from error
    if suffix in (".glb", ".gltf"):
        from .gltf_check import check_gltf_file

        check_gltf_file(source)  # trimesh trusts offsets and lengths; refuse bad ones first
    try:
        # With materials kept, trimesh leaves glTF's COLOR_0 as floats in
        # visual.vertex_attributes (without, it rounds them to 8 bits, in linear space).
        gltf = suffix in (".glb", ".gltf")
        # An OBJ's materials make trimesh drop its vertex colours: read it without
        # them first, and again with them (for a texture) only when it has no colours.
        loaded = trimesh.load(str(source), process=False, skip_materials=suffix == ".obj")
        found = _triangle_meshes(loaded, trimesh)
        uncoloured = found and all(item[0].colors is None for item in found)
        if suffix == ".obj" and uncoloured and b"mtllib" in source.read_bytes():
            with_materials = _triangle_meshes(
                trimesh.load(
                    str(source), process=False, resolver=_lenient_resolver(trimesh, source)
                ),
                trimesh,
            )
            if sum(i[0].face_count for i in with_materials) == sum(i[0].face_count for i in found):
                found = with_materials
    except Exception as error:  # trimesh raises anything from ValueError to KeyError
        raise MeshInputError(
            f"Can't read {source}: the file is damaged or not a valid {suffix[1:].upper()} "
            f"file ({type(error).__name__}: {error})."
        ) from error

    if not found:
        raise MeshInputError(f"{source} contains no triangles; nothing to export.")
    parts = [item[0] for item in found]
    materials = [item[2] for item in found]
    if gltf:
        for part in parts:
            if part.colors is not None:
                part.colors = linear_to_srgb(part.colors).astype(np.float32)
    looks = [item[1] for item in found]
    for part, look in zip(parts, looks):
        if part.colors is None and look is not None:
            part.colors = look.sample(look.uvs)[:, :3].astype(np.float32)
    _material_colors(parts, materials)
    joined = join_meshes(parts)
    vertices = y_up_to_z_up(joined.vertices) if axis == "Y" else joined.vertices
    name, metadata = _gltf_identity(source) if gltf else (None, {})
    name = name or source.stem
    mesh = MeshData(vertices, joined.faces, joined.colors, name=name, metadata=metadata)
    texture, notes = _one_texture(mesh, looks)
    return ReadMesh(mesh, texture, notes)


def _material_colors(parts: list[MeshData], materials: list) -> None:
    """Parts without colours or texture take their material's base colour (an OBJ's ``Kd``,
    a glTF's ``baseColorFactor``), when some material says more than a default (white,
    as glTF's default and our own writers' materials are, or trimesh's grey)."""
    plain = (1.0, MISSING_COLOR)
    if all(m is None or any(np.allclose(m, v, atol=0.01) for v in plain) for m in materials):
        return
    for part, rgb in zip(parts, materials):
        if part.colors is None and rgb is not None:
            part.colors = np.tile(np.asarray(rgb, dtype=np.float32), (part.vertex_count, 1))


def _lenient_resolver(trimesh, source: Path):
    """trimesh's file resolver for an OBJ's folder that also finds ``.\\Tex.JPG`` (Windows
    separators, other letter case), as files made on Windows name their images."""

    class Lenient(trimesh.resolvers.FilePathResolver):
        def get(self, name: str):
            try:
                return super().get(name)
            except Exception:
                wanted = name.replace("\\", "/").split("/")[-1].lower()
                for path in source.parent.iterdir():
                    if path.name.lower() == wanted and path.is_file():
                        return path.read_bytes()
                raise

    return Lenient(str(source.parent))


def _one_texture(mesh: MeshData, looks: list) -> tuple[Optional[BakedTexture], list[str]]:
    """The file's texture over the joined mesh, when one image covers every part."""
    images = [look for look in looks if look is not None]
    if not images:
        return None, []
    first = images[0].image
    if len(images) == len(looks) and all(np.array_equal(t.image, first) for t in images):
        uvs = np.concatenate([look.uvs for look in looks]).astype(np.float32)
        return BakedTexture(mesh, uvs, first, repeat=True), []
    distinct = len({hash(look.image.tobytes()) for look in images})
    what = "parts without a texture" if len(images) < len(looks) else f"{distinct} images"
    return None, [
        f"the file's textures ({what}) can't be one GLB/OBJ texture: "
        "their colours were sampled into vertex colours"
    ]


def _triangle_meshes(loaded, trimesh) -> list[tuple]:
    """Each triangle mesh in the file, scene transforms applied: ``(part, texture or None,
    material base colour or None)``.

    The scene graph is walked here rather than through ``Scene.dump()``, which
    drops the float colours kept in ``visual.vertex_attributes``.
    """
    if not isinstance(loaded, trimesh.Scene):
        instances = [(loaded, None)]
    else:
        instances = []
        for node in loaded.graph.nodes_geometry:
            transform, geometry = loaded.graph[node]
            instances.append((loaded.geometry.get(geometry), transform))
    parts = []
    for mesh, transform in instances:
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if transform is not None:
            vertices = trimesh.transform_points(vertices, transform)
            if np.linalg.det(np.asarray(transform)[:3, :3]) < 0:
                faces = faces[:, ::-1]  # a mirroring node turns the winding inside out
        part = MeshData(vertices, faces, _vertex_colors(mesh))
        parts.append((part, _base_color_texture(mesh, part), _material_rgb(mesh)))
    return parts


def _material_rgb(mesh) -> Optional[np.ndarray]:
    """The material's base colour as sRGB floats (glTF's factor is linear), or None."""
    material = getattr(mesh.visual, "material", None)
    if material is None:
        return None
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        rgb = np.asarray(factor, dtype=np.float64)[:3]
        rgb = rgb / 255.0 if rgb.max() > 1.0 else rgb
        return linear_to_srgb(rgb).astype(np.float32)
    diffuse = getattr(material, "diffuse", None)
    if diffuse is None:
        return None
    rgb = np.asarray(diffuse, dtype=np.float64)[:3]
    return (rgb / 255.0 if rgb.max() > 1.0 else rgb).astype(np.float32)


def _base_color_texture(mesh, part: MeshData) -> Optional[BakedTexture]:
    """The mesh's base-colour image and UVs (glTF convention), or None.

    trimesh gives UVs with v up (OpenGL); ours have v down from the image's top. A
    colour factor multiplies the image, so the texture alone looks as the file did.
    Stand-in images (trimesh's 2 × 2 default where the file named no readable image)
    carry nothing and are ignored.
    """
    visual = mesh.visual
    uvs = getattr(visual, "uv", None)
    if getattr(visual, "kind", None) != "texture" or uvs is None or len(uvs) != len(mesh.vertices):
        return None
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if image is None or image.size[0] * image.size[1] <= 4:
        return None
    pixels = np.asarray(image.convert("RGBA"), dtype=np.float32)
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        factor = np.asarray(factor, dtype=np.float32)
        pixels = pixels * (factor / 255.0 if factor.max() > 1.0 else factor)
    rgb = np.round(np.clip(pixels[..., :3], 0, 255)).astype(np.uint8)
    uvs = np.asarray(uvs, dtype=np.float64)
    uvs = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1)
    return BakedTexture(part, uvs.astype(np.float32), rgb, repeat=True)


def _vertex_colors(mesh) -> Optional[np.ndarray]:
    """RGB in [0, 1] per vertex, or None when the mesh has no per-vertex colours."""
    visual = mesh.visual
    exact = getattr(visual, "vertex_attributes", {}).get("color")
    if exact is not None and len(exact) == len(mesh.vertices):
        exact = np.asarray(exact)
        scale = 1.0 if exact.dtype.kind == "f" else float(np.iinfo(exact.dtype).max)
        return (exact[:, :3] / scale).astype(np.float32)
    if getattr(visual, "kind", None) != "vertex":
        return _ply_colors(mesh)
    rgba = np.asarray(visual.vertex_colors)
    if rgba.shape != (len(mesh.vertices), 4):
        return None
    return (rgba[:, :3] / 255.0).astype(np.float32)


def _ply_colors(mesh) -> Optional[np.ndarray]:
    """A PLY's red/green/blue vertex properties, which trimesh leaves aside when the
    file also has texture coordinates."""
    raw = (getattr(mesh, "metadata", None) or {}).get("_ply_raw") or {}
    data = (raw.get("vertex") or {}).get("data")
    if not isinstance(data, dict) or not all(k in data for k in ("red", "green", "blue")):
        return None
    rgb = np.stack([np.asarray(data[k]).reshape(-1) for k in ("red", "green", "blue")], 1)
    if len(rgb) != len(mesh.vertices):
        return None
    scale = 1.0 if rgb.dtype.kind == "f" else float(np.iinfo(rgb.dtype).max)
    return (rgb / scale).astype(np.float32)


def _gltf_identity(source: Path) -> tuple[Optional[str], dict[str, Any]]:
    """Name and settings that our GLB writer put into ``asset.extras`` (else None, {})."""
    try:
        raw = source.read_bytes()
        if source.suffix.lower() == ".glb":
            length, kind = struct.unpack_from("<II", raw, 12)
            if kind != 0x4E4F534A:
                return None, {}
            document = json.loads(raw[20 : 20 + length].decode("utf-8"))
        else:
            document = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, struct.error):
        return None, {}
    extras = document.get("asset", {}).get("extras")
    if not isinstance(extras, dict):
        return None, {}
    settings = extras.get("settings")
    name = extras.get("name")
    return (name if isinstance(name, str) else None), (
        settings if isinstance(settings, dict) else {}
    )
