"""Export the selected meshes in any format of the ``core.exporters`` registry.

The format menu, the file filter, the extensions and the File > Export entry
are all built from the registry (identifiers are the format names in upper
case), so a format registered there appears here with nothing to add.

Several selected objects are joined into one mesh (in world space by default),
because the CAD targets (STEP solids, DXF) want one part per file and a single
file is what "Export selection" means elsewhere in Blender. Meshes are read
with ``foreach_get`` (``mesh_arrays.arrays_from_mesh``), from the evaluated
depsgraph when modifiers are applied. Coordinates reach the core in metres
(scene unit scale × the Scale option); CAD writers convert to the chosen unit.

"Bake Texture" turns the vertex colours into a UV texture (``core.mesh.bake``)
for the formats that carry one (GLB inside the file, OBJ as a PNG beside it);
it is greyed out for the others, and a script asking for it there gets an
error. Every file is checked first by the output plan (``core.outputs``), as on
the command line: the OBJ's .mtl and PNG never replace a file we didn't write,
and the whole set is renamed into place together.

The selection is read on the main thread; baking and writing run on the shared
background task (:class:`ExportTask`, ``tasks.ModalTask``), so a 2M-face STEP or
DXF shows its faces written in the sidebar while the UI keeps drawing, and ESC
or the panel's Cancel (``img3d.cancel_task``) stops it. The worker only stages
the files; the tick that takes its result renames them into place, so a cancel
accepted at any moment before that leaves no file and the previous one
untouched. Without a window (background mode, scripts) the same task runs to
its end before ``execute`` returns.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from ...core import exporters
from ...core import settings as defaults
from ...core.errors import ConfigError, Img3DError
from ...core.exporters.dxf import DEFAULT_ENTITY, DXF_ENTITIES
from ...core.exporters.units import DEFAULT_UNIT, UNITS
from ...core.mesh.meshdata import MeshData, join_meshes
from .. import tasks

logger = logging.getLogger(__name__)

# Mesh suffixes that aren't ours to write but that a new format replaces rather than
# appends to ("chair.gltf" -> "chair.glb", not "chair.gltf.glb").
_OTHER_MESH_SUFFIXES = (".gltf",)


def format_items() -> tuple[tuple[str, str, str], ...]:
    """EnumProperty items for the registry's formats: (NAME, "Label (.ext)", description)."""
    return tuple(
        (fmt.name.upper(), f"{fmt.label} ({fmt.suffix})", fmt.description)
        for fmt in exporters.FORMATS.values()
    )


def format_property():
    """The operator's Format enum over the registry as it is now (read at registration)."""
    items = format_items()
    return EnumProperty(
        name="Format",
        items=items,
        default=items[0][0],
        description="File format; the file name's extension follows it",
    )


def unit_items() -> tuple[tuple[str, str, str], ...]:
    """EnumProperty items for ``core.exporters.units.UNITS``."""
    return tuple(
        (unit.name, unit.label, f"Write CAD coordinates in {unit.label.lower()}")
        for unit in UNITS.values()
    )


def extensions() -> dict[str, str]:
    """Format identifier -> the suffix a new file gets (``"STEP"`` -> ``".step"``)."""
    return {fmt.name.upper(): fmt.suffix for fmt in exporters.FORMATS.values()}


def file_filter() -> str:
    """The file browser's filter: every suffix the registry writes."""
    return ";".join(f"*{suffix}" for suffix in exporters.all_suffixes())


def menu_text() -> str:
    """File > Export entry: ``"Img3D Mesh (.glb/.obj/.dxf/.step)"``."""
    return f"Img3D Mesh ({'/'.join(fmt.suffix for fmt in exporters.FORMATS.values())})"


def path_for_format(filepath: str, fmt: str) -> str:
    """``filepath`` with the format's extension: a known mesh suffix is replaced, else appended."""
    entry = exporters.FORMATS[fmt.lower()]
    root, suffix = os.path.splitext(filepath)
    if suffix.lower() in entry.suffixes:
        return filepath
    if suffix.lower() in (*exporters.all_suffixes(), *_OTHER_MESH_SUFFIXES):
        return root + entry.suffix
    return filepath + entry.suffix


