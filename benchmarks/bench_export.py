"""Export speed and size: our STEP and DXF writers on 20k and 200k triangles.

Reference: the same closed mesh written through OpenCascade, the usual way to
get a STEP solid out of a mesh in Python (one planar face per triangle,
BRepBuilderAPI_Sewing, a solid, STEPControl_Writer). Prints a table with time,
file size and the speed ratio OCC / ours. Not a test: run it by hand,

    .venv/bin/python benchmarks/bench_export.py [--occ-200k]

Sewing 200k faces takes many minutes; that row is skipped unless ``--occ-200k``
is given or the 20k run predicts it finishes within three minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core.exporters import export_mesh  # noqa: E402
from tests.fixtures.meshes import torus  # noqa: E402

OCC_LIMIT_S = 180.0


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def occ_sewn_step(mesh, path: Path) -> None:
    """The mesh as a sewn OpenCascade solid written by STEPControl_Writer (mm)."""
    from OCP.BRepBuilderAPI import (
        BRepBuilderAPI_MakeFace,
        BRepBuilderAPI_MakePolygon,
        BRepBuilderAPI_MakeSolid,
        BRepBuilderAPI_Sewing,
    )
    from OCP.gp import gp_Pnt
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer
    from OCP.TopAbs import TopAbs_SHELL
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS

    points = [gp_Pnt(*p) for p in (mesh.vertices * 1000.0).tolist()]
    sewing = BRepBuilderAPI_Sewing(1e-6)
    for a, b, c in mesh.faces.tolist():
        wire = BRepBuilderAPI_MakePolygon(points[a], points[b], points[c], True).Wire()
        sewing.Add(BRepBuilderAPI_MakeFace(wire, True).Face())
    sewing.Perform()
    shells = TopExp_Explorer(sewing.SewedShape(), TopAbs_SHELL)
    solid = BRepBuilderAPI_MakeSolid()
    while shells.More():
        solid.Add(TopoDS.Shell(shells.Current()))
        shells.Next()
    solid = solid.Solid()
    writer = STEPControl_Writer()
    writer.Transfer(solid, STEPControl_AsIs)
    if writer.Write(str(path)) != IFSelect_RetDone:
        raise RuntimeError("STEPControl_Writer failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--occ-200k", action="store_true", help="also sew 200k faces with OCC")
    args = parser.parse_args()

    cases = {"20k": torus(1.0, 0.3, 100, 100), "200k": torus(1.0, 0.3, 500, 200)}
    print(f"cpus: {os.cpu_count()}  (affinity: {len(os.sched_getaffinity(0))})")
    print(f"{'case':<6} {'faces':>7} {'writer':<12} {'time s':>8} {'MB':>8} {'OCC/ours':>9}")
    occ_20k = None
    with tempfile.TemporaryDirectory() as folder:
        for label, mesh in cases.items():
            ours_step = None
            for suffix in (".step", ".dxf"):
                path = Path(folder) / f"{label}{suffix}"
                seconds, _ = timed(export_mesh, mesh, path)
                ours_step = seconds if suffix == ".step" else ours_step
                size = path.stat().st_size / 1e6
                print(f"{label:<6} {mesh.face_count:>7} {'ours ' + suffix[1:]:<12} "
                      f"{seconds:>8.2f} {size:>8.1f}")  # fmt: skip
            predicted = None if occ_20k is None else occ_20k * 10
            if label == "200k" and not args.occ_200k and (predicted or 0) > OCC_LIMIT_S:
                print(f"{label:<6} {mesh.face_count:>7} {'OCC sewing':<12} skipped: the 20k run "
                      f"predicts > {predicted:.0f} s (limit {OCC_LIMIT_S:.0f} s; "
                      "--occ-200k runs it)")  # fmt: skip
                continue
            path = Path(folder) / f"{label}_occ.step"
            seconds, _ = timed(occ_sewn_step, mesh, path)
            occ_20k = seconds if label == "20k" else occ_20k
            size = path.stat().st_size / 1e6
            print(f"{label:<6} {mesh.face_count:>7} {'OCC sewing':<12} {seconds:>8.2f} "
                  f"{size:>8.1f} {seconds / ours_step:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
