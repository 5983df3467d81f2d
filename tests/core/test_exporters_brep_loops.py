"""Planar B-rep faces found in array passes: every loop closes, outer loops run counter-
clockwise, every boundary edge is in one loop, and odd boundaries fall back to triangles.

Flat grids with random triangles removed give holes, pinches (two boundary edges leaving
one vertex) and islands; the 2M-face speed is in benchmarks/bench_big_export.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_img3d.core.exporters.brep_mesh import _cycles, brep_mesh, planar_faces


def holey_grid(n: int, keep: float, seed: int):
    """An n x n grid of unit quads at z=0 (and a copy at z=5 facing down) with holes."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1).astype(float)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a, b = (i * (n + 1) + j).ravel(), ((i + 1) * (n + 1) + j).ravel()
    c, d = ((i + 1) * (n + 1) + j + 1).ravel(), (i * (n + 1) + j + 1).ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    faces = faces[rng.random(len(faces)) < keep]
    top = points + (0.0, 0.0, 5.0)
    return np.concatenate([points, top]), np.concatenate([faces, faces[:, ::-1] + len(points)])


def test_cycles_name_each_cycle_by_its_lowest_member_and_count_steps_from_it():
    successor = np.array([3, 0, 2, 4, 1, 6, 5])  # cycles 0>3>4>1>0, 2>2, 5>6>5
    lowest, position = _cycles(successor)
    assert lowest.tolist() == [0, 0, 2, 0, 0, 5, 5]
    assert position.tolist() == [0, 3, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("seed", range(12))
def test_loops_of_merged_faces_close_and_cover_each_boundary_edge_once(seed):
    points, faces = holey_grid(8, keep=0.6 + 0.03 * seed, seed=seed)
    topo = brep_mesh(points, faces, 9)
    result = planar_faces(topo, topo.tolerance)
    starts = np.where(result.loop_forward, *topo.edges[result.loop_edges].T)
    ends = np.where(result.loop_forward, *topo.edges[result.loop_edges].T[::-1])
    bounds = result.loop_start
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        assert np.array_equal(np.roll(starts[a:b], -1), ends[a:b])  # the loop closes
    for face, loops in enumerate(result.face_loops):
        for index, loop in enumerate(loops):
            p = topo.points[starts[bounds[loop] : bounds[loop + 1]]]
            area = np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0) @ result.normal[face]
            assert (area > 0) == (index == 0)  # outer loop first, counter-clockwise
    # Each edge bounds at most one face per side, and the two grids' faces stay apart.
    directed = np.stack([starts, ends], axis=1)
    assert len(np.unique(directed, axis=0)) == len(directed)
    # Merged (a face of more than one triangle) unless a pinch sent the area back.
    assert result.count < len(topo.faces) or len(np.diff(bounds)) == len(topo.faces)
