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
from typing import Any, Optional

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


UNSAVED_FOLDER = "unsaved"


@dataclass
class ImportOptions:
    """How a result lands in the scene (scene settings, not part of the core request).

    ``location`` overrides the placement (Generate Again puts its result beside
    the object it came from).
    """

    at_cursor: bool = True
    smooth: bool = True
    location: Optional[tuple[float, float, float]] = None
    bake_size: Optional[int] = None  # bake vertex colours into a texture this wide


def import_options(context: bpy.types.Context) -> ImportOptions:
    props = context.scene.img3d
    return ImportOptions(
        at_cursor=props.placement == "CURSOR",
        smooth=props.shading == "SMOOTH",
        bake_size=props.texture_size if props.bake_texture else None,
    )


def unsaved_results_folder() -> Path:
    """Where results of a never-saved file go: the extension's own user folder."""
    from .prefs import user_data_dir

    return user_data_dir(UNSAVED_FOLDER)


def output_folder(context: bpy.types.Context) -> Path:
    """The scene's output folder as an absolute path.

    A ``//`` folder needs a saved .blend; until there is one the results go to
    :func:`unsaved_results_folder` (and move beside the .blend when it is first
    saved, see ``addon``).
    """
    text = context.scene.img3d.output_dir or "//img3d/"
    if text.startswith("//") and not bpy.data.filepath:
        return unsaved_results_folder()
    return Path(bpy.path.abspath(text))


def check_overrides(overrides: dict[str, Any]) -> None:
    """A script's unknown keyword is a ``TypeError``, as for any Python call."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")


def blender_image_pixels(image: bpy.types.Image):
    """A Blender image's current pixels, ``(height, width, channels)`` bottom-up, and
    whether they are linear (float buffers not in sRGB)."""
    import numpy as np

    width, height = image.size
    if width == 0 or height == 0:
        raise Img3DError(
            f"The Blender image '{image.name}' has no pixels: open or render it first."
        )
    channels = image.channels
    pixels = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    linear = bool(image.is_float) and image.colorspace_settings.name != "sRGB"
    return pixels.reshape(height, width, channels), linear


def blender_image_to_pil(image: bpy.types.Image, max_pixels: int):
    """A Blender image's current pixels as a PIL image (linear float buffers → sRGB)."""
    from ..core.images.blender_pixels import image_from_pixels

    pixels, linear = blender_image_pixels(image)
    return image_from_pixels(pixels, linear=linear, max_pixels=max_pixels)


def blender_image_for_server(image: bpy.types.Image):
    """The pixels as the GPU server takes them: sRGB floats, bottom-up, no PIL needed here.

    The server reads the array with the same ``image_from_pixels`` a local run
    uses, so only the sRGB curve for linear buffers is applied on this side.
    """
    from ..core.images.blender_pixels import linear_to_srgb

    pixels, linear = blender_image_pixels(image)
    if linear:
        colour = 1 if pixels.shape[2] <= 2 else 3  # never alpha
        pixels[..., :colour] = linear_to_srgb(pixels[..., :colour])
    return pixels


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
        if prefs.remote:
            image = blender_image_for_server(props.image)
        else:
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
            border=props.border,
            background=props.background,
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
    return reuse_prepared_input(request, props)


# --- the prepared input: Preview shows it, Generate reuses it -----------------------------
@dataclass
class PreparedInput:
    """The last Preview's model input and the settings + source it was made from."""

    key: tuple
    image: Any  # PIL image, exactly what the model will see
    report: dict[str, Any]
    label: str


_PREPARED: list[PreparedInput] = []  # a one-entry cache, not state: losing it costs a second


def input_key(request: defaults.Request, props) -> Optional[tuple]:
    """What the prepared image depends on: the source (file stamp or Blender pixels), settings."""
    from dataclasses import astuple

    image = request.image
    if isinstance(image, Path):
        try:
            stat = image.stat()
        except OSError:
            return None
        source: tuple = ("file", str(image.resolve()), stat.st_mtime_ns, stat.st_size)
    elif props.image is not None:
        import hashlib

        import numpy as np

        pixels = np.asarray(image)
        source = ("blender", props.image.name, hashlib.sha256(pixels.tobytes()).hexdigest())
    else:
        return None
    return source + astuple(request.image_settings)


def prepare_input(context: bpy.types.Context) -> PreparedInput:
    """Prepare the scene's image input exactly as Generate will, and remember it."""
    from ..core.images import prepare_image
    from ..core.pipeline import source_label

    props = context.scene.img3d
    request = request_from_scene(context, {"seed": props.seed})  # no new random seed
    if request.mode != "image":
        raise ConfigError("Preview Input shows a picture's cut-out: switch the mode to Image.")
    if not request.preprocess:  # the settings matched an earlier preview
        return _PREPARED[0]
    key = input_key(request, props)
    prepared = prepare_image(
        request.image,
        request.image_settings,
        cache_dir=request.generation.cache_dir,
        allow_download=request.generation.allow_download,
    )
    entry = PreparedInput(key, prepared.image, prepared.report.to_dict(), source_label(request))
    _PREPARED[:] = [entry] if key is not None else []
    return entry


