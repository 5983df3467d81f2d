"""Mesh tools on the active object through ``core.mesh``, and its quality report.

Each tool reads the object's own mesh (local coordinates, no modifiers) as
arrays, runs the core function and writes the result back as a new mesh
datablock that takes the old one's name and materials; the object keeps its
name and transform. The tools are undoable (``UNDO``: Blender's global undo
restores the previous datablock). The old datablock is removed when nothing
else uses it, so repeated edits don't pile up orphan meshes.

Written-back meshes are triangles (core.mesh works on triangles); vertex colours
and materials are carried over, UV maps, vertex groups, shape keys and custom
normals are not. Generated objects have none of those; on any other object that
has them the tool refuses before touching the mesh and says what would be lost,
unless the user ticks "Discard UVs, Groups, Shape Keys" (Blender's own Decimate
and Smooth modifiers keep them, and the message says so).
"""

from __future__ import annotations

import json
import logging
import time

import bpy
import numpy as np
from bpy.props import BoolProperty, FloatProperty, IntProperty

from ...core import settings as defaults
from ...core.errors import Img3DError
from ...core.mesh.meshdata import MeshData

logger = logging.getLogger(__name__)

METRICS_PROPERTY = "img3d_metrics"
# The numbers the panel shows from a report, in order, with their labels.
REPORT_KEYS = (
    ("faces", "Faces"),
    ("vertices", "Vertices"),
    ("components", "Pieces"),
    ("watertight", "Watertight"),
    ("boundary_edges", "Open edges"),
    ("non_manifold_edges", "Non-manifold edges"),
    ("degenerate_faces", "Degenerate faces"),
    ("volume", "Volume"),
    ("area", "Area"),
)


def _active_mesh_object(cls, context) -> bool:
    obj = context.active_object
    if obj is None or obj.type != "MESH":
        cls.poll_message_set("Make a mesh object active first")
        return False
    if obj.mode != "OBJECT":
        cls.poll_message_set("Switch to Object Mode first")
        return False
    return True


def read_object_mesh(obj: bpy.types.Object) -> MeshData:
    """The object's base mesh as arrays (local coordinates, triangulated)."""
    from ..mesh_arrays import arrays_from_mesh

    return arrays_from_mesh(obj.data, name=obj.name)


def replace_object_mesh(obj: bpy.types.Object, mesh_data: MeshData) -> bpy.types.Mesh:
    """Give ``obj`` a new mesh built from ``mesh_data``, keeping name, materials and shading."""
    from ..mesh_arrays import mesh_from_arrays, set_smooth_shading

    old = obj.data
    name = old.name
    smooth = bool(len(old.polygons)) and _mostly_smooth(old)
    new = mesh_from_arrays(mesh_data, name=name + ".img3d")
    for material in old.materials:
        new.materials.append(material)
    set_smooth_shading(new, smooth)
    obj.data = new
    if old.users == 0:
        bpy.data.meshes.remove(old)
        new.name = name
    # else: other objects still share the old mesh; it keeps its name, the new one gets a suffix.
    return new


GENERATED_PROPERTY = "img3d_settings"  # set on every object the add-on generates


def data_that_would_be_lost(obj: bpy.types.Object) -> list[str]:
    """What rebuilding ``obj``'s mesh as coloured triangles would drop (empty: nothing)."""
    mesh = obj.data
    lost = []
    if len(mesh.uv_layers):
        lost.append(f"{len(mesh.uv_layers)} UV map(s)")
    if len(obj.vertex_groups):
        lost.append(f"{len(obj.vertex_groups)} vertex group(s)")
    if mesh.shape_keys is not None and len(mesh.shape_keys.key_blocks):
        lost.append(f"{len(mesh.shape_keys.key_blocks)} shape key(s)")
    if mesh.has_custom_normals:
        lost.append("custom normals")
    return lost


def _mostly_smooth(mesh: bpy.types.Mesh) -> bool:
    flags = np.empty(len(mesh.polygons), dtype=bool)
    mesh.polygons.foreach_get("use_smooth", flags)
    return bool(flags.mean() >= 0.5)


class _MeshTool:
    """Shared execute: read arrays, run the subclass's ``process(mesh) -> (mesh, note)``,
    write the result back and report the change."""

    bl_options = {"REGISTER", "UNDO"}
    # What the user can use instead when this tool would lose data.
    blender_alternative = "Blender's own modifiers"

    discard_attributes: BoolProperty(
        name="Discard UVs, Groups, Shape Keys",
        description="Run on an object with UV maps, vertex groups, shape keys or custom "
        "normals anyway; the rebuilt mesh won't have them",
        default=False,
    )

    @classmethod
    def poll(cls, context):
        return _active_mesh_object(cls, context)

    def execute(self, context):
        obj = context.active_object
        started = time.perf_counter()
        lost = [] if obj.get(GENERATED_PROPERTY) is not None else data_that_would_be_lost(obj)
        if lost and not self.discard_attributes:
            self.report(
                {"ERROR"},
                f"{self.bl_label} rebuilds {obj.name} as coloured triangles and would drop its "
                f"{', '.join(lost)}: use {self.blender_alternative} on this object, or tick "
                "'Discard UVs, Groups, Shape Keys' to go ahead.",
            )
            return {"CANCELLED"}
        try:
            before = read_object_mesh(obj)
            if before.face_count == 0:
                raise Img3DError(f"{obj.name} has no faces to work on.")
            after, note = self.process(before)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if after is before:  # nothing to do: keep the datablock (and its UVs) as it is
            self.report({"INFO"}, f"{obj.name}: {note}")
            return {"FINISHED"}
        replace_object_mesh(obj, after)
        if METRICS_PROPERTY in obj:
            del obj[METRICS_PROPERTY]  # the stored report describes the old mesh
        seconds = time.perf_counter() - started
        message = f"{obj.name}: {before.face_count} → {after.face_count} faces ({seconds:.2f} s)"
        self.report({"INFO"}, f"{message}; {note}" if note else message)
        return {"FINISHED"}


