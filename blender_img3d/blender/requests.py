"""Scene settings + operator overrides → the core ``Request``, in the core's own names.

The Generate operator, the Python API and (later) Generate Again all build
their request here, so a setting means the same wherever it is given. Every
override is named like the CLI flag and takes the core's value (``"shap-e"``,
``"cpu"``): the scene's enums store those names too, so nothing is translated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from ..core import settings as defaults
from ..core.errors import ConfigError, Img3DError

# Settings a script or the operator may give explicitly; the rest come from the scene.
OVERRIDABLE = (
    "image_path",
    "prompt",
    "model",
    "steps",
    "guidance",
    "seed",
    "batch",
    "grid_size",
    "device",
    "target_faces",
    "schedule",
)


@dataclass
class ImportOptions:
    """How a result lands in the scene (scene settings, not part of the core request)."""

    at_cursor: bool = True
    smooth: bool = True


def import_options(context: bpy.types.Context) -> ImportOptions:
    props = context.scene.img3d
    return ImportOptions(at_cursor=props.placement == "CURSOR", smooth=props.shading == "SMOOTH")


def check_overrides(overrides: dict[str, Any]) -> None:
    """A script's unknown keyword is a ``TypeError``, as for any Python call."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")


def blender_image_to_pil(image: bpy.types.Image, max_pixels: int):
    """A Blender image's current pixels as a PIL image (linear float buffers → sRGB)."""
    import numpy as np

    from ..core.images.blender_pixels import image_from_pixels

    width, height = image.size
    if width == 0 or height == 0:
        raise Img3DError(
            f"The Blender image '{image.name}' has no pixels: open or render it first."
        )
    channels = image.channels
    pixels = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    linear = bool(image.is_float) and image.colorspace_settings.name != "sRGB"
    return image_from_pixels(
        pixels.reshape(height, width, channels), linear=linear, max_pixels=max_pixels
    )


def request_from_scene(context: bpy.types.Context, overrides: dict[str, Any]) -> defaults.Request:
    """Build the core Request from scene settings, preferences and overrides; validated.

    An ``image_path`` or ``prompt`` override also picks the mode; otherwise the
    scene's mode and image source decide where the input comes from.
    """
    from .prefs import get_preferences

    props = context.scene.img3d
    prefs = get_preferences()

    def value(name: str, scene_value: Any) -> Any:
        return overrides[name] if name in overrides else scene_value

    if "prompt" in overrides and "image_path" in overrides:
        raise ConfigError("Give either image_path or prompt, not both.")
    text_mode = "prompt" in overrides or ("image_path" not in overrides and props.mode == "text")
    prompt: Any = None
    image: Any = None
    name = None
    if text_mode:
        prompt = value("prompt", props.prompt)
        if not prompt.strip():
            raise ConfigError("Type a prompt first, e.g. 'a red chair'.")
    elif "image_path" in overrides or props.image_source == "FILE":
        image_path = value("image_path", props.image_path)
        if not image_path:
            raise ConfigError("Pick an image file first (or switch to a Blender image or Text).")
        image = Path(bpy.path.abspath(image_path))
    elif props.image is not None:
        image = blender_image_to_pil(props.image, defaults.MAX_PIXELS)
        name = Path(props.image.name).stem
    else:
        raise ConfigError("Pick a Blender image first (or switch to a file or Text).")

    mode = "text" if prompt is not None else "image"
    model = value("model", props.model) or (
        prefs.text_model if mode == "text" else prefs.image_model
    )
    seed = value("seed", props.seed)
    if props.random_seed and "seed" not in overrides:
        seed = random.randrange(0, 2**31 - 1)
        props.seed = seed
    guidance = overrides.get("guidance")
    if guidance is None and not props.use_default_guidance:
        guidance = props.guidance
    device = value("device", props.device)
    if device == "auto" and "device" not in overrides:
        device = prefs.device
    revision = (
        prefs.revision if model in (defaults.IMAGE_MODEL_ID, defaults.TEXT_MODEL_ID) else None
    )
    request = defaults.Request(
        image=image,
        prompt=prompt,
        name=name,
        image_settings=defaults.ImageSettings(
            remove_background=props.remove_background, border=props.border
        ),
        generation=defaults.GenerationSettings(
            model=model,
            revision=revision,
            cache_dir=str(prefs.resolved_cache_dir()),
            allow_download=prefs.downloads_allowed(),
            steps=value("steps", props.steps),
            guidance=guidance,
            seed=seed,
            batch=value("batch", props.batch),
            schedule=value("schedule", props.schedule),
            device=device,
            grid_size=value("grid_size", props.grid_size),
        ),
        mesh=defaults.MeshSettings(
            enabled=props.process_mesh,
            repair=props.repair,
            target_faces=value("target_faces", props.target_faces),
            smooth_iterations=props.smooth_iterations,
            size=props.size or None,
        ),
    )
    request.validate()
    return request
