"""Scene settings (saved with the .blend); the transient task state is in ``tasks``.

Every default comes from ``core.settings`` so the panel, the operators, the CLI
and the tests agree on one value.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core import choices
from ..core import settings as defaults

IMAGE_SOURCE_ITEMS = (
    ("FILE", "File", "Read the picture from a file on disk"),
    ("BLENDER", "Blender Image", "Use an image already loaded in Blender"),
)
PLACEMENT_ITEMS = (
    ("CURSOR", "3D Cursor", "Place the new object at the 3D cursor"),
    ("ORIGIN", "World Origin", "Place the new object at the world origin"),
)
SHADING_ITEMS = (
    ("SMOOTH", "Smooth", "Smooth shading"),
    ("FLAT", "Flat", "Flat shading"),
)


def enum_items(options: tuple[choices.Choice, ...]) -> tuple[tuple[str, str, str], ...]:
    """``EnumProperty`` items for a closed set of ``core.choices``, the core names as ids.

    Blender saves an enum as its item's number, so .blend files saved with the
    old upper-case ids (``SHAP_E``) read back unchanged; scripts must now set
    the core names.
    """
    return tuple((choice.name, choice.label, choice.description) for choice in options)


DEFAULT_OUTPUT_DIR = "//img3d/"
HISTORY_KEPT = 20


def _poll_image(_self, image) -> bool:
    return image.type in {"IMAGE", "MULTILAYER", "UV_TEST"}


def _select_history_entry(props, context) -> None:
    """Clicking a history row selects its object (if it is still in the view layer)."""
    if not 0 <= props.history_index < len(props.history):
        return
    obj = props.history[props.history_index].object
    view_layer = context.view_layer or bpy.context.view_layer
    if obj is None or view_layer is None or obj.name not in context.scene.objects:
        return
    for other in view_layer.objects:
        other.select_set(False)
    try:
        obj.select_set(True, view_layer=view_layer)
    except RuntimeError:  # linked to the scene but excluded from this view layer
        return
    view_layer.objects.active = obj


class IMG3D_HistoryEntry(bpy.types.PropertyGroup):
    """One past generation in this file (``name`` is the object's name at the time)."""

    object: PointerProperty(type=bpy.types.Object)
    seed: IntProperty(default=0, min=0)
    grid_size: IntProperty(default=0, min=0)
    when: StringProperty(default="", description="Local time it ended")
    status: StringProperty(default="", description="Finished, failed or cancelled")
    detail: StringProperty(default="", description="The summary line or the error")
    glb: StringProperty(default="", description="The GLB file of this result")


class IMG3D_Props(bpy.types.PropertyGroup):
    """Generation settings of a scene (``scene.img3d``)."""

    mode: EnumProperty(name="Mode", items=enum_items(choices.MODES), default=choices.MODES[0].name)
    image_source: EnumProperty(name="Source", items=IMAGE_SOURCE_ITEMS, default="FILE")
    image_path: StringProperty(
        name="Image", description="Picture of a single object", subtype="FILE_PATH"
    )
    image: PointerProperty(
        name="Blender Image",
        description="An image already loaded in Blender",
        type=bpy.types.Image,
        poll=_poll_image,
    )
    prompt: StringProperty(name="Prompt", description="What to generate, e.g. 'a red chair'")
    model: StringProperty(
        name="Model",
        description="Hub id or local folder; empty uses the preferences' model for the mode",
        default="",
    )
    steps: IntProperty(
        name="Steps",
        description="Sampling steps (more is slower and usually cleaner)",
        default=defaults.DEFAULT_STEPS,
        min=1,
        soft_max=256,
        max=1000,
    )
    use_default_guidance: BoolProperty(
        name="Default Guidance",
        description="Use 3.0 for images and 15.0 for text, as Shap-E recommends",
        default=True,
    )
    guidance: FloatProperty(
        name="Guidance",
        description="How strongly the result follows the input (classifier-free guidance)",
        default=defaults.DEFAULT_GUIDANCE_IMAGE,
        min=0.0,
        max=100.0,
        soft_max=30.0,
    )
    seed: IntProperty(name="Seed", default=defaults.DEFAULT_SEED, min=0)
    random_seed: BoolProperty(
        name="Random Seed", description="Pick a new seed for every run", default=False
    )
    batch: IntProperty(
        name="Variants",
        description="How many variants to generate in one pass",
        default=1,
        min=1,
        max=defaults.MAX_BATCH,
    )
    grid_size: IntProperty(
        name="Grid Size",
        description="Marching-cubes resolution (128 matches the reference)",
        default=defaults.DEFAULT_GRID_SIZE,
        min=defaults.MIN_GRID_SIZE,
        max=defaults.MAX_GRID_SIZE,
    )
    device: EnumProperty(
        name="Device", items=enum_items(choices.DEVICES), default=choices.DEVICES[0].name
    )
    schedule: EnumProperty(
        name="Schedule", items=enum_items(choices.SCHEDULES), default=defaults.DEFAULT_SCHEDULE
    )
    background: EnumProperty(
        name="Background",
        description="How the object is cut out of its picture before generating",
        items=enum_items(choices.BACKGROUNDS),
        default=defaults.DEFAULT_BACKGROUND,
    )
    border: FloatProperty(
        name="Border",
        description="Empty margin around the object, as a fraction of the image",
        default=defaults.DEFAULT_BORDER,
        min=0.0,
        max=0.45,
        subtype="FACTOR",
    )
    process_mesh: BoolProperty(
        name="Clean Up", description="Clean, repair and decimate the raw mesh", default=True
    )
    target_faces: IntProperty(
        name="Target Faces",
        description="Decimate to about this many faces (0 keeps all)",
        default=defaults.DEFAULT_TARGET_FACES,
        min=0,
    )
    repair: BoolProperty(name="Repair", description="Close small holes", default=True)
    smooth_iterations: IntProperty(
        name="Smooth",
        description="Volume-preserving smoothing iterations (0 is off)",
        default=defaults.DEFAULT_SMOOTH_ITERATIONS,
        min=0,
        max=100,
    )
    size: FloatProperty(
        name="Size",
        description="Longest side of the result in scene units (0 keeps Shap-E's scale)",
        default=0.0,
        min=0.0,
        subtype="DISTANCE",
    )
    placement: EnumProperty(name="Place At", items=PLACEMENT_ITEMS, default="CURSOR")
    shading: EnumProperty(name="Shading", items=SHADING_ITEMS, default="SMOOTH")
    output_dir: StringProperty(
        name="Output",
        description=(
            "Folder for the results (a GLB, latents and the model input per variant); "
            "// is beside the .blend (an unsaved file uses the extension's own folder "
            "until it is saved)"
        ),
        subtype="DIR_PATH",
        default=DEFAULT_OUTPUT_DIR,
    )
    bake_texture: BoolProperty(
        name="Bake Texture",
        description=(
            "Bake the vertex colours into a UV texture in the GLB, for engines and viewers "
            "that ignore vertex colours (takes a few seconds per variant)"
        ),
        default=False,
    )
    texture_size: IntProperty(
        name="Texture Size",
        description="Width and height of the baked texture in pixels",
        default=defaults.DEFAULT_TEXTURE_SIZE,
        min=defaults.MIN_TEXTURE_SIZE,
        max=defaults.MAX_TEXTURE_SIZE,
    )
    history: CollectionProperty(type=IMG3D_HistoryEntry)
    history_index: IntProperty(default=-1, update=_select_history_entry)
    show_advanced: BoolProperty(name="Advanced", default=False)
    show_system: BoolProperty(name="System", default=False)


CLASSES = (IMG3D_HistoryEntry, IMG3D_Props)


def register_properties() -> None:
    bpy.types.Scene.img3d = PointerProperty(type=IMG3D_Props)


def unregister_properties() -> None:
    del bpy.types.Scene.img3d
