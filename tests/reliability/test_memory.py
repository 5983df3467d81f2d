"""Memory: repeated runs stay flat, and no input can make a reader allocate what it claims.

The repeated-run case counts in this process instead of weighing a child's
resident set: after a warm-up (imports, caches, allocator pools) it runs the
same conversion again and compares three counters before and after.

* Objects the garbage collector tracks: a quiet run adds none, so keeping any
  container of a run (a result, a mesh, a log record, a staged file's entry)
  fails however small it is.
* Bytes in use from the C allocator (glibc's ``mallinfo2``), where numpy keeps
  array data: the first few dozen runs still add about 1 KB each (caches
  filling, then flat), so a run that keeps 3 KB of arrays without a container
  fails.
* The resident set size (``/proc/self/statm``), for everything else.

A small sphere keeps each run cheap: the leaks are counted, not weighed. Not
seen: an object the collector doesn't track (a str, a dict of strings) of some
hundred bytes a run.
"""

from __future__ import annotations

import ctypes
import gc
import os

import pytest

from blender_img3d.core import pipeline
from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.settings import MeshSettings, Request
from tests.fixtures.meshes import icosphere

WARM_UP, RUNS = 3, 8


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not got back (None without glibc >= 2.33)."""
    mallinfo2 = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd  # small chunks from the heap + mmapped big ones


def current_rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _counters() -> tuple[int, int | None, float]:
    gc.collect()  # only what is younger than gc.freeze(): fast in a big test process
    return len(gc.get_objects()), _malloc_in_use(), current_rss_mb()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_repeated_conversions_keep_memory_flat(tmp_path):
    source = export_mesh(icosphere(1, colors=True), tmp_path / "in.glb")
    request = Request(
        outputs=[tmp_path / "o.glb", tmp_path / "o.obj", tmp_path / "o.step"],
        report_path=tmp_path / "o.json",
        mesh=MeshSettings(enabled=True, target_faces=40),  # decimation, repair, cleanup all run
    )
    for _ in range(WARM_UP):
        pipeline.convert_mesh_file(source, request)
    gc.collect()
    gc.freeze()  # the test process' own objects are counted out from here
    try:
        objects, malloced, rss = _counters()
        for _ in range(RUNS):
            result = pipeline.convert_mesh_file(source, request)
        del result  # the last run's result is ours until here, not a leak
        objects_after, malloced_after, rss_after = _counters()
    finally:
        gc.unfreeze()
    assert objects_after - objects < RUNS  # not one object a run
    if malloced is not None:
        assert malloced_after - malloced < RUNS * 3072  # steady runs: around 1 KB a run
    assert rss_after - rss < 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.glb", "o.glb", "o.json", "o.mtl", "o.obj", "o.step",
    ]  # fmt: skip
