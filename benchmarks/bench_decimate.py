"""Decimation speed on Shap-E-sized meshes, and the STEP writer on the result.

A mushroom-and-ring SDF meshed by marching cubes (closed, one piece, one handle),
with vertex colours, decimated to 20k faces by ``decimate_with_note``:

* ~180k faces where fast-simplification's result keeps the topology (grid 192):
  the fast pass and its check only;
* ~177k faces where it doesn't (grid 191: it pinches the thin ring), so the
  topology-safe path runs: the fast pass redone around the damage, then the safe
  collapser finishing the patches left fine;
* the safe collapser alone on that mesh, the fallback when the damage doesn't settle;
* the default processing chain (cleanup, repair, decimate, smooth, frame,
  placement) on ~300k faces (grid 250).

Then the STEP writer (coplanar merge on and off) on 20k triangles. Prints the
median wall and CPU time of several runs; the machine may be shared, so quote the
load (``uptime``) with them. Run by hand:

    .venv/bin/python benchmarks/bench_decimate.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core.exporters.step import write_step  # noqa: E402
from blender_img3d.core.mesh.decimate import decimate_with_note, topology_of  # noqa: E402
from blender_img3d.core.mesh.meshdata import MeshData  # noqa: E402
from blender_img3d.core.mesh.process import process_mesh  # noqa: E402
from blender_img3d.core.mesh.safe_collapse import safe_collapse  # noqa: E402
from blender_img3d.core.settings import MeshSettings  # noqa: E402

TARGET = 20_000


def shap_e_like_mesh(grid: int = 150, ring: bool = True) -> MeshData:
    """A mushroom (cap and stem), with a thin ring through the cap that
    fast-simplification pinches at some grid sizes (``ring=False``: without it)."""
    from skimage.measure import marching_cubes

    axis = np.linspace(-1.0, 1.0, grid)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    cap = np.minimum(0.7 - np.sqrt(x**2 + y**2 + z**2), z - 0.1)
    stem = np.minimum(0.18 - np.sqrt(x**2 + y**2), 0.5 - np.abs(z + 0.4))
    parts = [cap, stem]
    if ring:
        parts.append(0.1 - np.sqrt((np.sqrt(x**2 + z**2) - 0.75) ** 2 + y**2))
    vertices, faces, _, _ = marching_cubes(np.maximum.reduce(parts), 0.0)
    vertices = vertices / (grid - 1) * 2.0 - 1.0
    return MeshData(vertices, faces[:, ::-1], (vertices + 1.0) / 2.0)


def median_time(work, runs: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``runs`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus), result


def report(label: str, wall: float, cpu: float, detail: str) -> None:
    print(f"{label}: {wall:.3f} s wall, {cpu:.3f} s CPU (median) — {detail}", flush=True)


def decimation_row(label: str, mesh: MeshData, runs: int) -> MeshData:
    wall, cpu, (reduced, note) = median_time(
        lambda: decimate_with_note(mesh, target_faces=TARGET), runs
    )
    kept = topology_of(reduced) == topology_of(mesh)
    report(label, wall, cpu, f"{note}; topology kept: {kept}")
    return reduced


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    decimate_with_note(shap_e_like_mesh(64), target_faces=2_000)  # imports out of the way

    clean = shap_e_like_mesh(192)
    reduced = decimation_row(
        f"{clean.face_count} → {TARGET} faces, coloured, fast pass kept", clean, args.runs
    )
    pinched = shap_e_like_mesh(191)
    decimation_row(
        f"{pinched.face_count} → {TARGET} faces, coloured, fast pass breaks (safe path)",
        pinched,
        args.runs,
    )
    wall, cpu, safe = median_time(
        lambda: safe_collapse(pinched.vertices, pinched.faces, pinched.colors, TARGET), 1
    )
    report("safe collapser alone, same mesh", wall, cpu, f"{len(safe.faces)} faces (one run)")
    for ring, how in ((False, "fast pass kept"), (True, "fast pass breaks")):
        big = shap_e_like_mesh(250 if ring else 290, ring=ring)
        wall, cpu, result = median_time(lambda: process_mesh(big, MeshSettings()), args.runs)
        report(
            f"default chain on {big.face_count} faces ({how})",
            wall,
            cpu,
            f"{result.mesh.face_count} faces, steps "
            + ", ".join(f"{step} {seconds:.2f}" for step, seconds in result.timings.items()),
        )
    with tempfile.TemporaryDirectory() as folder:
        for merge in (True, False):
            wall, cpu, _ = median_time(
                lambda: write_step(reduced, Path(folder) / "m.step", merge_coplanar=merge),
                args.runs,
            )
            report(f"write_step {reduced.face_count} triangles, merge={merge}", wall, cpu, "")


if __name__ == "__main__":
    main()
