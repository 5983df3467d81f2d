"""Generated results → scene objects: each GLB imported by Blender's glTF importer (which
wires its colours), placed, named and annotated; the model-input preview image."""

from __future__ import annotations

import json
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from ..core.mesh.meshdata import MeshData
from .mesh_arrays import set_smooth_shading

# Space between batch variants laid out side by side, as a fraction of their width.
VARIANT_GAP = 0.25


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


# --- results as files: the GLB imported the standard way ------------------------------
GLTF_COLOR_ATTRIBUTE = "Color"  # what Blender's glTF importer names COLOR_0


def import_glb(
    context: bpy.types.Context, path, *, name: str, location, smooth: bool = True
) -> bpy.types.Object:
    """Import one GLB with Blender's own glTF importer; return its mesh object, named.

    The importer converts glTF's Y-up to Blender's Z-up; the colour attribute is
    wired to the material's base colour by name, so it stays right when the
    object gets more attributes later.
    """
    from ..core.errors import ExportError

    before = set(bpy.data.objects.keys())
    try:
        outcome = bpy.ops.import_scene.gltf(filepath=str(path))
    except RuntimeError as error:
        raise ExportError(f"Blender's glTF importer could not read {path}: {error}") from None
    created = [bpy.data.objects[key] for key in bpy.data.objects.keys() if key not in before]
    meshes = [obj for obj in created if obj.type == "MESH"]
    if outcome != {"FINISHED"} or len(meshes) != 1:
        for obj in created:
            bpy.data.objects.remove(obj)
        raise ExportError(f"{path} is not a single-mesh GLB: import it with File > Import.")
    obj = meshes[0]
    for extra in created:  # e.g. an empty parent some exporters add: keep only the mesh
        if extra is not obj:
            bpy.data.objects.remove(extra)
    obj.name = name
    obj.data.name = name
    obj.location = Vector(location)
    set_smooth_shading(obj.data, smooth)
    for material in obj.data.materials:
        if material is None or material.node_tree is None:
            continue
        for node in material.node_tree.nodes:
            if node.bl_idname == "ShaderNodeVertexColor" and not node.layer_name:
                node.layer_name = GLTF_COLOR_ATTRIBUTE
    return obj


def result_properties(
    mesh_data: MeshData, metrics: dict[str, Any], settings: dict[str, Any], files: Any
) -> dict[str, Any]:
    """The custom properties of a generated object: the seed, settings, metrics and files."""
    props = _custom_properties(mesh_data, metrics, {"settings": settings})
    props["img3d_grid_size"] = int(mesh_data.metadata.get("grid_size", 0))
    props["img3d_glb"] = blend_path(files.glb)
    if files.latents.exists():
        props["img3d_latents"] = blend_path(files.latents)
    if files.model_input.exists():
        props["img3d_input"] = blend_path(files.model_input)
    return props


def blend_path(path) -> str:
    """``path`` relative to the saved .blend (``//...``) when it can be, else absolute."""
    if bpy.data.filepath:
        try:
            return bpy.path.relpath(str(path))
        except ValueError:  # another drive on Windows
            pass
    return str(path)


def select_only(context: bpy.types.Context, objects: list[bpy.types.Object]) -> None:
    if not objects:
        return
    for selected in context.selected_objects:
        selected.select_set(False)
    for obj in objects:
        obj.select_set(True)
    context.view_layer.objects.active = objects[0]


def lay_out(objects: list[bpy.types.Object], start) -> None:
    """Variants side by side along +X from ``start``, a quarter of a width apart."""
    offset_x = 0.0
    base = Vector(start)
    for index, obj in enumerate(objects):
        width = float(obj.dimensions.x)
        if index:
            offset_x += width / 2
        obj.location = base + Vector((offset_x, 0.0, 0.0))
        offset_x += width / 2 + width * VARIANT_GAP


RESULT_FILE_PROPERTIES = {
    "img3d_glb": "glb",
    "img3d_latents": "latents",
    "img3d_input": "model_input",
}


def move_unsaved_results(blend_path: str) -> int:
    """Move the results of a never-saved file beside the .blend being saved; relink them.

    Only objects whose GLB sits in the unsaved-results folder move; each goes
    to its scene's ``//`` output folder resolved against ``blend_path``.
    Returns how many results moved.
    """
    import json
    from pathlib import Path

    from ..core.result_files import existing_files, move_variant
    from .requests import unsaved_results_folder

    unsaved = unsaved_results_folder().resolve()
    moved = 0
    for scene in bpy.data.scenes:
        output = scene.img3d.output_dir or "//img3d/"
        if not output.startswith("//"):
            continue
        folder = Path(blend_path).parent / output[2:]
        for obj in scene.objects:
            glb = obj.get("img3d_glb")
            if not glb or Path(glb).resolve().parent != unsaved:
                continue
            files = move_variant(existing_files(Path(glb)), folder)
            for key, field in RESULT_FILE_PROPERTIES.items():
                if key in obj:
                    obj[key] = str(getattr(files, field))
            if "img3d_request" in obj:
                record = json.loads(obj["img3d_request"])
                if isinstance(record.get("image"), dict):
                    record["image"]["value"] = str(files.model_input)
                obj["img3d_request"] = json.dumps(record)
            moved += 1
    return moved