def reuse_prepared_input(request: defaults.Request, props) -> defaults.Request:
    """Hand Generate the previewed image when the source and image settings still match.

    The model gets the same pixels either way (preparation is deterministic);
    this only skips doing the work twice.
    """
    if request.mode != "image" or not _PREPARED or not request.preprocess:
        return request
    entry = _PREPARED[0]
    if input_key(request, props) != entry.key:
        return request
    # Recorded as the file it came from ("stool.png"), as without the preview.
    request.image_name = request.settings_dict()["image"]
    request.image = entry.image
    request.preprocess = False
    request.name = request.name or entry.label
    return request


def describe_preparation(report: dict[str, Any]) -> list[str]:
    """Short lines for the panel: how the object was found and framed."""
    method = {
        "alpha": "cut out by its transparency",
        "flood": "background removed (plain backdrop)",
        "saliency": "background removed (offline remover)",
        "learned": "background removed (learned remover)",
        "none": "used as it is",
    }.get(str(report.get("method")), str(report.get("method")))
    x0, y0, x1, y1 = report.get("bbox", [0, 0, 0, 0])
    width, height = report.get("original_size", [0, 0])
    confidence = report.get("confidence")
    if confidence is not None and report.get("method") != "none":
        method += f", confidence {float(confidence):.2f}"
    lines = [
        f"Object {method}",
        f"Covers {float(report.get('mask_coverage', 0.0)):.0%} of the picture",
        f"Framed {x1 - x0}×{y1 - y0} px of {width}×{height} with a "
        f"{float(report.get('border', 0.0)):.0%} border",
    ]
    return lines + [str(note) for note in report.get("notes", [])]


# --- re-running a result ---------------------------------------------------------------
# Settings of the machine, not of the result: taken from the preferences at re-run time.
MACHINE_SETTINGS = ("cache_dir", "allow_download")


def rerun_record(request: defaults.Request, files: Any) -> dict[str, Any]:
    """What an object keeps (``img3d_request``) to run its generation again.

    In image mode the input becomes the variant's saved model input with
    preprocessing off, so a re-run feeds the model exactly the same pixels
    even when the original file moved or was a Blender image.
    """
    from ..core.pipeline import source_label

    data = request.to_dict()
    data["name"] = source_label(request)
    if request.mode == "image":
        data["image_name"] = request.settings_dict()["image"]  # the picture, not the copy
        data["image"] = {"kind": "path", "value": str(files.model_input)}
        data["preprocess"] = False
    for key in ("outputs", "latents_out", "save_input", "report_path"):
        data.pop(key, None)
    for key in MACHINE_SETTINGS:
        data["generation"].pop(key, None)
    data["generation"].pop("revision", None)
    return data


def request_from_record(record: dict[str, Any], **changes: Any) -> defaults.Request:
    """The request an object recorded, with today's machine settings and ``changes``.

    ``changes`` are generation settings (``seed``, ``batch``, ``grid_size``…).
    """
    from dataclasses import replace

    from .prefs import get_preferences

    prefs = get_preferences()
    request = defaults.Request.from_dict(record)
    if isinstance(request.image, Path) and not request.image.is_file():
        raise ConfigError(
            f"The saved model input {request.image} is gone: import the GLB again with its "
            "files, or generate from the panel."
        )
    model = request.generation.model
    revision = (
        prefs.revision if model in (defaults.IMAGE_MODEL_ID, defaults.TEXT_MODEL_ID) else None
    )
    request.generation = replace(
        request.generation,
        cache_dir=str(prefs.resolved_cache_dir()),
        allow_download=prefs.downloads_allowed(),
        revision=revision,
        **changes,
    )
    request.validate()
    return request


def copy_record_to_scene(record: dict[str, Any], props) -> None:
    """Put a recorded request's settings into the panel (``scene.img3d``)."""
    generation, mesh, image = record["generation"], record["mesh"], record["image_settings"]
    if record.get("prompt") is not None:
        props.mode = "text"
        props.prompt = record["prompt"]
    else:
        props.mode = "image"
        props.image_source = "FILE"
        props.image_path = str((record.get("image") or {}).get("value") or "")
    props.model = generation.get("model") or ""
    props.steps = generation["steps"]
    props.use_default_guidance = generation.get("guidance") is None
    if generation.get("guidance") is not None:
        props.guidance = generation["guidance"]
    props.seed = generation["seed"]
    props.batch = generation["batch"]
    props.schedule = generation["schedule"]
    props.device = generation["device"]
    props.grid_size = generation["grid_size"]
    # Older records have only remove_background (off meant: keep the background).
    kept = not image.get("remove_background", True)
    props.background = "keep" if kept else image.get("background", defaults.DEFAULT_BACKGROUND)
    props.border = image["border"]
    props.process_mesh = mesh["enabled"]
    props.repair = mesh["repair"]
    props.target_faces = mesh["target_faces"]
    props.smooth_iterations = mesh["smooth_iterations"]
    props.size = mesh.get("size") or 0.0
