"""Defaults and the Request/Result shapes: one source of truth for CLI, panel and tests.

The generation defaults reproduce the product we replace, which ran OpenAI's
reference sampler (``sample_latents(..., use_karras=True, karras_steps=64,
sigma_min=1e-3, sigma_max=160, s_churn=0, clip_denoised=True)``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from . import choices, exporters
from .errors import ConfigError, ExportError
from .exporters.dxf import DEFAULT_ENTITY, ENTITY_KINDS
from .exporters.units import DEFAULT_UNIT, length_unit
from .serialize import EqualByDict

# --- models -----------------------------------------------------------------
IMAGE_MODEL_ID = "openai/shap-e-img2img"
TEXT_MODEL_ID = "openai/shap-e"
DEFAULT_REVISION = "main"

# --- sampling ---------------------------------------------------------------
DEFAULT_STEPS = 64
DEFAULT_GUIDANCE_IMAGE = 3.0
DEFAULT_GUIDANCE_TEXT = 15.0
DEFAULT_SIGMA_MIN = 1e-3
DEFAULT_SIGMA_MAX = 160.0
SCHEDULES = choices.names(choices.SCHEDULES)
DEFAULT_SCHEDULE = SCHEDULES[0]
DEVICES = choices.names(choices.DEVICES)
DTYPES = choices.names(choices.DTYPES)
MODES = choices.names(choices.MODES)
SDF_METHODS = choices.names(choices.SDF_METHODS)
BACKGROUNDS = choices.names(choices.BACKGROUNDS)
DEFAULT_BACKGROUND = BACKGROUNDS[0]
DEFAULT_SEED = 0

# --- decoding ---------------------------------------------------------------
DEFAULT_GRID_SIZE = 128
DEFAULT_QUERY_BATCH = None  # None: QUERY_BATCH_BY_DEVICE for the decoding device
# Points per renderer-MLP call. The CPU wants small batches whose activations stay
# in cache (measured: 2048 beats 262144 ~3x on a 2-core EPYC); GPUs want big ones.
QUERY_BATCH_BY_DEVICE = {"cpu": 2048, "mps": 2**16, "cuda": 2**18}
DEFAULT_SDF_METHOD = SDF_METHODS[0]

# --- bounds: what Request.validate accepts (the CLI and the panel read them too)
MAX_STEPS = 1000  # 15x the default; each step is two prior calls
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1  # fits int64 (numpy, JSON readers, Blender's metadata)
MAX_BATCH = 16
MAX_SIGMA = 1e4  # far past the prior's trained range (about 0.1 to 400)
MIN_GRID_SIZE = 8
MAX_GRID_SIZE = 512
MAX_QUERY_BATCH = 2**22  # points per MLP call: ~4 GiB of activations per layer
MAX_TARGET_FACES = 10_000_000
MAX_KEEP_COMPONENTS = 10_000
MAX_SMOOTH_ITERATIONS = 1_000
MIN_SIZE = 1e-6  # longest side in Blender metres: a micrometre ...
MAX_SIZE = 1e6  # ... to a thousand kilometres; CAD units must still fit

# --- image input ------------------------------------------------------------
DEFAULT_BORDER = 0.15
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 64_000_000
# The learned background remover (``--background learned``): BiRefNet lite (MIT licence,
# ZhengPeng7/BiRefNet), exported to ONNX by the onnx-community (model card: MIT). It runs
# through onnxruntime, so no code from the hub is ever executed; it sits in the Hugging
# Face cache beside Shap-E and is fetched by the same consent (``--allow-download``).
BACKGROUND_MODEL_ID = "onnx-community/BiRefNet_lite-ONNX"
BACKGROUND_MODEL_FILE = "onnx/model.onnx"
# Below this confidence (0..1) a cut is not trusted and the picture is kept whole;
# below BACKGROUND_SURE_CONFIDENCE it is used but called doubtful (core/images/background.py;
# a cut of a busy photo is called doubtful at any confidence).
BACKGROUND_MIN_CONFIDENCE = 0.55
BACKGROUND_SURE_CONFIDENCE = 0.7

# --- mesh processing --------------------------------------------------------
DEFAULT_TARGET_FACES = 20_000
DEFAULT_KEEP_COMPONENTS = 0  # 0: every real part; only specks go (below)
# Pieces with less than this fraction of the whole surface area are specks and go.
# At grid 128 a one- to few-voxel floater is 0.001-0.2 % of a typical object's area;
# a part holding 1 % of the object's volume has several % of its area, so it stays.
SPECK_AREA_FRACTION = 0.0025
DEFAULT_SMOOTH_ITERATIONS = 0

# --- export -----------------------------------------------------------------
EXPORT_FORMATS = exporters.FORMATS  # the writer registry (live, read-only): name -> format
DEFAULT_UNITS = DEFAULT_UNIT
DXF_ENTITIES = ENTITY_KINDS
DEFAULT_DXF_ENTITY = DEFAULT_ENTITY
# Texture bake (vertex colours -> a UV texture, core/mesh/bake.py): its width = height.
# 1024: 0.1 % mean colour error on the 20k-face gradient sphere (benchmarks/bench_bake.py);
# 8192 px is 256 MiB of RGBA once a viewer loads it, the most an asset should ask for.
DEFAULT_TEXTURE_SIZE = 1024
MIN_TEXTURE_SIZE = 64
MAX_TEXTURE_SIZE = 8192

# --- presets ----------------------------------------------------------------
# Draft, Standard and Final: the sampling and decoding settings a preset sets (not the input
# or the seed). Standard is the reference defaults. Blender writes them as preset files
# (blender/presets.py); the server's page offers them (core/server/web.py).
PRESET_SETTINGS = ("steps", "grid_size", "target_faces", "smooth_iterations")
GENERATION_PRESETS: dict[str, dict[str, int]] = {
    "Draft": {"steps": 16, "grid_size": 64, "target_faces": 5_000, "smooth_iterations": 0},
    "Standard": {
        "steps": DEFAULT_STEPS,
        "grid_size": DEFAULT_GRID_SIZE,
        "target_faces": DEFAULT_TARGET_FACES,
        "smooth_iterations": DEFAULT_SMOOTH_ITERATIONS,
    },
    "Final": {
        "steps": DEFAULT_STEPS,
        "grid_size": 256,
        "target_faces": 0,
        "smooth_iterations": DEFAULT_SMOOTH_ITERATIONS,
    },
}
DEFAULT_PRESET = "Standard"

ImageSource = Union[str, Path, bytes, Any]  # path, encoded bytes, PIL image or numpy pixels


@dataclass
class ImageSettings:
    """How an input picture becomes the model's input (see the core/images package)."""

    remove_background: bool = True  # False: as ``background="keep"`` (older requests)
    border: float = DEFAULT_BORDER
    use_alpha: bool = True
    background: str = DEFAULT_BACKGROUND  # one of BACKGROUNDS
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS


