"""The benchmark suite: every figure is ours vs diffusers, same run, same machine, median of N.

    python -m benchmarks --quick                 # CI smoke run: reduced models, < 2 min on 2 cores
    python -m benchmarks                         # full-size random models (the real FLOPs)
    python -m benchmarks --device cuda --steps 64 --cases prior sample decode e2e

Models are full-size with random weights (``bench_sampling.build_models``): the
published checkpoints' shapes, so the time is theirs, with no download. The
reference side is diffusers' ``ShapEImg2ImgPipeline`` / ``ShapEPipeline`` built
from the *same* component objects, dtype and settings. Repeats are interleaved
(ours, theirs, ours, ...) so a busy machine slows both alike; the median is kept.
Decode uses the calibrated field (``fields.py``). A table goes to stdout and the
whole record (machine, torch, settings, every repeat) to ``--out``/results.json.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

log = logging.getLogger("benchmarks")

ALL_CASES = ("prior", "sample", "decode", "process", "e2e", "memory", "cold")
# --quick: the tests' tiny models throughout, small grids.
QUICK_GRID = 32


def median_of(repeats: int, *runs: Callable[[], float]) -> list[list[float]]:
    """Run each callable ``repeats`` times, interleaved; the list of times of each."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for index, run in enumerate(runs):
            times[index].append(run())
    return times


