#!/usr/bin/env python3
"""Scene import and UI-tick costs of the Generate operator, measured side by side.

1. Import of a coloured 327k-triangle result the way Generate does it: the GLB
   written (``export_mesh``), then ``scene.import_glb`` (Blender's own glTF
   importer, colours wired, named and placed). The ``foreach_set`` path this
   replaced (``scene.add_mesh_objects``) is gone from the product.
2. The modal operator's per-tick cost: ``GenerateSession.tick`` draining a
   queue that holds thousands of progress messages (target ≤ 2 ms a tick).

Run with the bpy wheel: ``.venv/bin/python benchmarks/bench_blender_import.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blender_img3d.core.errors import Img3DError  # noqa: E402
from blender_img3d.core.exporters import export_mesh  # noqa: E402
from blender_img3d.core.mesh.meshdata import MeshData  # noqa: E402
from blender_img3d.core.progress import Phase  # noqa: E402
from tests.fixtures.meshes import icosphere  # noqa: E402

REPEATS = 3
TICK_TARGET_SECONDS = 0.002


def best_of(function, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        bpy.ops.wm.read_homefile(app_template="")
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def coloured_sphere() -> MeshData:
    sphere = icosphere(subdivisions=7, radius=1.0)  # 327,680 triangles
    colors = ((sphere.vertices + 1.0) / 2.0).astype(np.float32)
    return MeshData(sphere.vertices, sphere.faces, colors=colors, name="bench")


def bench_import(mesh: MeshData) -> None:
    from blender_img3d.blender import scene

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.glb"
        started = time.perf_counter()
        export_mesh(mesh, path)
        write = time.perf_counter() - started
        imported = best_of(
            lambda: scene.import_glb(bpy.context, path, name="bench", location=(0.0, 0.0, 0.0))
        )
    print(f"import of {mesh.face_count:,} triangles with colours (best of {REPEATS})")
    print(f"  GLB write                 {write * 1000:8.1f} ms")
    print(f"  scene.import_glb          {imported * 1000:8.1f} ms  (Blender's glTF importer)")


def bench_tick() -> None:
    from blender_img3d.blender import session as sessions
    from blender_img3d.core.settings import Request

    def flood(request, progress, cancel):
        for step in range(20_000):
            progress(Phase.SAMPLING, step, 20_000)
        while not cancel.is_set():
            time.sleep(0.001)
        raise Img3DError("stopped")

    bpy.ops.wm.read_homefile(app_template="")

    class FloodBackend:
        name = "flood"

        def submit(self, request, progress=None, cancel=None):
            return flood(request, progress, cancel)

        def release(self) -> None:
            pass

    class TickOnly(sessions.GenerateSession):
        def on_end(self, context) -> None:  # no scene history without the add-on's props
            pass

    session = TickOnly(
        Request(prompt="x"),
        sessions.ImportOptions(),
        backend=FloodBackend(),
        output_dir=Path(tempfile.gettempdir()),  # never written: the run is cancelled
    )
    session.start(bpy.context.window_manager)
    time.sleep(0.5)  # let the worker fill the queue
    ticks = []
    for _ in range(200):
        started = time.perf_counter()
        session.tick(bpy.context)
        ticks.append(time.perf_counter() - started)
    sessions.cancel_active()
    session.run_to_end(bpy.context, timeout=30)
    ticks_ms = [t * 1000 for t in ticks]
    print("modal tick with a full queue (200 ticks)")
    print(
        f"  median {statistics.median(ticks_ms):.3f} ms, max {max(ticks_ms):.3f} ms "
        f"(target {TICK_TARGET_SECONDS * 1000:.0f} ms)"
    )


def main() -> None:
    # Only what the two measurements use: the task state on the WindowManager (the
    # whole add-on needs its preferences, i.e. an installed extension).
    from blender_img3d.blender import tasks

    for cls in tasks.CLASSES:
        bpy.utils.register_class(cls)
    tasks.register_properties()
    try:
        bench_import(coloured_sphere())
        bench_tick()
    finally:
        tasks.unregister_properties()
        for cls in reversed(tasks.CLASSES):
            bpy.utils.unregister_class(cls)


if __name__ == "__main__":
    main()