@dataclass
class GenerationSettings:
    """Model choice, sampler and decoder settings."""

    model: Optional[str] = None  # None: IMAGE_MODEL_ID or TEXT_MODEL_ID by mode
    revision: Optional[str] = None
    cache_dir: Optional[str] = None
    allow_download: bool = False
    steps: int = DEFAULT_STEPS
    guidance: Optional[float] = None  # None: DEFAULT_GUIDANCE_IMAGE / _TEXT by mode
    seed: int = DEFAULT_SEED
    batch: int = 1
    schedule: str = DEFAULT_SCHEDULE
    device: str = "auto"
    dtype: str = "auto"
    sigma_min: float = DEFAULT_SIGMA_MIN
    sigma_max: float = DEFAULT_SIGMA_MAX
    grid_size: int = DEFAULT_GRID_SIZE
    query_batch: Optional[int] = DEFAULT_QUERY_BATCH
    sdf_method: str = DEFAULT_SDF_METHOD  # "adaptive" (coarse to fine) or "dense"


@dataclass
class MeshSettings:
    """Post-processing applied to the raw marching-cubes mesh (see the core.mesh package)."""

    enabled: bool = True
    repair: bool = True
    keep_components: int = DEFAULT_KEEP_COMPONENTS
    target_faces: int = DEFAULT_TARGET_FACES  # 0: no decimation
    smooth_iterations: int = DEFAULT_SMOOTH_ITERATIONS
    size: Optional[float] = None  # longest side after scaling; None keeps Shap-E's scale


@dataclass
class ExportSettings:
    """Format-specific writer options (the unit is ``Request.units``; see core/exporters)."""

    dxf_entity: str = DEFAULT_DXF_ENTITY  # "polyface" opens everywhere; "mesh": Autodesk only
    merge_coplanar: bool = True  # STEP: coplanar triangles become one planar face
    # Bake the vertex colours into a UV texture for the formats that carry one (GLB, OBJ);
    # the others are written as usual (see exporters.texture_format_labels()).
    bake_texture: bool = False
    texture_size: int = DEFAULT_TEXTURE_SIZE

    def writer_options(self) -> dict[str, dict[str, Any]]:
        """Options per format name, for ``exporters.export_mesh(format_options=...)``."""
        return {"dxf": {"entity": self.dxf_entity}, "step": {"merge_coplanar": self.merge_coplanar}}