def _format_from_path(filepath: str) -> Optional[str]:
    owner = exporters.suffix_owner(os.path.splitext(filepath)[1].lower())
    return None if owner is None else owner.upper()


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
    joined = join_meshes(parts, name=objects[0].name if len(objects) == 1 else "img3d_export")
    joined.vertices = joined.vertices * unit_scale
    joined.metadata = _metadata(objects)
    return joined


def _metadata(objects: list[bpy.types.Object]) -> dict:
    data: dict = {"objects": [obj.name for obj in objects]}
    settings = objects[0].get("img3d_settings")
    if len(objects) == 1 and isinstance(settings, str):
        data["img3d_settings"] = settings
    return data


class ExportTask(tasks.Task):
    """Bake (if asked) and write one export on the worker; rename it into place on the tick."""

    kind = "export"
    busy_message = "An export is already running: wait for it or cancel it first."
    start_text = "Exporting…"
    cancelled_text = "Export cancelled: no file written"
    failed_text = "Export failed"

    def __init__(
        self, mesh: MeshData, path: Path, fmt: str, units: str, export: defaults.ExportSettings
    ) -> None:
        super().__init__()
        self.mesh, self.path, self.fmt, self.units, self.export = mesh, path, fmt, units, export

    def work(self, progress, cancel):
        import time

        from ...core.exporters.atomic import staged_writes
        from ...core.progress import raise_if_cancelled

        options = {}
        started = time.perf_counter()
        if self.export.bake_texture:
            from ...core.mesh.bake import bake_vertex_colors

            exporters.check_exportable(self.mesh, self.path, self.fmt, units=self.units)
            raise_if_cancelled(cancel)
            options["texture"] = bake_vertex_colors(self.mesh, size=self.export.texture_size)
        seconds = time.perf_counter() - started
        # Staged only: an OBJ, its .mtl and PNG appear together, and only when the tick
        # takes the result (on_result); a cancel before that drops them (discard).
        with staged_writes(commit=False) as batch:
            exporters.export_mesh(
                self.mesh,
                self.path,
                self.fmt,
                units=self.units,
                format_options=self.export.writer_options(),
                progress=progress,
                cancel=cancel,
                **options,
            )
        return batch, seconds

    def on_progress(self, state, update) -> None:
        super().on_progress(state, update)
        # The bar is this export's faces written, not a share of a whole generation.
        state.progress = min(1.0, update.step / update.total) if update.total > 0 else 0.0

    def on_result(self, context, result) -> str:
        batch, seconds = result
        batch.commit()  # ExportError (an Img3DError) if the rename fails: the task fails
        baked = f", texture baked in {seconds:.1f} s" if self.export.bake_texture else ""
        return f"Exported {self.mesh.face_count} faces to {self.path}{baked}"

    def discard(self, result) -> None:
        result[0].discard()


