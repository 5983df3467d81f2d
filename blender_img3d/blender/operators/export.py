"""Export the selected meshes as GLB, OBJ, DXF or STEP through ``core.exporters``.

Several selected objects are joined into one mesh (in world space by default),
because the CAD targets (STEP solids, DXF) want one part per file and a single
file is what "Export selection" means elsewhere in Blender. Meshes are read
with ``foreach_get`` (``mesh_arrays.arrays_from_mesh``), from the evaluated
depsgraph when modifiers are applied. Coordinates reach the core in metres
(scene unit scale × the Scale option); CAD writers convert to the chosen unit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from ...core.errors import Img3DError
from ...core.mesh.meshdata import MeshData

logger = logging.getLogger(__name__)

FORMAT_ITEMS = (
    ("GLB", "glTF Binary (.glb)", "glTF 2.0 binary with vertex colours, Y up"),
    ("OBJ", "Wavefront (.obj)", "OBJ with vertex colours and a material file"),
    ("DXF", "AutoCAD DXF (.dxf)", "DXF mesh for CAD, in the chosen unit"),
    ("STEP", "STEP (.step)", "STEP AP214 solid (closed meshes) or surface, for CAD"),
)
EXTENSIONS = {"GLB": ".glb", "OBJ": ".obj", "DXF": ".dxf", "STEP": ".step"}
KNOWN_SUFFIXES = {".glb", ".gltf", ".obj", ".dxf", ".step", ".stp"}
UNIT_ITEMS = (
    ("mm", "Millimetres", "Write CAD coordinates in millimetres"),
    ("cm", "Centimetres", "Write CAD coordinates in centimetres"),
    ("m", "Metres", "Write CAD coordinates in metres"),
    ("in", "Inches", "Write CAD coordinates in inches"),
    ("ft", "Feet", "Write CAD coordinates in feet"),
)


def path_for_format(filepath: str, fmt: str) -> str:
    """``filepath`` with the format's extension: a known mesh suffix is replaced, else appended."""
    ext = EXTENSIONS[fmt]
    root, suffix = os.path.splitext(filepath)
    if suffix.lower() == ext or (fmt == "STEP" and suffix.lower() == ".stp"):
        return filepath
    if suffix.lower() in KNOWN_SUFFIXES:
        return root + ext
    return filepath + ext


def _format_from_path(filepath: str) -> Optional[str]:
    suffix = os.path.splitext(filepath)[1].lower()
    for fmt, ext in EXTENSIONS.items():
        if suffix == ext:
            return fmt
    return "STEP" if suffix == ".stp" else None


def selected_mesh_arrays(
    context: bpy.types.Context,
    *,
    apply_modifiers: bool = True,
    world_space: bool = True,
    scale: float = 1.0,
) -> MeshData:
    """The selected mesh objects as one ``MeshData`` in metres (joined, colours kept if all have).

    Raises :class:`Img3DError` when no mesh object is selected or they have no faces.
    """
    from ..mesh_arrays import arrays_from_mesh

    objects = [obj for obj in context.selected_objects if obj.type == "MESH"]
    if not objects:
        raise Img3DError("Nothing to export: select one or more mesh objects first.")
    for obj in objects:
        if obj.mode == "EDIT":
            obj.update_from_editmode()  # edits live in BMesh until flushed
    depsgraph = context.evaluated_depsgraph_get() if apply_modifiers else None
    unit_scale = context.scene.unit_settings.scale_length * scale
    parts: list[MeshData] = []
    for obj in objects:
        matrix = np.array(obj.matrix_world) if world_space else None
        if depsgraph is not None:
            evaluated = obj.evaluated_get(depsgraph)
            mesh = evaluated.to_mesh()
            try:
                parts.append(arrays_from_mesh(mesh, matrix=matrix, name=obj.name))
            finally:
                evaluated.to_mesh_clear()
        else:
            parts.append(arrays_from_mesh(obj.data, matrix=matrix, name=obj.name))
    parts = [part for part in parts if part.face_count]
    if not parts:
        raise Img3DError("The selected meshes have no faces: there is nothing to export.")
    joined = _join(parts, name=objects[0].name if len(objects) == 1 else "img3d_export")
    joined.vertices *= unit_scale
    joined.metadata = _metadata(objects)
    return joined