class IMG3D_OT_mesh_clean(_MeshTool, bpy.types.Operator):
    """Weld duplicate vertices, drop degenerate faces and small pieces, fix normals and close small holes"""  # noqa: E501

    bl_idname = "img3d.mesh_clean"
    blender_alternative = "Mesh > Clean Up in Edit Mode"
    bl_label = "Clean & Repair"

    keep_components: IntProperty(
        name="Keep Pieces",
        description="Keep this many largest pieces (0 keeps all)",
        default=0,
        min=0,
    )
    repair: BoolProperty(name="Close Holes", default=True)

    def process(self, mesh):
        from ...core.mesh.cleanup import cleanup
        from ...core.mesh.repair import repair
        from ...core.settings import MeshSettings

        cleaned = cleanup(mesh, MeshSettings(keep_components=self.keep_components))
        if not self.repair:
            return cleaned, ""
        repaired, report = repair(cleaned)
        note = f"filled {report.holes_filled} of {report.holes_found} hole(s)"
        if report.notes:
            note += "; " + "; ".join(report.notes)
        return repaired, note


class IMG3D_OT_mesh_decimate(_MeshTool, bpy.types.Operator):
    """Reduce the face count by quadric edge collapse, keeping shape and vertex colours"""

    bl_idname = "img3d.mesh_decimate"
    bl_label = "Decimate"
    blender_alternative = "a Decimate modifier"

    target_faces: IntProperty(
        name="Target Faces",
        description="Reduce to this many faces",
        default=defaults.DEFAULT_TARGET_FACES,
        min=4,
    )

    def process(self, mesh):
        from ...core.mesh.decimate import decimate_with_note

        return decimate_with_note(mesh, target_faces=self.target_faces)


class IMG3D_OT_mesh_smooth(_MeshTool, bpy.types.Operator):
    """Smooth the surface without shrinking it (Taubin smoothing)"""

    bl_idname = "img3d.mesh_smooth"
    bl_label = "Smooth"
    blender_alternative = "a Smooth Corrective or Laplacian Smooth modifier"

    iterations: IntProperty(name="Iterations", default=10, min=1, max=500)
    strength: FloatProperty(
        name="Strength",
        description="How far each step moves a vertex toward its neighbours",
        default=0.5,
        min=0.01,
        max=0.99,
    )

    def process(self, mesh):
        from ...core.mesh.smooth import smooth

        mu = -(self.strength + 0.03)  # Taubin: |mu| slightly above lambda keeps the volume
        return smooth(mesh, self.iterations, lamb=self.strength, mu=mu), ""


class IMG3D_OT_quality_report(bpy.types.Operator):
    """Measure the active mesh (watertight, pieces, open edges, volume, ...) and store the report on the object"""  # noqa: E501

    bl_idname = "img3d.quality_report"
    bl_label = "Quality Report"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_mesh_object(cls, context)

    def execute(self, context):
        from ...core.mesh.metrics import compute_metrics
        from ..mesh_arrays import arrays_from_mesh

        obj = context.active_object
        # World space, so volume, area and size are what the scene shows.
        mesh = arrays_from_mesh(obj.data, matrix=np.array(obj.matrix_world), name=obj.name)
        if mesh.face_count == 0:
            self.report({"ERROR"}, f"{obj.name} has no faces to measure.")
            return {"CANCELLED"}
        try:
            metrics = compute_metrics(mesh)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        obj[METRICS_PROPERTY] = json.dumps(metrics.to_dict())
        state = "watertight" if metrics.watertight else f"{metrics.boundary_edges} open edges"
        self.report(
            {"INFO"}, f"{obj.name}: {metrics.faces} faces, {metrics.components} piece(s), {state}"
        )
        return {"FINISHED"}


def stored_report(obj) -> dict | None:
    """The report stored on ``obj`` by Quality Report, or None (absent or unreadable)."""
    text = obj.get(METRICS_PROPERTY) if obj is not None else None
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


CLASSES = (
    IMG3D_OT_mesh_clean,
    IMG3D_OT_mesh_decimate,
    IMG3D_OT_mesh_smooth,
    IMG3D_OT_quality_report,
)
