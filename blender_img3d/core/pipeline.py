"""The one pipeline every entry point runs: panel, operators (modal and headless) and CLI.

``run(request, progress, cancel) -> Result`` goes image/prompt → model input →
Shap-E latents → SDF + marching cubes → cleanup, repair, decimation, smoothing →
Blender-frame mesh → vertex colours at the vertices kept → metrics → files.
``decode_saved`` restarts from saved latents and ``convert_mesh_file`` from an
existing mesh file; all three share the tail.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from . import settings as defaults
from .errors import ConfigError, LatentsError
from .mesh.meshdata import MeshData
from .progress import Phase, ProgressCallback, raise_if_cancelled, report
from .serialize import EqualByDict

log = logging.getLogger(__name__)

GENERATOR = "blender_img3d"


@dataclass(eq=False)
class Result(EqualByDict):
    """What one run produced; ``meshes[i]`` is variant ``i`` in Blender's frame.

    ``to_dict``/``from_dict`` carry it back from a farm worker or the GPU server
    (JSON values plus arrays, see ``core.serialize``); ``from_dict(r.to_dict()) == r``.
    """

    meshes: list[MeshData]
    metrics: list[dict[str, Any]]
    settings: dict[str, Any]
    model_source: str = ""
    model_revision: str = ""
    latents: Optional[np.ndarray] = None
    input_report: Optional[dict[str, Any]] = None
    model_input: Any = None  # the PIL image the model saw (image mode)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    # Per variant, the base-colour texture its source file carried (a converted file's;
    # None: none), which GLB/OBJ outputs keep. Not part of ``to_dict``: the written
    # files hold it.
    textures: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data; meshes, latents and the model input as arrays."""
        model_input = None
        if self.model_input is not None:
            model_input = {"mode": self.model_input.mode, "pixels": np.asarray(self.model_input)}
        return {
            "meshes": [mesh.to_dict() for mesh in self.meshes],
            "metrics": self.metrics,
            "settings": self.settings,
            "model_source": self.model_source,
            "model_revision": self.model_revision,
            "latents": self.latents,
            "input_report": self.input_report,
            "model_input": model_input,
            "timings": self.timings,
            "notes": self.notes,
            "outputs": [str(path) for path in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        model_input = data.get("model_input")
        if model_input is not None:
            from PIL import Image

            pixels = np.ascontiguousarray(model_input["pixels"], dtype=np.uint8)
            model_input = Image.fromarray(pixels).convert(model_input["mode"])
        latents = data.get("latents")
        return cls(
            meshes=[MeshData.from_dict(mesh) for mesh in data.get("meshes", [])],
            metrics=list(data.get("metrics", [])),
            settings=dict(data.get("settings", {})),
            model_source=data.get("model_source", ""),
            model_revision=data.get("model_revision", ""),
            latents=None if latents is None else np.asarray(latents),
            input_report=data.get("input_report"),
            model_input=model_input,
            timings=dict(data.get("timings", {})),
            notes=list(data.get("notes", [])),
            outputs=[Path(path) for path in data.get("outputs", [])],
        )

    def report_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (for ``--report`` and custom properties)."""
        return {
            "generator": GENERATOR,
            "model": {"source": self.model_source, "revision": self.model_revision},
            "settings": self.settings,
            "input": self.input_report,
            "variants": [
                {"name": mesh.name, "metadata": mesh.metadata, "metrics": metrics}
                for mesh, metrics in zip(self.meshes, self.metrics)
            ],
            "timings": self.timings,
            "notes": self.notes,
            "outputs": [str(path) for path in self.outputs],
        }


class _Timer:
    """Collects wall time per named step into a dict (``with timer("decode"): ...``)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def output_paths(outputs: list[Path], batch: int) -> list[list[Path]]:
    """Per-variant output paths: ``chair.glb`` becomes ``chair_0.glb``… when batch > 1."""
    from .outputs import variant_paths

    return variant_paths(outputs, batch)


def source_label(request: defaults.Request) -> str:
    """A short human name for the object: the request's name, image stem or prompt."""
    if request.name:
        return request.name
    if request.prompt is not None:
        words = " ".join(request.prompt.split())
        return words[:48] or "prompt"
    # A path's stem, computed here: naming a result must never import the image
    # stack (Pillow), which a Blender running the remote backend doesn't have.
    if isinstance(request.image, (str, os.PathLike)):
        stem = Path(request.image).stem.strip()
        if stem:
            return stem
    return "image"


def run(
    request: defaults.Request,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Result:
    """Generate meshes for ``request``; raises a typed :class:`Img3DError` on any failure.

    Every output is checked (``core/outputs.py``) before any work, and all of them
    are renamed into place together at the end (``staged_writes``): a cancel
    leaves no file of this run, a failure after sampling keeps only the latents
    and the saved model input.
    """
    from .exporters.atomic import staged_writes
    from .outputs import plan_for_request
    from .system import deps

    request.validate()
    plan = plan_for_request(request)
    deps.require()
    with staged_writes() as batch:
        return _run(request, plan, batch, progress, cancel)


def _run(request, plan, batch, progress, cancel) -> Result:
    timer = _Timer()
    gen = request.generation

    model_input, input_report = None, None
    if request.mode == "image":
        with timer("preprocess"):
            model_input, input_report = _model_input(request, progress)
        batch.keep_staged()
    raise_if_cancelled(cancel)

    with timer("load_model"):
        models = _load_models(request.model_id(), request.mode, gen, gen.revision, progress, cancel)

    from .shap_e.sampling import sample_latents

    stats: dict[str, Any] = {}
    with timer("sample_total"):
        latents = sample_latents(
            models,
            images=model_input,
            prompt=request.prompt,
            steps=gen.steps,
            guidance=request.guidance(),
            seed=gen.seed,
            batch=gen.batch,
            schedule=gen.schedule,
            sigma_min=gen.sigma_min,
            sigma_max=gen.sigma_max,
            progress=progress,
            cancel=cancel,
            stats=stats,
        )
    # Conditioning (CLIP), the sampling loop alone, and how many prior calls it made.
    timer.timings["condition"] = stats["condition_s"]
    timer.timings["sample"] = stats["sample_s"]
    timer.timings["prior_calls"] = stats["prior_calls"]
    return _result_from_latents(
        request, plan, batch, models, latents, model_input, input_report, timer, progress, cancel
    )


def _result_from_latents(
    request: defaults.Request,
    plan: Any,
    batch: Any,
    models: Any,
    latents: Any,
    model_input: Any,
    input_report: Optional[dict[str, Any]],
    timer: _Timer,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> Result:
    """The tail ``run`` and ``run_group`` share: save latents, decode, process, measure, export.

    ``plan`` is the request's checked output plan and ``batch`` the staged-writes
    batch its files go through (see :func:`run`).
    """
    gen = request.generation
    label = source_label(request)
    latents_np = latents.numpy() if hasattr(latents, "numpy") else np.asarray(latents)
    settings = request.settings_dict()
    metadata = _generation_metadata(request, settings, models.source, models.revision)
    if request.latents_out is not None:
        from .shap_e.latents import save_latents

        save_latents(request.latents_out, latents_np, metadata)
        batch.keep_staged()

    with timer("decode"):
        raw = _decode(models, latents, gen, label, progress, cancel)
    result = Result(
        meshes=[],
        metrics=[],
        settings=settings,
        model_source=models.source,
        model_revision=models.revision,
        latents=latents_np,
        input_report=input_report,
        model_input=model_input,
    )
    if input_report and input_report.get("warning"):
        # The one line a user must see: the background was kept, or the cut is doubtful.
        result.notes.append(input_report["warning"])
    _finish(result, raw, plan.meshes, label, request, metadata, timer, progress, cancel)
    return result


def sampling_key(request: defaults.Request) -> tuple:
    """What requests must share to be sampled together by :func:`run_group`.

    Source, name, seed, batch, decoding, mesh, image and output settings may
    differ per request; the model and the sampler may not.
    """
    gen = request.generation
    return (
        request.mode,
        request.model_id(),
        gen.revision,
        gen.cache_dir,
        gen.allow_download,
        gen.device,
        gen.dtype,
        gen.steps,
        request.guidance(),
        gen.schedule,
        gen.sigma_min,
        gen.sigma_max,
    )


def run_group(
    requests: list[defaults.Request],
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> list[Any]:
    """Run several requests with one prior call per sampling step serving all of them.

    The requests must have equal :func:`sampling_key` and at most ``MAX_BATCH``
    variants in all. Entry ``i`` of the returned list is request ``i``'s
    :class:`Result` (the latents, meshes and files its own :func:`run` would give,
    up to the float rounding of batched matmuls) or, where only that request
    failed (an unreadable image, an empty surface, a file it can't write), the
    :class:`~.errors.Img3DError` it raised, so one bad item doesn't sink the
    others. Failures that concern the whole group (the model, cancellation,
    sampling itself) are raised. Sampling time is shared out by variant count.
    """
    from .errors import CancelledError, Img3DError
    from .shap_e.sampling import sample_latents_grouped
    from .system import deps

    if not requests:
        return []
    from .exporters.atomic import staged_writes
    from .outputs import plan_for_request

    for request in requests:
        request.validate()
    if len({sampling_key(request) for request in requests}) > 1:
        raise ConfigError("run_group needs requests with the same model and sampler settings.")
    outcomes: list[Any] = [None] * len(requests)
    plans: list[Any] = [None] * len(requests)
    for index, request in enumerate(requests):
        try:  # every item's outputs checked before any work, as in run()
            plans[index] = plan_for_request(request)
        except Img3DError as error:
            outcomes[index] = error
    deps.require()
    first = requests[0]
    gen = first.generation
    timers = [_Timer() for _ in requests]
    inputs: list[tuple[Any, Optional[dict[str, Any]]]] = [(None, None)] * len(requests)
    for index, request in enumerate(requests):
        if request.mode == "image" and outcomes[index] is None:
            try:
                with timers[index]("preprocess"):
                    inputs[index] = _model_input(request, progress)
            except CancelledError:
                raise
            except Img3DError as error:
                outcomes[index] = error
        raise_if_cancelled(cancel)
    live = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if not live:
        return outcomes

    start = time.perf_counter()
    models = _load_models(first.model_id(), first.mode, gen, gen.revision, progress, cancel)
    load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    latents = sample_latents_grouped(
        models,
        [inputs[i][0] if first.mode == "image" else requests[i].prompt for i in live],
        [requests[i].generation.seed for i in live],
        [requests[i].generation.batch for i in live],
        steps=gen.steps,
        guidance=first.guidance(),
        schedule=gen.schedule,
        sigma_min=gen.sigma_min,
        sigma_max=gen.sigma_max,
        progress=progress,
        cancel=cancel,
    )
    sample_seconds = time.perf_counter() - start
    rows = sum(requests[i].generation.batch for i in live)
    for index, item_latents in zip(live, latents):
        request, timer = requests[index], timers[index]
        share = request.generation.batch / rows
        timer.timings["load_model"] = load_seconds * share
        timer.timings["sample"] = sample_seconds * share
        model_input, input_report = inputs[index]
        try:
            with staged_writes() as batch:
                outcomes[index] = _result_from_latents(
                    request,
                    plans[index],
                    batch,
                    models,
                    item_latents,
                    model_input,
                    input_report,
                    timer,
                    progress,
                    cancel,
                )
        except CancelledError:
            raise
        except Img3DError as error:
            outcomes[index] = error
    return outcomes


def _load_models(
    source: str,
    mode: str,
    gen: defaults.GenerationSettings,
    revision: Optional[str],
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
):
    from .shap_e.loading import load_models

    report(progress, Phase.LOADING_MODEL, 0, 1)
    models = load_models(
        source,
        mode=mode,
        revision=revision,
        cache_dir=gen.cache_dir,
        allow_download=gen.allow_download,
        device=gen.device,
        dtype=gen.dtype,
        progress=progress,
        cancel=cancel,
    )
    report(progress, Phase.LOADING_MODEL, 1, 1)
    return models


def _decode(
    models: Any,
    latents: Any,
    gen: defaults.GenerationSettings,
    label: str,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> list[Any]:
    """Uncoloured surfaces with their colour heads (``decoding.Surface``): see :func:`_finish`."""
    from .shap_e.decoding import decode_surfaces

    return decode_surfaces(
        models.renderer,
        latents,
        grid_size=gen.grid_size,
        query_batch=gen.query_batch,
        progress=progress,
        cancel=cancel,
        name=label,
        adaptive=gen.sdf_method == "adaptive",
    )


def _model_input(request: defaults.Request, progress: Optional[ProgressCallback]):
    """The image handed to the model and a report of what preprocessing did."""
    from .images import load_image, prepare_image, save_model_input

    report(progress, Phase.PREPROCESSING, 0, 1)
    if request.preprocess:
        prepared = prepare_image(
            request.image,
            request.image_settings,
            cache_dir=request.generation.cache_dir,
            allow_download=request.generation.allow_download,
        )
        image, input_report = prepared.image, prepared.report.to_dict()
        if request.save_input is not None:
            save_model_input(prepared, request.save_input)
    else:
        # "Unchanged" for the model's own processor, except that transparent pixels
        # (whose hidden colour is arbitrary, often black) are flattened onto white.
        image = load_image(request.image, request.image_settings)
        if image.mode == "RGBA":
            from PIL import Image

            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        image = image.convert("RGB")
        input_report = {"method": "none", "size": list(image.size)}
        if request.save_input is not None:
            raise ConfigError("--save-input needs preprocessing; drop --no-preprocess.")
    report(progress, Phase.PREPROCESSING, 1, 1)
    return image, input_report


def _generation_metadata(
    request: defaults.Request, settings: dict[str, Any], source: str, revision: str
) -> dict[str, Any]:
    gen = request.generation
    return {
        "generator": GENERATOR,
        "mode": request.mode,
        "prompt": request.prompt,
        "image": settings["image"],
        "model": source,
        "revision": revision,
        "seed": gen.seed,
        "steps": gen.steps,
        "guidance": request.guidance(),
        "schedule": gen.schedule,
        "grid_size": gen.grid_size,
    }


def process_surface(
    surface: Any,
    mesh_settings: defaults.MeshSettings,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> tuple[Any, float]:
    """Process a decoded surface, then colour the vertices that are left: (ProcessedMesh, s).

    ``surface`` is a ``decoding.Surface``. Its colours are queried at the
    processed vertices (in Shap-E's frame, before placement), not at the
    marching-cubes ones: decimation keeps a fraction of them and a colour
    query costs as much per point as the SDF's. Where processing moved no
    vertex (processing off) the colours are the ones :func:`decode_latents`
    gives. The second value is the colour query's seconds.
    """
    from .mesh.process import process_mesh

    # Orientation and placement run even with processing off (see process_mesh).
    processed = process_mesh(surface.mesh, mesh_settings, cancel=cancel)
    started = time.perf_counter()
    colors = surface.colors(
        processed.source_vertices, progress=progress, cancel=cancel, phase=Phase.PROCESSING
    )
    processed.mesh = processed.mesh.replaced(colors=colors)
    return processed, time.perf_counter() - started


def _finish(
    result: Result,
    surfaces: list[Any],
    paths: list[list[Path]],
    label: str,
    request: defaults.Request,
    metadata: dict[str, Any],
    timer: _Timer,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
) -> None:
    """Orient, process, colour, measure and export every variant (a ``Surface``) into ``result``."""
    from .mesh.metrics import compute_metrics
    from .mesh.validate import check_mesh

    if len(paths) != len(surfaces):  # the plan named the files for another batch size
        paths = output_paths(request.outputs, len(surfaces))
    for index, surface in enumerate(surfaces):
        raise_if_cancelled(cancel)
        report(progress, Phase.PROCESSING, index, len(surfaces))
        raw = surface.mesh
        check_mesh(raw, "process")
        processed, color_seconds = process_surface(surface, request.mesh, progress, cancel)
        # The colour query is the decoder's work, done late: it counts as decoding.
        raw.metadata["timings"]["color_query_s"] = round(color_seconds, 4)
        timer.timings["decode"] = timer.timings.get("decode", 0.0) + color_seconds
        mesh = processed.mesh
        check_mesh(mesh, "keep", " after processing")  # --size can take it out of range
        variant_timings = dict(processed.timings)
        prefix = f"variant {index}: " if len(surfaces) > 1 else ""
        result.notes.extend(prefix + note for note in processed.notes)
        mesh.name = label if len(surfaces) == 1 else f"{label} {index + 1}"
        mesh.metadata = {**metadata, "variant": index, "batch": len(surfaces)}
        # The run's phases so far travel with each variant's metrics (custom properties).
        run_timings = {**timer.timings, **_decode_timings(raw)}
        metrics = compute_metrics(mesh, timings={**run_timings, **variant_timings}).to_dict()
        result.meshes.append(mesh)
        result.metrics.append(metrics)
        for key, seconds in variant_timings.items():
            result.timings[f"mesh_{key}"] = result.timings.get(f"mesh_{key}", 0.0) + seconds
    report(progress, Phase.PROCESSING, len(surfaces), len(surfaces))
    result.timings.update(_decode_timings([surface.mesh for surface in surfaces]))

    _export_and_report(result, paths, request, progress, cancel, timer)


def _export_and_report(
    result: Result,
    paths: list[list[Path]],
    request: defaults.Request,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
    timer: _Timer,
) -> None:
    """Write the outputs, then the report: it and every variant's record hold the export's time.

    The variants' records (their custom properties in Blender) were made before
    anything was written, so the export's seconds are added to them here.
    """
    with timer("export"):
        _write_outputs(result, paths, request, progress, cancel, timer)
    result.timings.update(timer.timings)
    for metrics in result.metrics:
        metrics.setdefault("timings", {})["export"] = timer.timings["export"]
    if request.report_path is not None:
        write_report(result, request.report_path)


def _decode_timings(raw_meshes: Any) -> dict[str, float]:
    """The decoder's own split (SDF query, marching cubes, colours), summed over variants."""
    if isinstance(raw_meshes, MeshData):
        raw_meshes = [raw_meshes]
    totals: dict[str, float] = {}
    for index, mesh in enumerate(raw_meshes):
        for key, seconds in (mesh.metadata.get("timings") or {}).items():
            if key == "sdf_query_s" and index:  # one SDF pass serves the whole batch
                continue
            name = "decode_" + key.removesuffix("_s")
            totals[name] = totals.get(name, 0.0) + float(seconds)
    return totals


def _write_outputs(
    result: Result,
    paths: list[list[Path]],
    request: defaults.Request,
    progress: Optional[ProgressCallback],
    cancel: Optional[threading.Event],
    timer: _Timer,
) -> None:
    total = sum(len(variant_paths) for variant_paths in paths)
    if total:
        from .exporters import (
            appearance_note,
            carries_texture,
            check_exportable,
            export_mesh,
            size_warning,
        )

        # Every mesh against every format first: no file is written for a set that can't be.
        for mesh, variant_paths in zip(result.meshes, paths):
            for path in variant_paths:
                check_exportable(mesh, path, units=request.units)
                warning = size_warning(mesh.face_count, path)
                if warning:
                    log.warning("%s", warning)
        textures = _bake_textures(result, paths, request, cancel, timer)
        # Progress counts faces written over every file, so one bar covers the whole export.
        faces_total = sum(mesh.face_count * len(p) for mesh, p in zip(result.meshes, paths))
        done = 0
        for mesh, variant_paths, texture in zip(result.meshes, paths, textures):
            for path in variant_paths:
                report(progress, Phase.EXPORTING, done, faces_total)
                raise_if_cancelled(cancel)
                options = {"texture": texture} if texture and carries_texture(path) else {}
                written = export_mesh(
                    mesh,
                    path,
                    units=request.units,
                    format_options=request.export.writer_options(),
                    progress=_offset_progress(progress, done, faces_total),
                    cancel=cancel,
                    **options,
                )
                result.outputs.append(Path(written))
                done += mesh.face_count
                note = appearance_note(path, mesh.colors is not None, texture is not None)
                if note and note not in result.notes:
                    log.info("%s", note)
                    result.notes.append(note)
        report(progress, Phase.EXPORTING, faces_total, faces_total)
    # A cancel that came during the last export still wins: the staged files are dropped.
    raise_if_cancelled(cancel)


def _offset_progress(
    progress: Optional[ProgressCallback], before: int, total: int
) -> Optional[ProgressCallback]:
    """One file's ``(phase, faces written, its faces)`` as the whole export's count."""
    if progress is None:
        return None
    return lambda phase, step, _faces: progress(phase, before + step, total)


def _bake_textures(
    result: Result,
    paths: list[list[Path]],
    request: defaults.Request,
    cancel: Optional[threading.Event],
    timer: _Timer,
) -> list[Any]:
    """One baked texture per variant that has an output carrying it (else None), made
    before any file is written, so a mesh without colours fails the run cleanly."""
    from .exporters import carries_texture

    carried = list(result.textures) or [None] * len(result.meshes)
    if not request.export.bake_texture:
        return carried
    from .mesh.bake import bake_texture, bake_vertex_colors

    textures: list[Any] = []
    size = request.export.texture_size
    with timer("bake"):
        for mesh, variant_paths, source in zip(result.meshes, paths, carried):
            raise_if_cancelled(cancel)
            if not any(carries_texture(path) for path in variant_paths):
                textures.append(None)
            elif source is not None:  # a file's own texture: sampled at its UVs
                textures.append(bake_texture(source, size=size))
            else:
                textures.append(bake_vertex_colors(mesh, size=size))
    return textures


def write_report(result: Result, path: Path) -> Path:
    """Write ``result.report_dict()`` as JSON, atomically."""
    import json

    from .exporters.atomic import atomic_write

    text = json.dumps(result.report_dict(), indent=2, default=_json_default) + "\n"
    with atomic_write(Path(path), "w") as stream:
        stream.write(text)
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def decode_saved(
    latents_path: Path,
    request: defaults.Request,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
) -> Result:
    """Decode latents saved by ``run`` (``--latents-out``) again, e.g. at another grid size.

    The model comes from ``request.generation.model`` when given, else from the
    latents' metadata; only the renderer is used.
    """
    from .exporters.atomic import staged_writes
    from .outputs import plan_for_request
    from .shap_e.latents import load_latents
    from .system import deps

    timer = _Timer()
    latents, saved = load_latents(latents_path)
    if len(latents) > defaults.MAX_BATCH:
        raise LatentsError(
            f"{latents_path} holds {len(latents)} latents; at most {defaults.MAX_BATCH} are "
            "decoded in one run (the batch limit): split the file into smaller ones."
        )
    plan = plan_for_request(request, batch=len(latents), inputs=[latents_path])
    deps.require()
    with staged_writes():
        return _decode_saved(latents_path, latents, saved, plan, request, timer, progress, cancel)


def _decode_saved(latents_path, latents, saved, plan, request, timer, progress, cancel) -> Result:
    gen = request.generation
    source = gen.model or saved.get("model")
    mode = saved.get("mode", "image")
    if not source:
        raise ConfigError(
            f"{latents_path} doesn't say which model made it: pass --model DIR_OR_ID."
        )
    saved_revision = saved.get("revision")
    revision = gen.revision or (saved_revision if saved_revision not in (None, "local") else None)
    with timer("load_model"):
        models = _load_models(source, mode, gen, revision, progress, cancel)
    label = request.name or str(
        saved.get("prompt") or saved.get("image") or Path(latents_path).stem
    )
    with timer("decode"):
        raw = _decode(models, latents, gen, label, progress, cancel)
    metadata = {**saved, "grid_size": gen.grid_size, "decoded_from": Path(latents_path).name}
    result = Result(
        meshes=[],
        metrics=[],
        settings={**saved, "decoded_from": str(latents_path), "grid_size": gen.grid_size},
        model_source=models.source,
        model_revision=models.revision,
        latents=latents,
    )
    _finish(result, raw, plan.meshes, label, request, metadata, timer, progress, cancel)
    return result


def convert_mesh_file(
    in_path: Path,
    request: defaults.Request,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    up_axis: Optional[str] = None,
) -> Result:
    """Read a mesh file and write it to ``request.outputs`` (``export --in X --out Y``).

    Mesh processing runs only when ``request.mesh.enabled`` is true. ``up_axis``
    says how to read OBJ/PLY/STL files (glTF is always Y-up).
    """
    from .exporters.atomic import staged_writes
    from .outputs import plan_for_request

    plan = plan_for_request(request, batch=1, inputs=[in_path])
    with staged_writes():
        return _convert_mesh_file(in_path, plan, request, progress, cancel, up_axis)


def _convert_mesh_file(in_path, plan, request, progress, cancel, up_axis) -> Result:
    from .mesh.metrics import compute_metrics
    from .mesh.reading import read_mesh_file
    from .mesh.validate import check_mesh

    timer = _Timer()
    with timer("read"):
        read = read_mesh_file(in_path, up_axis=up_axis)
    mesh, texture, notes = read.mesh, read.texture, list(read.notes)
    check_mesh(mesh, "convert")
    if request.name:
        mesh.name = request.name
    timings: dict[str, float] = {}
    if request.mesh.enabled:
        from .mesh.process import process_mesh

        processed = process_mesh(mesh, request.mesh, cancel=cancel, from_shap_e=False)
        mesh, timings = processed.mesh, dict(processed.timings)
        notes += processed.notes
        check_mesh(mesh, "keep", " after processing")
        if texture is not None:  # processing moves and merges vertices: UVs no longer fit
            texture = None
            notes.append("processing keeps colours, not the texture: it was sampled per vertex")
    elif texture is not None:
        texture.mesh = mesh  # the same rows, with the name and metadata the run gave it
    result = Result(
        meshes=[mesh],
        metrics=[compute_metrics(mesh, timings=timings).to_dict()],
        settings={"converted_from": str(in_path)},
        notes=notes,
        textures=[texture],
    )
    _export_and_report(result, plan.meshes, request, progress, cancel, timer)
    return result
