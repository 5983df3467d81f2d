"""Memory: repeated runs stay flat, and no input can make a reader allocate what it claims."""

from __future__ import annotations

import gc
import os

from blender_img3d.core import pipeline
from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.settings import MeshSettings, Request
from tests.fixtures.meshes import icosphere


def current_rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_thirty_conversions_keep_memory_flat(tmp_path):
    source = export_mesh(icosphere(4, colors=True), tmp_path / "in.glb")
    request = Request(
        outputs=[tmp_path / "o.glb", tmp_path / "o.obj", tmp_path / "o.step"],
        report_path=tmp_path / "o.json",
        mesh=MeshSettings(enabled=True, target_faces=1000),
    )
    for _ in range(3):  # warm-up: imports, caches, allocator pools
        pipeline.convert_mesh_file(source, request)
    gc.collect()
    baseline = current_rss_mb()
    for _ in range(30):
        pipeline.convert_mesh_file(source, request)
    gc.collect()
    assert current_rss_mb() - baseline < 40
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.glb", "o.glb", "o.json", "o.mtl", "o.obj", "o.step",
    ]  # fmt: skip