def _join(parts: list[MeshData], name: str) -> MeshData:
    if len(parts) == 1:
        part = parts[0]
        return MeshData(part.vertices, part.faces, part.colors, name=name)
    offsets = np.cumsum([0] + [part.vertex_count for part in parts[:-1]])
    vertices = np.concatenate([part.vertices for part in parts])
    faces = np.concatenate([part.faces + offset for part, offset in zip(parts, offsets)])
    colors = None
    if any(part.colors is not None for part in parts):
        # A part without colours gets Blender's default grey rather than dropping all colours.
        colors = np.concatenate(
            [
                part.colors
                if part.colors is not None
                else np.full((part.vertex_count, 3), 0.8, dtype=np.float32)
                for part in parts
            ]
        )
    return MeshData(vertices, faces, colors, name=name)


def _metadata(objects: list[bpy.types.Object]) -> dict:
    data: dict = {"objects": [obj.name for obj in objects]}
    settings = objects[0].get("img3d_settings")
    if len(objects) == 1 and isinstance(settings, str):
        data["img3d_settings"] = settings
    return data


class IMG3D_OT_export(bpy.types.Operator, ExportHelper):
    """Export the selected meshes as GLB, OBJ, DXF or STEP (several objects are joined into one file)"""  # noqa: E501

    bl_idname = "img3d.export"
    bl_label = "Export Mesh (Img3D)"
    bl_options = {"REGISTER", "PRESET"}

    filename_ext = ".glb"
    filter_glob: StringProperty(
        default="*.glb;*.obj;*.dxf;*.step;*.stp", options={"HIDDEN"}, maxlen=255
    )
    format: EnumProperty(
        name="Format",
        items=FORMAT_ITEMS,
        default="GLB",
        description="File format; the file name's extension follows it",
    )
    apply_modifiers: BoolProperty(
        name="Apply Modifiers",
        description="Export what the viewport shows (the evaluated mesh), not the base mesh",
        default=True,
    )
    use_world_transform: BoolProperty(
        name="World Transform",
        description="Apply each object's location, rotation and scale (needed to join objects)",
        default=True,
    )
    scale: FloatProperty(
        name="Scale",
        description="Extra scale applied on export (after the scene's unit scale)",
        default=1.0,
        min=1e-6,
        soft_max=1000.0,
    )
    units: EnumProperty(
        name="CAD Units",
        description="Length unit written into DXF and STEP files (Blender metres are converted)",
        items=UNIT_ITEMS,
        default="mm",
    )

    def check(self, context):
        wanted = path_for_format(self.filepath, self.format)
        if wanted != self.filepath:
            self.filepath = wanted
            return True
        return False

    def invoke(self, context, event):
        self.filename_ext = EXTENSIONS[self.format]
        return ExportHelper.invoke(self, context, event)

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "format")
        layout.prop(self, "apply_modifiers")
        layout.prop(self, "use_world_transform")
        layout.prop(self, "scale")
        row = layout.row()
        row.enabled = self.format in {"DXF", "STEP"}
        row.prop(self, "units")

    def execute(self, context):
        from ...core import exporters

        if not self.filepath:
            self.report({"ERROR"}, "No file name given: choose where to write the export.")
            return {"CANCELLED"}
        fmt = self.format
        if not self.properties.is_property_set("format"):
            fmt = _format_from_path(self.filepath) or fmt
        path = Path(bpy.path.abspath(path_for_format(self.filepath, fmt)))
        try:
            mesh = selected_mesh_arrays(
                context,
                apply_modifiers=self.apply_modifiers,
                world_space=self.use_world_transform,
                scale=self.scale,
            )
            written = exporters.export_mesh(mesh, path, fmt.lower(), units=self.units)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {mesh.face_count} faces to {written}")
        return {"FINISHED"}


def menu_func_export(self, context):
    self.layout.operator(IMG3D_OT_export.bl_idname, text="Img3D Mesh (.glb/.obj/.dxf/.step)")


CLASSES = (IMG3D_OT_export,)
