"""Scene settings (saved with the .blend) and transient job state (WindowManager).

Every default comes from ``core.settings`` so the panel, the operators, the CLI
and the tests agree on one value.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core import settings as defaults

MODE_ITEMS = (
    ("IMAGE", "Image", "Generate from a picture of one object"),
    ("TEXT", "Text", "Generate from a text prompt"),
)
IMAGE_SOURCE_ITEMS = (
    ("FILE", "File", "Read the picture from a file on disk"),
    ("BLENDER", "Blender Image", "Use an image already loaded in Blender"),
)
DEVICE_ITEMS = (
    ("AUTO", "Auto", "CUDA if available, else Apple MPS, else the CPU"),
    ("CPU", "CPU", "Run on the processor (slow but always available)"),
    ("CUDA", "CUDA", "Run on an NVIDIA GPU"),
    ("MPS", "MPS", "Run on Apple Silicon's GPU"),
)
SCHEDULE_ITEMS = (
    ("SHAP_E", "Shap-E", "OpenAI's reference sampler (Karras sigmas 160 to 0.001)"),
    ("DIFFUSERS", "Diffusers", "The diffusers port's schedule (same latents as diffusers)"),
)
PLACEMENT_ITEMS = (
    ("CURSOR", "3D Cursor", "Place the new object at the 3D cursor"),
    ("ORIGIN", "World Origin", "Place the new object at the world origin"),
)
SHADING_ITEMS = (
    ("SMOOTH", "Smooth", "Smooth shading"),
    ("FLAT", "Flat", "Flat shading"),
)


def enum_to_core(value: str) -> str:
    """Blender enum identifier → the core's lower-case name (``SHAP_E`` → ``shap-e``)."""
    return value.lower().replace("_", "-")


def _poll_image(_self, image) -> bool:
    return image.type in {"IMAGE", "MULTILAYER", "UV_TEST"}


class IMG3D_Props(bpy.types.PropertyGroup):
    """Generation settings of a scene (``scene.img3d``)."""

    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="IMAGE")
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
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    schedule: EnumProperty(name="Schedule", items=SCHEDULE_ITEMS, default="SHAP_E")
    remove_background: BoolProperty(
        name="Remove Background",
        description="Cut the object out of a plain background before generating",
        default=True,
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
    show_advanced: BoolProperty(name="Advanced", default=False)
    show_system: BoolProperty(name="System", default=False)


class IMG3D_JobState(bpy.types.PropertyGroup):
    """Transient state of the running job (``window_manager.img3d_job``; never saved)."""

    running: BoolProperty(default=False)
    phase: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    eta_seconds: FloatProperty(default=-1.0)
    message: StringProperty(default="")
    last_error: StringProperty(default="")
    last_summary: StringProperty(default="")
    preview_image: StringProperty(default="")


CLASSES = (IMG3D_Props, IMG3D_JobState)


def register_properties() -> None:
    bpy.types.Scene.img3d = PointerProperty(type=IMG3D_Props)
    bpy.types.WindowManager.img3d_job = PointerProperty(type=IMG3D_JobState)


def unregister_properties() -> None:
    del bpy.types.WindowManager.img3d_job
    del bpy.types.Scene.img3d