@dataclass(eq=False)
class Request(EqualByDict):
    """Everything one generation needs; the same object for panel, operators and CLI.

    ``to_dict``/``from_dict`` carry it across a process or machine boundary (a
    farm worker, the GPU server): JSON values plus the image as bytes or pixels
    (see ``core.serialize``); ``from_dict(r.to_dict()) == r``.
    """

    image: Optional[ImageSource] = None
    prompt: Optional[str] = None
    name: Optional[str] = None
    # The picture's name for the record (settings, the GLB's extras) when ``image`` holds
    # pixels prepared from a file ("stool.png" after Preview Input); None: from ``image``.
    image_name: Optional[str] = None
    preprocess: bool = True
    image_settings: ImageSettings = field(default_factory=ImageSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    mesh: MeshSettings = field(default_factory=MeshSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    outputs: list[Path] = field(default_factory=list)
    latents_out: Optional[Path] = None
    save_input: Optional[Path] = None
    report_path: Optional[Path] = None
    units: str = DEFAULT_UNITS  # length unit of CAD files (DXF, STEP); Blender metres in

    @property
    def mode(self) -> str:
        """``"image"`` or ``"text"``."""
        return "text" if self.image is None else "image"

    def model_id(self) -> str:
        return self.generation.model or (IMAGE_MODEL_ID if self.mode == "image" else TEXT_MODEL_ID)

    def guidance(self) -> float:
        if self.generation.guidance is not None:
            return float(self.generation.guidance)
        return DEFAULT_GUIDANCE_IMAGE if self.mode == "image" else DEFAULT_GUIDANCE_TEXT

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible setting or a missing source."""
        if (self.image is None) == (self.prompt is None):
            raise ConfigError("Give exactly one of an image or a text prompt.")
        if self.prompt is not None and not self.prompt.strip():
            raise ConfigError("The prompt is empty: type what to generate, e.g. 'a red chair'.")
        self.validate_settings()

    def validate_settings(self) -> None:
        """Check every setting except the source (for decoding and converting)."""
        g = self.generation
        check_sampling(
            steps=g.steps,
            guidance=g.guidance,
            seed=g.seed,
            batch=g.batch,
            schedule=g.schedule,
            sigma_min=g.sigma_min,
            sigma_max=g.sigma_max,
        )
        parse_device(g.device)
        if g.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {g.dtype!r}.")
        check_decoding(g.grid_size, g.query_batch)
        if g.sdf_method not in SDF_METHODS:
            raise ConfigError(
                f"sdf method must be one of {', '.join(SDF_METHODS)}, got {g.sdf_method!r}."
            )
        if not _is_real(self.image_settings.border) or not 0.0 <= self.image_settings.border < 0.5:
            raise ConfigError(f"border must be in [0, 0.5), got {self.image_settings.border}.")
        check_background(self.image_settings.background)
        m = self.mesh
        _check_whole("target faces", m.target_faces, 0, MAX_TARGET_FACES, "0 turns decimation off")
        _check_whole("keep components", m.keep_components, 0, MAX_KEEP_COMPONENTS, "0 keeps all")
        _check_whole("smooth iterations", m.smooth_iterations, 0, MAX_SMOOTH_ITERATIONS, "0 is off")
        if m.size is not None and not (_is_real(m.size) and MIN_SIZE <= m.size <= MAX_SIZE):
            raise ConfigError(
                f"size (the longest side, in metres) must be between {MIN_SIZE:g} and "
                f"{MAX_SIZE:g}, got {m.size!r}; leave it unset to keep Shap-E's scale."
            )
        if self.export.dxf_entity not in DXF_ENTITIES:
            raise ConfigError(
                f"DXF entity must be one of {', '.join(DXF_ENTITIES)}, "
                f"got {self.export.dxf_entity!r}."
            )
        for out in self.outputs:
            try:
                exporters.format_for_path(out)
            except ExportError:
                raise ConfigError(
                    f"Can't write {out}: use one of {exporters.suffix_list()}."
                ) from None
        check_bake(self.export, [exporters.format_for_path(out) for out in self.outputs])
        try:  # checked here, not first at export time after a whole generation
            length_unit(self.units)
        except ExportError as error:
            raise ConfigError(f"units: {error}") from None

    # --- plain data ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data; the image as path text, bytes or a pixel array."""
        return {
            "image": _encode_image(self.image),
            "prompt": self.prompt,
            "name": self.name,
            "image_name": self.image_name,
            "preprocess": self.preprocess,
            "image_settings": asdict(self.image_settings),
            "generation": asdict(self.generation),
            "mesh": asdict(self.mesh),
            "export": asdict(self.export),
            "outputs": [str(path) for path in self.outputs],
            "latents_out": _path_text(self.latents_out),
            "save_input": _path_text(self.save_input),
            "report_path": _path_text(self.report_path),
            "units": self.units,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Request":
        """Rebuild a request; unknown or mistyped keys raise :class:`ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"A request must be a mapping of settings, got {type(data).__name__}."
            )
        _refuse_unknown("request", data, {f.name for f in fields(cls)})
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "image":
                kwargs[key] = _decode_image(value)
            elif key in _SECTIONS:
                kwargs[key] = _section_from_dict(key, _SECTIONS[key], value)
            elif key == "outputs":
                kwargs[key] = [Path(path) for path in value or []]
            elif key in ("latents_out", "save_input", "report_path"):
                kwargs[key] = None if value is None else Path(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def settings_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-serialisable data (for reports and custom props)."""
        return {
            "mode": self.mode,
            "prompt": self.prompt,
            "image": None
            if self.image is None
            else self.image_name or _describe_source(self.image, self.name),
            "model": self.model_id(),
            "guidance_used": self.guidance(),
            "generation": asdict(self.generation),
            "image_settings": asdict(self.image_settings),
            "mesh": asdict(self.mesh),
        }


def check_sampling(
    *,
    steps: Any,
    guidance: Any,
    seed: Any,
    batch: Any,
    schedule: Any,
    sigma_min: Any,
    sigma_max: Any,
) -> None:
    """The sampler's bounds (``Request.validate`` and direct callers of the engine share them)."""
    _check_whole("steps", steps, 1, MAX_STEPS, f"the default is {DEFAULT_STEPS}")
    if guidance is not None and not (
        _is_real(guidance) and math.isfinite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE
    ):
        raise ConfigError(
            f"guidance must be a number between 0 and {MAX_GUIDANCE:g} (e.g. "
            f"{DEFAULT_GUIDANCE_IMAGE:g} for images, {DEFAULT_GUIDANCE_TEXT:g} for text), "
            f"got {guidance!r}."
        )
    _check_whole("seed", seed, 0, MAX_SEED, "any whole number from 0 up")
    _check_whole("batch", batch, 1, MAX_BATCH, "the number of variants")
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}.")
    if not (
        _is_real(sigma_min) and _is_real(sigma_max) and 0.0 < sigma_min < sigma_max <= MAX_SIGMA
    ):
        raise ConfigError(
            f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max <= {MAX_SIGMA:g}, "
            f"got {sigma_min!r} and {sigma_max!r} (defaults {DEFAULT_SIGMA_MIN:g} and "
            f"{DEFAULT_SIGMA_MAX:g})."
        )


def check_decoding(grid_size: Any, query_batch: Any) -> None:
    """The decoder's bounds: grid resolution and points per MLP call."""
    default = f"the default is {DEFAULT_GRID_SIZE}"
    _check_whole("grid size", grid_size, MIN_GRID_SIZE, MAX_GRID_SIZE, default)
    if query_batch is not None:  # None: the device's default
        _check_whole("query batch", query_batch, 1, MAX_QUERY_BATCH, "points per network call")


def check_bake(export: ExportSettings, formats: Any = ()) -> None:
    """The bake's bounds, and that at least one of ``formats`` (names) can carry a texture.

    In a multi-format run the bake applies to the formats that carry a texture
    and the others are written as usual; a bake none of the outputs can carry
    is a mistake worth one line. No formats (the Blender results folder, a
    batch's base settings) checks the size only.
    """
    if not export.bake_texture:
        return
    _check_whole(
        "texture size",
        export.texture_size,
        MIN_TEXTURE_SIZE,
        MAX_TEXTURE_SIZE,
        f"width and height of the baked texture in pixels, the default is {DEFAULT_TEXTURE_SIZE}",
    )
    names = [str(name).lower() for name in formats]
    if names and not any(exporters.FORMATS[name].textures for name in names):
        carried = "/".join(names).upper()
        raise ConfigError(
            f"A baked texture can't go into {carried}: only {exporters.texture_format_labels()} "
            "files carry one; add a .glb or .obj output or drop the bake."
        )


def parse_device(name: Any) -> tuple[str, Optional[int]]:
    """``"cuda:1"`` → ``("cuda", 1)``; a name outside :data:`DEVICES` raises :class:`ConfigError`.

    Only the spelling is checked here; whether the device exists on this machine
    is ``core.shap_e.loading.resolve_device``'s question.
    """
    text = name.strip().lower() if isinstance(name, str) else ""
    kind, colon, index = text.partition(":")
    if kind in DEVICES and not colon:
        return kind, None
    if kind == "cuda" and index.isdigit():
        return kind, int(index)
    raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}.")


def check_background(name: Any) -> None:
    """Raise :class:`ConfigError` unless ``name`` is one of :data:`BACKGROUNDS`."""
    if name not in BACKGROUNDS:
        raise ConfigError(
            f"background must be one of {', '.join(BACKGROUNDS)}, got {name!r} "
            "(auto: learned if downloaded, else the offline remover; keep: no removal)."
        )


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_whole(name: str, value: Any, low: int, high: int, hint: str) -> None:
    # numpy integers count (values read from arrays); bools and floats don't.
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        raise ConfigError(f"{name} must be a whole number, got {value!r} ({hint}).")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value} ({hint}).")


