"""Generated meshes → scene objects: colours wired to a material, placed, named, annotated."""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import bpy
import numpy as np
from mathutils import Vector

from ..core.mesh.meshdata import MeshData
from .mesh_arrays import COLOR_ATTRIBUTE, mesh_from_arrays, set_smooth_shading

MATERIAL_NAME = "Img3D Vertex Colour"
# Space between batch variants laid out side by side, as a fraction of their width.
VARIANT_GAP = 0.25


def vertex_colour_material(name: str = MATERIAL_NAME) -> bpy.types.Material:
    """A Principled BSDF whose base colour is the mesh's ``Col`` colour attribute.

    Reused when it already exists, so a batch or repeated runs don't pile up
    identical materials.
    """
    material = bpy.data.materials.get(name)
    if material is not None:
        return material
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # from 5.0 every material has a node tree
        material.use_nodes = True
    nodes = material.node_tree.nodes
    bsdf = next(node for node in nodes if node.type == "BSDF_PRINCIPLED")
    attribute = nodes.new("ShaderNodeVertexColor")
    attribute.layer_name = COLOR_ATTRIBUTE
    attribute.location = (bsdf.location.x - 300, bsdf.location.y)
    material.node_tree.links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.7
    return material


def _custom_properties(mesh_data: MeshData, metrics: dict[str, Any], extra: dict[str, Any]):
    meta = mesh_data.metadata
    props = {
        "img3d_seed": int(meta.get("seed", 0)),
        "img3d_variant": int(meta.get("variant", 0)),
        "img3d_model": str(meta.get("model", "")),
        "img3d_revision": str(meta.get("revision", "")),
        "img3d_settings": json.dumps(extra.get("settings", {}), default=str),
        "img3d_metrics": json.dumps(metrics, default=str),
    }
    if meta.get("prompt"):
        props["img3d_prompt"] = str(meta["prompt"])
    if meta.get("image"):
        props["img3d_image"] = str(meta["image"])
    return props


def add_mesh_objects(
    context: bpy.types.Context,
    meshes: Iterable[MeshData],
    metrics: Iterable[dict[str, Any]],
    *,
    at_cursor: bool = True,
    smooth: bool = True,
    settings: Optional[dict[str, Any]] = None,
) -> list[bpy.types.Object]:
    """Link one object per mesh into the active collection; select them, first one active.

    Variants sit side by side along +X, the first at the 3D cursor (or origin).
    """
    base = Vector(context.scene.cursor.location) if at_cursor else Vector((0.0, 0.0, 0.0))
    material = vertex_colour_material()
    objects = []
    offset_x = 0.0
    for mesh_data, mesh_metrics in zip(meshes, metrics):
        mesh = mesh_from_arrays(mesh_data)
        set_smooth_shading(mesh, smooth)
        if mesh_data.colors is not None:
            mesh.materials.append(material)
        obj = bpy.data.objects.new(mesh_data.name, mesh)
        context.collection.objects.link(obj)
        width = float(np.ptp(mesh_data.vertices[:, 0])) if mesh_data.vertex_count else 0.0
        if objects:
            offset_x += width / 2
        obj.location = base + Vector((offset_x, 0.0, 0.0))
        offset_x += width / 2 + width * VARIANT_GAP
        for key, value in _custom_properties(
            mesh_data, mesh_metrics, {"settings": settings or {}}
        ).items():
            obj[key] = value
        objects.append(obj)
    if objects:
        for selected in context.selected_objects:
            selected.select_set(False)
        for obj in objects:
            obj.select_set(True)
        context.view_layer.objects.active = objects[0]
    return objects


PREVIEW_IMAGE_NAME = "Img3D Model Input"


def store_preview_image(pil_image: Any) -> str:
    """Copy the model's input picture into a Blender image for the panel's preview."""
    rgba = np.asarray(pil_image.convert("RGBA"), dtype=np.float32) / 255.0
    height, width = rgba.shape[:2]
    image = bpy.data.images.get(PREVIEW_IMAGE_NAME)
    if image is not None and tuple(image.size) != (width, height):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(PREVIEW_IMAGE_NAME, width, height, alpha=True)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    image.update()
    return image.name
