"""Farm throughput: items per hour locally (one by one, grouped) and on Ray; the runner's overhead.

The overhead is the batch runner (planning, hashing, resume checks, reports,
summary) over the same items made by warm ``generate`` calls through the
backend seam, one after another, with the same settings and files. Goal: <= 5 %.

    .venv/bin/python benchmarks/bench_farm.py                 # tiny models, about a minute
    .venv/bin/python benchmarks/bench_farm.py --items 24 --steps 16 --no-ray

Tiny random models make every item cheap, so this measures the runner's own
cost at its worst (with real weights an item takes seconds to minutes and the
same overhead is a smaller share). Numbers from a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _request(model_dir: Path, steps: int, grid: int):
    from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request

    return Request(
        generation=GenerationSettings(model=str(model_dir), steps=steps, grid_size=grid),
        mesh=MeshSettings(target_faces=0),
    )


def warm_generate(model_dir: Path, prompts: list[str], out: Path, steps: int, grid: int) -> float:
    """Seconds for every prompt through ``backend.submit`` with the model already loaded."""
    import copy

    from blender_img3d.core.backend import get_backend

    backend = get_backend("local")
    base = _request(model_dir, steps, grid)
    warm = copy.deepcopy(base)
    warm.prompt = "warm-up"
    backend.submit(warm)
    start = time.perf_counter()
    for index, prompt in enumerate(prompts):
        request = copy.deepcopy(base)
        request.prompt = prompt
        folder = out / f"item{index}"
        folder.mkdir(parents=True)
        request.outputs = [folder / "item.glb"]
        request.latents_out = folder / "latents.npy"
        request.report_path = folder / "report.json"
        backend.submit(request)
    return time.perf_counter() - start


def batch(model_dir, manifest, out, steps, grid, group_rows, engine=None) -> float:
    from blender_img3d.core.farm.runner import run_batch

    start = time.perf_counter()
    summary = run_batch(
        manifest,
        out,
        _request(model_dir, steps, grid),
        ["glb"],
        engine=engine,
        group_rows=group_rows,
    )
    assert not summary.failures, summary.failures
    return time.perf_counter() - start


def per_hour(items: int, seconds: float) -> float:
    return items / seconds * 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from tests.fixtures.tiny_models import make_tiny_text_model

    with tempfile.TemporaryDirectory(prefix="bench-farm-") as tmp:
        root = Path(tmp)
        model = make_tiny_text_model(root / "model", surface=True)
        prompts = [f"prop number {i}" for i in range(args.items)]
        manifest = root / "props.txt"
        manifest.write_text("\n".join(prompts) + "\n")
        n, s, g = args.items, args.steps, args.grid

        t_gen = warm_generate(model, prompts, root / "generate", s, g)
        batch(model, manifest, root / "warm", s, g, 1)  # same process: the model is warm now
        t_one = batch(model, manifest, root / "one", s, g, 1)
        t_grouped = batch(model, manifest, root / "grouped", s, g, 4)
        t_rerun = batch(model, manifest, root / "one", s, g, 1)
        print(f"items {n}, steps {s}, grid {g}, tiny text model, CPU threads {os.cpu_count()}")
        print(f"warm generate, one by one : {t_gen:7.2f} s  {per_hour(n, t_gen):9.0f} items/h")
        print(f"batch local, --group 1    : {t_one:7.2f} s  {per_hour(n, t_one):9.0f} items/h")
        print(
            f"batch local, --group 4    : {t_grouped:7.2f} s  {per_hour(n, t_grouped):9.0f} items/h"
        )
        print(f"batch rerun (all skipped) : {t_rerun:7.2f} s")
        print(
            f"runner overhead over warm generate: {100 * (t_one / t_gen - 1):+.1f} % (goal <= 5 %)"
        )
        if not args.no_ray:
            try:
                from blender_img3d.core.farm.ray_engine import RayEngine

                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                start = time.perf_counter()
                engine = RayEngine(workers=2, init_options={"num_cpus": 2})
                t_start = time.perf_counter() - start
                t_ray = batch(model, manifest, root / "ray", s, g, 1, engine=engine)
                print(
                    f"batch ray, 2 workers      : {t_ray:7.2f} s  {per_hour(n, t_ray):9.0f} items/h"
                    " "
                    f"(+{t_start:.1f} s to start Ray; includes each worker's model load)"
                )
            except Exception as error:  # noqa: BLE001 - report and keep the local numbers
                print(f"ray: not measured ({error})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