_SECTIONS = {
    "image_settings": ImageSettings,
    "generation": GenerationSettings,
    "mesh": MeshSettings,
    "export": ExportSettings,
}


def _refuse_unknown(where: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"Unknown {where} setting(s): {', '.join(unknown)}; "
            f"known ones are {', '.join(sorted(known))}."
        )


# Settings an older version wrote that mean nothing now: accepted and dropped.
# ``allow_rembg`` (an optional rembg install) gave way to ``background`` and the
# learned remover fetched with the model-download consent.
_RETIRED = {"image_settings": frozenset({"allow_rembg"})}


def _section_from_dict(name: str, cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"'{name}' must be a mapping of settings, got {type(value).__name__}.")
    retired = _RETIRED.get(name, frozenset())
    value = {key: item for key, item in value.items() if key not in retired}
    _refuse_unknown(name, value, {f.name for f in fields(cls)})
    return cls(**value)


def _path_text(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


_PLAIN_PIL_MODES = ("L", "LA", "RGB", "RGBA")


def _encode_image(image: Any) -> Optional[dict[str, Any]]:
    """A source as ``{"kind": ..., "value": ...}`` keeping str and Path apart."""
    if image is None:
        return None
    if isinstance(image, Path):
        return {"kind": "path", "value": str(image)}
    if isinstance(image, str):
        return {"kind": "str", "value": image}
    if isinstance(image, (bytes, bytearray, memoryview)):
        return {"kind": "bytes", "value": bytes(image)}
    import numpy as np

    if isinstance(image, np.ndarray):
        return {"kind": "pixels", "value": image}
    if hasattr(image, "mode") and hasattr(image, "tobytes"):  # a PIL image
        # Palette, CMYK, 16-bit... modes travel as RGBA pixels: what loading would make of them.
        mode = image.mode if image.mode in _PLAIN_PIL_MODES else "RGBA"
        return {"kind": "pil", "mode": mode, "value": np.asarray(image.convert(mode))}
    raise ConfigError(f"Can't carry an image of type {type(image).__name__} in a request.")


def _decode_image(encoded: Optional[dict[str, Any]]) -> Any:
    if encoded is None:
        return None
    kind = encoded.get("kind") if isinstance(encoded, dict) else None
    value = encoded.get("value") if isinstance(encoded, dict) else None
    if kind == "path":
        return Path(value)
    if kind == "str":
        return str(value)
    if kind == "bytes":
        return bytes(value)
    import numpy as np

    if kind == "pixels":
        return np.asarray(value)
    if kind == "pil":
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(value, dtype=np.uint8))
        mode = encoded.get("mode")
        return image if mode is None or image.mode == mode else image.convert(mode)
    raise ConfigError(
        "A request's image must be {'kind': 'path'|'str'|'bytes'|'pixels'|'pil', 'value': ...}."
    )


def _describe_source(image: Any, name: Optional[str]) -> str:
    """A file's name, else the request's name (a Blender image's), else the kind of object."""
    if isinstance(image, (str, Path)):
        return Path(image).name
    return name or type(image).__name__