class IMG3D_OT_export(tasks.ModalTask, bpy.types.Operator, ExportHelper):
    """Export the selected meshes as a mesh or CAD file (several objects are joined into one file)"""  # noqa: E501

    bl_idname = "img3d.export"
    bl_label = "Export Mesh (Img3D)"
    bl_options = {"REGISTER", "PRESET"}

    filename_ext = next(iter(extensions().values()))
    filter_glob: StringProperty(default=file_filter(), options={"HIDDEN"}, maxlen=255)
    format: format_property()
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
        description=f"Length unit written into {exporters.unit_format_labels()} files "
        "(Blender metres are converted)",
        items=unit_items(),
        default=DEFAULT_UNIT,
    )

    dxf_entity: EnumProperty(
        name="DXF Entity",
        description="How the mesh is stored in a DXF file",
        items=tuple((c.name, c.label, c.description) for c in DXF_ENTITIES),
        default=DEFAULT_ENTITY,
    )
    merge_coplanar: BoolProperty(
        name="Merge Coplanar Faces",
        description="STEP: write each flat area as one planar face with its real outline, as "
        "CAD programs expect, instead of one face per triangle",
        default=True,
    )
    bake_texture: BoolProperty(
        name="Bake Texture",
        description=f"{exporters.texture_format_labels()}: bake the vertex colours into a UV "
        "texture (inside the GLB, a PNG beside the OBJ) for engines and viewers that ignore "
        "vertex colours",
        default=False,
    )
    texture_size: IntProperty(
        name="Texture Size",
        description="Width and height of the baked texture in pixels",
        default=defaults.DEFAULT_TEXTURE_SIZE,
        min=defaults.MIN_TEXTURE_SIZE,
        max=defaults.MAX_TEXTURE_SIZE,
    )

    def check(self, context):
        changed = self._untick_bake_if_not_carried()
        wanted = path_for_format(self.filepath, self.format)
        if wanted != self.filepath:
            self.filepath = wanted
            return True
        return changed

    def invoke(self, context, event):
        self.filename_ext = extensions()[self.format]
        self._untick_bake_if_not_carried()
        return ExportHelper.invoke(self, context, event)

    def _untick_bake_if_not_carried(self) -> bool:
        """In the dialog a format without textures clears (and greys) Bake Texture, so a
        tick remembered from a GLB export never blocks a DXF one; scripts get an error."""
        if self.bake_texture and not exporters.FORMATS[self.format.lower()].textures:
            self.bake_texture = False
            return True
        return False

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "format")
        layout.prop(self, "apply_modifiers")
        layout.prop(self, "use_world_transform")
        layout.prop(self, "scale")
        row = layout.row()
        row.enabled = exporters.FORMATS[self.format.lower()].units
        row.prop(self, "units")
        row = layout.row()
        row.enabled = self.format == "DXF"
        row.prop(self, "dxf_entity")
        row = layout.row()
        row.enabled = self.format == "STEP"
        row.prop(self, "merge_coplanar")
        textured = exporters.FORMATS[self.format.lower()].textures
        col = layout.column()
        col.enabled = textured
        col.prop(self, "bake_texture")
        sub = col.row()
        sub.enabled = textured and self.bake_texture
        sub.prop(self, "texture_size")
        if not textured:
            layout.label(text=f"Only {exporters.texture_format_labels()} carry a texture")

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "No file name given: choose where to write the export.")
            return {"CANCELLED"}
        fmt = self.format
        if not self.properties.is_property_set("format"):
            fmt = _format_from_path(self.filepath) or fmt
        path = Path(bpy.path.abspath(path_for_format(self.filepath, fmt)))
        export = defaults.ExportSettings(
            dxf_entity=self.dxf_entity,
            merge_coplanar=self.merge_coplanar,
            bake_texture=self.bake_texture,
            texture_size=self.texture_size,
        )
        try:
            task = self._task(context, path, fmt.lower(), export)
        except Img3DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.window is not None and not bpy.app.background:
            return self.start_modal(context, task)
        return tasks.run_to_end(self, context, task)

    def _task(self, context, path: Path, fmt: str, export) -> ExportTask:
        """Check the plan and read the selection (main thread); the task does the rest."""
        from ...core.outputs import plan_outputs

        if export.bake_texture and not exporters.FORMATS[fmt].textures:
            raise ConfigError(
                f"{fmt.upper()} files can't carry a baked texture: untick Bake Texture or "
                f"export {exporters.texture_format_labels()}."
            )
        defaults.check_bake(export, [fmt])
        plan_outputs([path], bake=export.bake_texture)  # before reading or baking anything
        mesh = selected_mesh_arrays(
            context,
            apply_modifiers=self.apply_modifiers,
            world_space=self.use_world_transform,
            scale=self.scale,
        )
        exporters.check_exportable(mesh, path, fmt, units=self.units)
        warning = exporters.size_warning(mesh.face_count, path, fmt)
        if warning:
            self.report({"WARNING"}, warning)
        return ExportTask(mesh, path, fmt, self.units, export)


def menu_func_export(self, context):
    self.layout.operator(IMG3D_OT_export.bl_idname, text=menu_text())


CLASSES = (IMG3D_OT_export,)
