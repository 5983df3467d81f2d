"""Texture bake speed and fidelity: xatlas atlas + our rasteriser on Shap-E-sized meshes.

The gradient sphere of the bake tests (``tests.fixtures.meshes.gradient_sphere``)
at 5k and 20k faces (the default ``--target-faces``), at 1024 and 2048 px:
atlas + raster time, the GLB and OBJ writes with the texture, the texture's
size and its mean colour error against the vertex colours (the tests' bound
is 3 %). Not a test: run it by hand,

    .venv/bin/python benchmarks/bench_bake.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core.exporters import export_mesh  # noqa: E402
from blender_img3d.core.mesh.bake import bake_vertex_colors  # noqa: E402
from tests.fixtures.meshes import gradient_sphere, texture_color_error  # noqa: E402


def main() -> None:
    print(f"cpus: {os.cpu_count()}  (affinity: {len(os.sched_getaffinity(0))})")
    print(f"{'faces':>7} {'size':>5} {'bake s':>7} {'glb s':>6} {'obj s':>6} {'image':>10} "
          f"{'error %':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for subdivisions in (4, 5):  # 5 120 and 20 480 faces
            mesh = gradient_sphere(subdivisions)
            for size in (1024, 2048):
                start = time.perf_counter()
                baked = bake_vertex_colors(mesh, size=size)
                bake_s = time.perf_counter() - start
                start = time.perf_counter()
                export_mesh(mesh, Path(folder) / "s.glb", texture=baked)
                glb_s = time.perf_counter() - start
                start = time.perf_counter()
                export_mesh(mesh, Path(folder) / "s.obj", texture=baked)
                obj_s = time.perf_counter() - start
                error = texture_color_error(
                    baked.image, baked.uvs, baked.mesh.faces, baked.mesh.colors
                )
                height, width = baked.image.shape[:2]
                print(f"{mesh.face_count:>7} {size:>5} {bake_s:>7.2f} {glb_s:>6.2f} "
                      f"{obj_s:>6.2f} {f'{width}x{height}':>10} {error * 100:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