def synchronize(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: Any) -> dict[str, float]:
    """Peak RSS of this process so far (MiB) and CUDA max allocated since the last reset."""
    import torch

    peak = {"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if getattr(device, "type", "cpu") == "cuda":
        peak["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return peak


# --- models ---------------------------------------------------------------------------------


def build(mode: str, device: Any, dtype_name: str, quick: bool):
    """ShapEModels (full-size random; --quick: the tests' tiny ones) and diffusers' pipeline."""
    import torch

    from benchmarks import bench_sampling as sizes
    from blender_img3d.core.shap_e.loading import load_models, resolve_autocast, resolve_dtype

    if quick:
        models = load_models(_tiny_folder(mode), mode=mode, device=str(device), dtype=dtype_name)
    else:
        models = sizes.build_models(mode, device, resolve_dtype(dtype_name, device))
        models.autocast = resolve_autocast(dtype_name, device)
    pipe = sizes.diffusers_pipeline(models)
    torch.manual_seed(0)
    return models, pipe


_TINY: dict[str, Path] = {}


def _tiny_folder(mode: str) -> Path:
    import tempfile

    from tests.fixtures import tiny_models

    if mode not in _TINY:
        scratch = Path(tempfile.mkdtemp(prefix="img3d-bench-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        folder = scratch / f"tiny-{mode}"
        make = (
            tiny_models.make_tiny_image_model
            if mode == "image"
            else tiny_models.make_tiny_text_model
        )
        make(folder)
        _TINY[mode] = folder
    return _TINY[mode]


def inputs_for(mode: str) -> tuple[dict[str, Any], float]:
    import numpy as np
    from PIL import Image

    from benchmarks.bench_sampling import PROMPT
    from blender_img3d.core import settings

    if mode == "image":
        pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        return {"images": Image.fromarray(pixels, "RGB")}, settings.DEFAULT_GUIDANCE_IMAGE
    return {"prompt": PROMPT}, settings.DEFAULT_GUIDANCE_TEXT


class PriorTimer:
    """Forward hooks on a prior: wall time and count of its calls (what either side runs)."""

    def __init__(self, prior: Any, device: Any) -> None:
        self.device = device
        self.seconds = 0.0
        self.calls = 0
        self._started = 0.0
        self._handles = [
            prior.register_forward_pre_hook(self._before),
            prior.register_forward_hook(self._after),
        ]

    def _before(self, *_: Any) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._started
        self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def run_ours(models, inputs, steps, guidance, batch=1, schedule="shap-e") -> float:
    from blender_img3d.core.shap_e.sampling import sample_latents

    synchronize(models.device)
    started = time.perf_counter()
    sample_latents(models, steps=steps, guidance=guidance, batch=batch, schedule=schedule, **inputs)
    synchronize(models.device)
    return time.perf_counter() - started


def run_diffusers(models, pipe, inputs, steps, guidance, batch=1) -> float:
    import torch

    from benchmarks.bench_sampling import PROMPT

    arguments = {"image": inputs["images"]} if models.mode == "image" else {"prompt": PROMPT}
    synchronize(models.device)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if models.autocast is not None:  # the same numerics on both sides
            stack.enter_context(torch.autocast(models.device.type, dtype=models.autocast))
        pipe(
            **arguments,
            num_inference_steps=steps,
            guidance_scale=guidance,
            num_images_per_prompt=batch,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="latent",
        )
    synchronize(models.device)
    return time.perf_counter() - started


# --- cases --------------------------------------------------------------------------------------


def case_prior(args, device, record) -> None:
    """One guided prior call (batch 2 for CFG), image model: the time of the prior alone."""
    models, pipe = build("image", device, args.dtype, args.quick)
    inputs, guidance = inputs_for("image")
    timer = PriorTimer(models.prior, device)

    def ours() -> float:
        timer.reset()
        run_ours(models, inputs, 1, guidance)
        return timer.seconds

    def theirs() -> float:
        timer.reset()
        run_diffusers(models, pipe, inputs, 1, guidance)
        return timer.seconds

    if device.type != "cpu":
        ours(), theirs()  # warm-up: kernels, allocator
    mine, reference = median_of(args.repeats, ours, theirs)
    add_row(record, "prior call (image, batch 1, CFG)", mine, reference, models, device)
    timer.close()


def case_sample(args, device, record) -> None:
    """``--steps`` steps, image and text, batch 1 and 4 (batch 4 skipped with --quick)."""
    for mode in ("image", "text"):
        models, pipe = build(mode, device, args.dtype, args.quick)
        inputs, guidance = inputs_for(mode)
        for batch in (1,) if args.quick else (1, 4):
            if device.type != "cpu":
                run_ours(models, inputs, 1, guidance, batch)
                run_diffusers(models, pipe, inputs, 1, guidance, batch)
            mine, reference = median_of(
                args.repeats,
                lambda: run_ours(models, inputs, args.steps, guidance, batch),
                lambda: run_diffusers(models, pipe, inputs, args.steps, guidance, batch),
            )
            name = f"{args.steps} steps, {mode}, batch {batch} (ours: shap-e schedule)"
            add_row(record, name, mine, reference, models, device)


@contextlib.contextmanager
def calibrated_decoding(shape):
    """Every decode inside sees the calibrated field of ``shape`` (see ``fields.py``)."""
    from benchmarks import fields
    from blender_img3d.core.shap_e import decoding

    real_project = decoding.project_latents

    def project(*a, **k):
        return fields.calibrated(real_project(*a, **k), shape)

    decoding.project_latents = project
    try:
        yield
    finally:
        decoding.project_latents = real_project


def decode_ours(renderer, latents, grid, device, shape, adaptive=True):
    """Seconds and meshes of ``decode_latents`` (colours at every marching-cubes vertex)."""
    from blender_img3d.core.shap_e import decoding

    with calibrated_decoding(shape):
        synchronize(device)
        started = time.perf_counter()
        meshes = decoding.decode_latents(
            renderer, latents, grid_size=grid, device=device, adaptive=adaptive
        )
        synchronize(device)
        return time.perf_counter() - started, meshes


def decode_and_process_ours(renderer, latents, grid, device, shape, mesh_settings):
    """The pipeline's way: surfaces, processing, then colours at the vertices kept."""
    from blender_img3d.core import pipeline
    from blender_img3d.core.shap_e import decoding

    with calibrated_decoding(shape):
        synchronize(device)
        started = time.perf_counter()
        surfaces = decoding.decode_surfaces(
            renderer, latents, grid_size=grid, device=device, adaptive=True
        )
        meshes = [pipeline.process_surface(s, mesh_settings)[0].mesh for s in surfaces]
        synchronize(device)
        return time.perf_counter() - started, meshes


def decode_diffusers(renderer, latents, grid, device, shape, vertex_count, batch=4096):
    """diffusers' decode_to_mesh, stage by stage (its MLP, query loop, MeshDecoder), calibrated.

    Random weights leave its marching-cubes tables zero, so its mesh is empty;
    every stage's work still happens, and its colour query runs at as many
    vertices as our mesh has (what decode_to_mesh would query).
    """
    import copy

    import torch
    from diffusers.pipelines.shap_e.renderer import volume_query_points

    from benchmarks import fields
    from benchmarks.reference_decode import project_into_mlp, query_fine

    renderer = copy.deepcopy(renderer)  # decode_to_mesh overwrites the MLP weights
    with torch.no_grad():
        synchronize(device)
        started = time.perf_counter()
        project_into_mlp(renderer, latents, device)
        points = volume_query_points(renderer.volume, grid)[None].to(device)
        chunks = [
            fields.analytic_sdf(part[0], shape) for part, _ in query_fine(renderer, points, batch)
        ]
        field = torch.cat(chunks).reshape(grid, grid, grid).to(device)
        padded = torch.full((grid + 2,) * 3, -1.0, device=device)
        padded[1:-1, 1:-1, 1:-1] = field
        volume = renderer.volume
        renderer.mesh_decoder(padded, volume.bbox_min, volume.bbox_max - volume.bbox_min)
        vertices = torch.rand(1, vertex_count, 3, device=device) * 2 - 1
        for _ in query_fine(renderer, vertices, batch):
            pass
        synchronize(device)
    return time.perf_counter() - started


def case_decode(args, device, record) -> None:
    """Decode one latent on the calibrated chair, grid 64/128/192 (--quick: 64), + agreement."""
    import numpy as np
    import torch
    from diffusers.pipelines.shap_e import ShapERenderer

    from blender_img3d.core.shap_e import decoding

    torch.manual_seed(0)
    if args.quick:  # the tiny model's renderer: the machinery, not the figures
        renderer = build("image", device, args.dtype, True)[0].renderer
    else:
        renderer = ShapERenderer().eval().to(device)
    tokens, width = decoding.latent_shape(renderer)
    latents = torch.randn(1, tokens * width, generator=torch.Generator("cpu").manual_seed(0))
    for grid in (QUICK_GRID,) if args.quick else args.grids:
        _, (dense,) = decode_ours(renderer, latents, grid, device, "chair", adaptive=False)
        _, (mesh,) = decode_ours(renderer, latents, grid, device, "chair")
        same = np.array_equal(mesh.faces, dense.faces) and np.array_equal(
            mesh.vertices, dense.vertices
        )
        mine, reference = median_of(
            args.repeats,
            lambda: decode_ours(renderer, latents, grid, device, "chair")[0],
            lambda: decode_diffusers(renderer, latents, grid, device, "chair", mesh.vertex_count),
        )
        row = add_row(
            record, f"decode grid {grid} (calibrated chair)", mine, reference, None, device
        )
        row["faces"] = mesh.face_count
        row["sdf_points_fraction"] = round(mesh.metadata["sdf_points"] / grid**3, 4)
        row["adaptive_equals_dense"] = bool(same)
        row["ours_timings"] = mesh.metadata["timings"]


def case_process(args, device, record) -> None:
    """Decode + default mesh processing, calibrated chair, grid 128 (--quick: 32).

    Ours is the pipeline's path (colours queried after decimation, at the
    vertices kept); the row also times our previous path (colours at every
    marching-cubes vertex, then processing) in the same interleaved repeats.
    diffusers' side is its decode (colours at every vertex) + the same processing.
    """
    import torch
    from diffusers.pipelines.shap_e import ShapERenderer

    from blender_img3d.core.mesh.process import process_mesh
    from blender_img3d.core.settings import MeshSettings
    from blender_img3d.core.shap_e import decoding

    torch.manual_seed(0)
    if args.quick:
        renderer = build("image", device, args.dtype, True)[0].renderer
    else:
        renderer = ShapERenderer().eval().to(device)
    tokens, width = decoding.latent_shape(renderer)
    latents = torch.randn(1, tokens * width, generator=torch.Generator("cpu").manual_seed(0))
    grid = QUICK_GRID if args.quick else 128
    mesh_settings = MeshSettings()
    _, (raw,) = decode_ours(renderer, latents, grid, device, "chair")

    finals = []

    def colours_after() -> float:
        seconds, (mesh,) = decode_and_process_ours(
            renderer, latents, grid, device, "chair", mesh_settings
        )
        finals.append(mesh)
        log.info("  colours at the vertices kept: %.2f s", seconds)
        return seconds

    def colours_before() -> float:
        started = time.perf_counter()
        _, (mesh,) = decode_ours(renderer, latents, grid, device, "chair")
        process_mesh(mesh, mesh_settings)
        seconds = time.perf_counter() - started
        log.info("  colours at every marching-cubes vertex: %.2f s", seconds)
        return seconds

    def theirs() -> float:
        started = time.perf_counter()
        decode_diffusers(renderer, latents, grid, device, "chair", raw.vertex_count)
        process_mesh(raw, mesh_settings)
        seconds = time.perf_counter() - started
        log.info("  diffusers: %.2f s", seconds)
        return seconds

    mine, before, reference = median_of(args.repeats, colours_after, colours_before, theirs)
    final = finals[-1]
    row = add_row(
        record, f"decode + process grid {grid} (calibrated chair)", mine, reference, None, device
    )
    row["ours_colours_at_raw_vertices_s"] = statistics.median(before)
    row["ours_colours_at_raw_vertices_runs"] = before
    row["raw_vertices"] = raw.vertex_count
    row["final_vertices"] = final.vertex_count
    row["final_faces"] = final.face_count


def case_e2e(args, device, record) -> None:
    """Conditioning + --steps steps + decode 128 (calibrated) + default mesh processing, warm."""
    import torch

    from blender_img3d.core.mesh.process import process_mesh
    from blender_img3d.core.settings import MeshSettings
    from blender_img3d.core.shap_e.decoding import latent_shape
    from blender_img3d.core.shap_e.sampling import sample_latents

    grid = QUICK_GRID if args.quick else 128
    models, pipe = build("image", device, args.dtype, args.quick)
    inputs, guidance = inputs_for("image")
    tokens, width = latent_shape(models.renderer)
    latents = torch.randn(1, tokens * width, generator=torch.Generator("cpu").manual_seed(0))

    def ours() -> float:
        started = time.perf_counter()
        sample_latents(models, steps=args.steps, guidance=guidance, **inputs)
        decode_and_process_ours(models.renderer, latents, grid, device, "chair", MeshSettings())
        return time.perf_counter() - started

    _, (reference_mesh,) = decode_ours(models.renderer, latents, grid, device, "chair")

    def theirs() -> float:
        started = time.perf_counter()
        run_diffusers(models, pipe, inputs, args.steps, guidance)
        decode_diffusers(
            models.renderer, latents, grid, device, "chair", reference_mesh.vertex_count
        )
        process_mesh(reference_mesh, MeshSettings())  # the same processing on both sides
        return time.perf_counter() - started

    mine, reference = median_of(args.repeats, ours, theirs)
    add_row(
        record, f"end to end ({args.steps} steps, grid {grid})", mine, reference, models, device
    )


MEMORY_RUN = r"""
import atexit, resource, runpy, sys
sys.path.insert(0, {root!r})
def peak_kib():
    # Linux keeps ru_maxrss across exec, so a child forked from a big benchmark process
    # would report the parent's peak; VmHWM is this process's own.
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
atexit.register(lambda: print("IMG3D_PEAK_RSS_KIB", peak_kib(), file=sys.stderr))
from benchmarks.suite import calibrated_decoding
sys.argv = ["blender_img3d", *{argv!r}]
with calibrated_decoding("chair"):
    runpy.run_module("blender_img3d", run_name="__main__")
"""


def full_size_folder(mode: str, device: Any, dtype_name: str, parent: Path) -> Path:
    """The full-size random model written in diffusers' layout, to load as a real one is."""
    import gc

    from benchmarks import bench_sampling as sizes
    from blender_img3d.core.shap_e.loading import resolve_dtype

    folder = parent / f"full-size-{mode}"
    models = sizes.build_models(mode, device, resolve_dtype(dtype_name, device))
    sizes.diffusers_pipeline(models).save_pretrained(folder)
    del models
    gc.collect()
    return folder


def case_memory(args, device, record) -> None:
    """Peak RSS of one image generation through the CLI, in a fresh process, + its phases.

    The model is loaded from a folder as a real one is (full size: the random
    full-size model written to a temporary folder; --quick: the tests' tiny one),
    decoding sees the calibrated chair, and the run's ``--report`` gives the
    seconds per phase. The peak is the child's own (VmHWM; ru_maxrss without /proc).
    """
    import re
    import tempfile

    grid = QUICK_GRID if args.quick else 128
    with tempfile.TemporaryDirectory(prefix="img3d-bench-memory-") as scratch:
        scratch = Path(scratch)
        if args.quick:
            folder = _tiny_folder("image")
        else:
            folder = full_size_folder("image", device, args.dtype, scratch)
        image = scratch / "input.png"
        inputs_for("image")[0]["images"].save(image)
        report = scratch / "report.json"
        argv = [
            "generate", "--image", str(image), "--model", str(folder),
            "--steps", str(args.steps), "--grid-size", str(grid), "--device", device.type,
            "--dtype", args.dtype, "--out", str(scratch / "out.glb"), "--report", str(report),
            "--quiet",
        ]  # fmt: skip
        code = MEMORY_RUN.format(root=str(REPO_ROOT), argv=argv)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=3600
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"the measured run failed:\n{done.stderr[-3000:]}")
        peak = re.search(r"IMG3D_PEAK_RSS_KIB (\d+)", done.stderr)
        phases = json.loads(report.read_text()).get("timings", {})
    record["rows"].append(
        {
            "case": f"image run through the CLI ({args.steps} steps, grid {grid}), fresh process",
            "ours_s": seconds,
            "ours_runs": [seconds],
            "reference_s": None,
            "ratio": None,
            "peak_rss_mib": int(peak.group(1)) / 1024 if peak else None,
            "phases_s": phases,
        }
    )


COLD_START = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
warmup_s = None
if {warm!r}:  # what the Blender panel does when first drawn, then the artist clicks
    from blender_img3d.core.shap_e import warmup
    warmup.warm_in_background().wait()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
from blender_img3d.core import pipeline
from blender_img3d.core.progress import Phase
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request
events = []
def progress(phase, done, total):
    events.append((time.perf_counter() - t0, str(phase), done, total))
    if phase == Phase.SAMPLING: raise SystemExit(0)
request = Request(prompt="a chair", generation=GenerationSettings(model={model!r}, steps=2,
                  grid_size=16), mesh=MeshSettings(enabled=False))
try:
    pipeline.run(request, progress)
finally:
    import json
    print(json.dumps({{"events": events, "warmup_s": warmup_s, "modules": len(sys.modules),
                      "diffusers_pipelines": "diffusers.pipelines.shap_e.pipeline_shap_e"
                      in sys.modules}}))
"""


def weight_reading_s(events: list) -> float:
    """Seconds the loader spent reading weights: its first to its last per-component report.

    The loader reports once per component (``total`` = their count) after the
    model classes are imported, so imports stay in the measured time.
    """
    from blender_img3d.core.progress import Phase

    loader = [e for e in events if e[1] == Phase.LOADING_MODEL and e[3] > 1]
    return loader[-1][0] - loader[0][0]


def case_cold(args, device, record) -> None:
    """A fresh process to the first sampling step, weights not counted: cold, then warmed up.

    Cold: the CLI's case, every import counted. Warmed up: Blender's, whose panel
    imports the engine in the background when first drawn (``core.shap_e.warmup``),
    so the clock starts at the click, after that import finished.
    """
    from blender_img3d.core.progress import Phase

    for warm, name in (
        (False, "cold start to first step, imports counted (tiny model, weights not counted)"),
        (True, "Generate to first step after the panel's background import (weights not counted)"),
    ):
        code = COLD_START.format(root=str(REPO_ROOT), model=str(_tiny_folder("text")), warm=warm)
        runs, warmups = [], []
        for _ in range(args.repeats):
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
            )
            marks = json.loads(done.stdout.strip().splitlines()[-1])
            first_step = next(e[0] for e in marks["events"] if e[1] == Phase.SAMPLING)
            runs.append(first_step - weight_reading_s(marks["events"]))
            warmups.append(marks["warmup_s"])
        row = {
            "case": name,
            "ours_s": statistics.median(runs),
            "ours_runs": runs,
            "reference_s": None,
            "ratio": None,
            "imports_diffusers_pipelines": marks["diffusers_pipelines"],
        }
        if warm:
            row["background_import_s"] = statistics.median(warmups)
            row["background_import_runs"] = warmups
        record["rows"].append(row)


def add_row(record, name, mine, reference, models, device) -> dict[str, Any]:
    ours_s, theirs_s = statistics.median(mine), statistics.median(reference)
    row = {
        "case": name,
        "ours_s": ours_s,
        "reference_s": theirs_s,
        "ratio": theirs_s / ours_s if ours_s else None,  # > 1: we are faster
        "ours_runs": mine,
        "reference_runs": reference,
        "dtype": None if models is None else str(models.prior.dtype),
        "autocast": None if models is None else str(models.autocast),
        "memory": peak_memory(device),
    }
    record["rows"].append(row)
    log.info("%s: ours %.3f s, diffusers %.3f s", name, ours_s, theirs_s)
    return row


def machine(device: Any, args) -> dict[str, Any]:
    import torch

    from blender_img3d.core.shap_e import precision

    facts = precision.machine_facts()
    facts.update(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        auto_dtype_cpu=precision.cpu_precision().to_dict(),
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )
    return facts


def table(record: dict[str, Any]) -> str:
    lines = [
        "| case | ours (s) | diffusers (s) | diffusers / ours |",
        "|---|---|---|---|",
    ]
    for row in record["rows"]:
        theirs = "—" if row["reference_s"] is None else f"{row['reference_s']:.3f}"
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
        extra = []
        if "final_vertices" in row:
            extra.append(
                f"colours at {row['final_vertices']} of {row['raw_vertices']} vertices; "
                f"colours at every vertex: {row['ours_colours_at_raw_vertices_s']:.3f} s"
            )
        if "faces" in row:
            extra.append(f"{row['faces']} faces")
            extra.append(f"SDF at {100 * row['sdf_points_fraction']:.0f}% of points")
            extra.append("mesh = dense" if row["adaptive_equals_dense"] else "mesh ≠ dense")
        if row.get("peak_rss_mib") is not None:
            extra.append(f"peak RSS {row['peak_rss_mib']:.0f} MiB")
        if row.get("background_import_s") is not None:
            extra.append(f"after {row['background_import_s']:.2f} s of background import")
        if row.get("dtype"):
            extra.append(row["dtype"].replace("torch.", ""))
        note = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"| {row['case']}{note} | {row['ours_s']:.3f} | {theirs} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke run (< 2 min on 2 cores)")
    parser.add_argument("--cases", nargs="+", choices=ALL_CASES, default=list(ALL_CASES))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument(
        "--dtype", default="auto", help="auto, float32, float16, bfloat16, autocast"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default 2; 64 on GPU)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is kept")
    parser.add_argument(
        "--grids",
        type=int,
        nargs="+",
        default=[64, 128, 192],
        help="grid sizes of the decode case (full size; --quick decodes at 32)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("blender_img3d").setLevel(logging.WARNING)

    import torch

    from blender_img3d.core.shap_e.loading import resolve_device

    device = resolve_device(args.device)
    if args.steps is None:
        args.steps = 64 if device.type == "cuda" and not args.quick else 2
    if args.quick:
        args.cases = [c for c in args.cases if c != "sample"]
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": {"steps": args.steps, "repeats": args.repeats, "dtype": args.dtype},
        "machine": machine(device, args),
        "rows": [],
    }
    started = time.perf_counter()
    with torch.inference_mode(False):
        for name in ALL_CASES:
            if name in args.cases:
                log.info("== %s", name)
                globals()[f"case_{name}"](args, device, record)
    record["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(
        f"{record['date']} — {record['machine']['cpu']}, {record['machine']['device']}, "
        f"torch {record['machine']['torch']}, {record['machine']['threads']} threads, "
        f"flags {' '.join(record['machine']['flags'])}"
    )
    print(table(record))
    print(f"wall {record['wall_s']:.0f} s; JSON in {args.out / 'results.json'}")
    return 0
