#!/usr/bin/env python3
"""Time Blender mesh ↔ arrays conversion at export size (target: 200k faces → arrays ≤ 0.3 s).

Runs with the bpy wheel (``.venv/bin/python benchmarks/bench_blender_arrays.py``)
or inside Blender (``blender -b --python benchmarks/bench_blender_arrays.py``).
Builds a ~200k-triangle object (a subdivided UV sphere, quads triangulated by
Blender's loop triangles, as the exporter sees it) and prints the best of
several runs for reading it (the export path, evaluated through the depsgraph)
and for writing arrays back into a new mesh (the import/mesh-tool path).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blender_img3d.blender.mesh_arrays import arrays_from_mesh, mesh_from_arrays  # noqa: E402

TARGET_SECONDS = 0.3
REPEATS = 5


def best_of(function, repeats: int = REPEATS) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def make_object() -> bpy.types.Object:
    bpy.ops.wm.read_homefile(app_template="")
    # 316 × 316 segments: ~200k triangles after triangulation.
    bpy.ops.mesh.primitive_uv_sphere_add(segments=320, ring_count=316)
    return bpy.context.active_object


def main() -> int:
    obj = make_object()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    matrix = np.array(obj.matrix_world)

    def read() -> object:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            return arrays_from_mesh(mesh, matrix=matrix)
        finally:
            evaluated.to_mesh_clear()

    read_seconds, data = best_of(read)
    write_seconds, _mesh = best_of(lambda: mesh_from_arrays(data, name="bench"), repeats=3)
    ok = read_seconds <= TARGET_SECONDS
    print(f"faces: {data.face_count}, vertices: {data.vertex_count}")
    print(
        f"object → arrays: {read_seconds * 1000:.1f} ms (target ≤ {TARGET_SECONDS * 1000:.0f} ms)"
    )
    print(f"arrays → mesh:   {write_seconds * 1000:.1f} ms")
    print("PASS" if ok else "SLOWER THAN TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
