"""Decimation speed on a Shap-E-sized mesh: 180k → 20k faces with vertex colours.

A mushroom-and-ring SDF meshed by marching cubes (about 180k faces, closed, one
handle), decimated by ``decimate_with_note`` (the fast path plus its topology
check). Also the topology-safe collapser alone on the same mesh, and the STEP
writer (coplanar merge on and off) on 20k triangles. Prints medians of several
runs; the machine may be shared, so say so when quoting. Run by hand:

    .venv/bin/python benchmarks/bench_decimate.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core.exporters.step import write_step  # noqa: E402
from blender_img3d.core.mesh.decimate import decimate_with_note  # noqa: E402
from blender_img3d.core.mesh.meshdata import MeshData  # noqa: E402
from blender_img3d.core.mesh.safe_collapse import safe_collapse  # noqa: E402


def shap_e_like_mesh(grid: int = 150) -> MeshData:
    from skimage.measure import marching_cubes

    axis = np.linspace(-1.0, 1.0, grid)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    cap = np.minimum(0.7 - np.sqrt(x**2 + y**2 + z**2), z - 0.1)
    stem = np.minimum(0.18 - np.sqrt(x**2 + y**2), 0.5 - np.abs(z + 0.4))
    ring = 0.1 - np.sqrt((np.sqrt(x**2 + z**2) - 0.75) ** 2 + y**2)
    vertices, faces, _, _ = marching_cubes(np.maximum.reduce([cap, stem, ring]), 0.0)
    vertices = vertices / (grid - 1) * 2.0 - 1.0
    return MeshData(vertices, faces[:, ::-1], (vertices + 1.0) / 2.0)


def median_time(work, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    mesh = shap_e_like_mesh()
    print(f"input: {mesh.face_count} faces, {mesh.vertex_count} vertices, coloured")
    seconds, (reduced, note) = median_time(
        lambda: decimate_with_note(mesh, target_faces=20_000), args.runs
    )
    print(f"decimate_with_note → {reduced.face_count} faces: {seconds:.3f} s median ({note})")
    seconds, safe = median_time(
        lambda: safe_collapse(mesh.vertices, mesh.faces, mesh.colors, 20_000), 1
    )
    print(f"safe_collapse alone → {len(safe.faces)} faces: {seconds:.3f} s (one run)")
    with tempfile.TemporaryDirectory() as folder:
        for merge in (True, False):
            seconds, _ = median_time(
                lambda: write_step(reduced, Path(folder) / "m.step", merge_coplanar=merge),
                args.runs,
            )
            print(f"write_step {reduced.face_count} triangles, merge={merge}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
