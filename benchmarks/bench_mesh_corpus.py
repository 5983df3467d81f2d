"""STEP of real third-party meshes: write time (merged and not), OpenCascade's read time.

For each file of the test corpus (``tests/fixtures/mesh_corpus.py``: Debian's
assimp-testmodels) and two made-up parts (a 20k-triangle closed torus and a 16k
open height-field "scan" with holes): the read, the STEP write with the coplanar
merge and without (median of ``--repeat`` runs), then OpenCascade's
``STEPControl_Reader`` read + transfer of the merged file, with its solids,
shells, closed shells and solids failing ``BRepCheck_Analyzer`` next to our
label. Prints a Markdown table (slowest reads first). Not a test: run it by hand,

    .venv/bin/python benchmarks/bench_mesh_corpus.py [--quick] [--repeat 3]
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

from blender_img3d.core.exporters import export_mesh  # noqa: E402
from blender_img3d.core.mesh.meshdata import MeshData  # noqa: E402
from blender_img3d.core.mesh.metrics import closedness_label, compute_metrics  # noqa: E402
from blender_img3d.core.mesh.reading import read_mesh  # noqa: E402
from tests.fixtures import mesh_corpus  # noqa: E402
from tests.fixtures.meshes import torus  # noqa: E402
from tests.fixtures.readers import read_step_parts  # noqa: E402


def open_scan(n: int = 90, seed: int = 1) -> MeshData:
    """A wavy height field 0.2 m wide with 2 % of its triangles missing (about 16k)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 0.2, n), np.linspace(0, 0.2, n))
    z = 0.01 * np.sin(x * 40) * np.cos(y * 30) + rng.normal(0, 2e-4, x.shape)
    grid = np.arange(n * n).reshape(n, n)
    a, b = grid[:-1, :-1].ravel(), grid[:-1, 1:].ravel()
    c, d = grid[1:, 1:].ravel(), grid[1:, :-1].ravel()
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    faces = faces[rng.random(len(faces)) > 0.02]
    return MeshData(np.c_[x.ravel(), y.ravel(), z.ravel()], faces, name="open_scan")


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def measure(name: str, mesh: MeshData, folder: Path, repeat: int) -> dict:
    merged, plain = folder / f"{name}.step", folder / f"{name}_plain.step"
    write = [timed(export_mesh, mesh, merged, units="mm") for _ in range(repeat)]
    options = {"merge_coplanar": False}
    write_plain = [
        timed(export_mesh, mesh, plain, units="mm", format_options=options) for _ in range(repeat)
    ]
    step = read_step_parts(merged)
    metrics = compute_metrics(mesh).to_dict()
    return {
        "file": name,
        "triangles": mesh.face_count,
        "write": statistics.median(write),
        "write_plain": statistics.median(write_plain),
        "read": step.seconds,
        "solids": step.solids,
        "shells": step.shells,
        "closed": step.closed_shells,
        "invalid": step.invalid_solids,
        "label": closedness_label(metrics),
        "agrees": step.closed_shells == step.solids == metrics["closed_parts"]
        and step.shells == metrics["parts"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default test run's subset")
    parser.add_argument("--repeat", type=int, default=3, help="write runs per file (median)")
    args = parser.parse_args()
    cases: list[tuple[str, MeshData]] = [
        ("torus_20k", torus(major_segments=200, minor_segments=50)),
        ("open_scan_16k", open_scan()),
    ]
    for entry in mesh_corpus.CORPUS:
        if entry.step and entry.file.is_file() and (entry.quick or not args.quick):
            cases.append((entry.path, read_mesh(entry.file)))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, mesh in cases:
            rows.append(measure(name.replace("/", "_"), mesh, Path(folder), args.repeat))
            row = rows[-1]
            print(f"{row['file']}: {row['triangles']} tris, read {row['read']:.2f} s", flush=True)
    rows.sort(key=lambda row: -row["read"])
    print("\n| file | triangles | STEP write merged / plain (s) | ratio | OCC read (s) "
          "| solids / shells (closed) | invalid solids | our label | agrees |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---|---|")
    for r in rows:
        print(
            f"| {r['file']} | {r['triangles']} | {r['write']:.3f} / {r['write_plain']:.3f} "
            f"| {r['write'] / r['write_plain']:.2f} | {r['read']:.2f} "
            f"| {r['solids']} / {r['shells']} ({r['closed']}) | {r['invalid']} | {r['label']} "
            f"| {'yes' if r['agrees'] else 'NO'} |"
        )
    invalid = sum(r["invalid"] for r in rows)
    mislabelled = sum(not r["agrees"] for r in rows)
    print(f"\n{len(rows)} files: {invalid} invalid STEP solids, {mislabelled} mislabelled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
