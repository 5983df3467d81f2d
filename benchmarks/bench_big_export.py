"""Big-mesh exports: time and peak memory of DXF (POLYFACE, MESH) and STEP at 2M faces.

Each export runs in a fresh child process that builds the mesh in code (a
torus: closed, smooth, nothing to merge, so every triangle is a face of the
file), reads its own peak RSS (``VmHWM``) before and after the export, and
prints one JSON line; the parent repeats and keeps medians. Wall time and the
child's CPU time are both shown: on a shared machine (the load average is
printed) the wall time is the CPU time plus the wait for a core. Not a test: run it
by hand (minutes on 2 cores),

    .venv/bin/python benchmarks/bench_big_export.py [--faces 2000000] [--repeats 3]
        [--cases dxf-polyface dxf-mesh step] [--repo OTHER_CHECKOUT]

``--repo`` measures another checkout (the code before a change) with the same
mesh, for before/after figures. Results go to RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "dxf-polyface": (".dxf", {"entity": "polyface"}),
    "dxf-mesh": (".dxf", {"entity": "mesh"}),
    "step": (".step", {}),
    "step-triangles": (".step", {"format_options": {"step": {"merge_coplanar": False}}}),
    "obj": (".obj", {}),
    "glb": (".glb", {}),
}

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np

def vmhwm_mib():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) / 1024

from blender_img3d.core.exporters import export_mesh
from blender_img3d.core.mesh.meshdata import MeshData

faces_wanted, suffix = int(sys.argv[2]), sys.argv[3]
options, folder = json.loads(sys.argv[4]), sys.argv[5]
# A torus of n x m quads (2 n m triangles), built with numpy: a closed, curved surface.
n = int(round((faces_wanted / 2) ** 0.5))
m = faces_wanted // (2 * n)
u, v = np.meshgrid(np.arange(n) * 2 * np.pi / n, np.arange(m) * 2 * np.pi / m, indexing="ij")
ring = 1.0 + 0.3 * np.cos(v)
vertices = np.stack([ring * np.cos(u), ring * np.sin(u), 0.3 * np.sin(v)], axis=-1).reshape(-1, 3)
i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
a = (i * m + j).ravel(); b = (((i + 1) % n) * m + j).ravel()
c = (((i + 1) % n) * m + (j + 1) % m).ravel(); d = (i * m + (j + 1) % m).ravel()
faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
colors = np.random.default_rng(0).random((len(vertices), 3)).astype(np.float32)
mesh = MeshData(vertices * 0.1, faces, colors=colors, name="big")
before = vmhwm_mib()
path = os.path.join(folder, "big" + suffix)
start, cpu = time.perf_counter(), time.process_time()
export_mesh(mesh, path, **options)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"faces": len(faces), "seconds": seconds, "cpu": cpu, "peak_mib": vmhwm_mib(),
                  "before_mib": before, "size_mb": os.path.getsize(path) / 1e6}))
"""


def run_case(repo: Path, faces: int, case: str) -> dict:
    suffix, options = CASES[case]
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(repo), str(faces), suffix, json.dumps(options),
             folder],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES)[:3])
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout to measure")
    args = parser.parse_args()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "unknown CPU",
    )
    load = os.getloadavg()[0]
    print(f"{cpu}, {os.cpu_count()} cpus, load {load:.1f}; checkout {args.repo}")
    print(f"{'case':<14} {'faces':>9} {'median s':>9} {'cpu s':>7} {'peak MiB':>9} "
          f"{'mesh MiB':>9} {'MB':>7}  runs (s)")  # fmt: skip
    for case in args.cases:
        runs = [run_case(args.repo, args.faces, case) for _ in range(args.repeats)]
        seconds = [r["seconds"] for r in runs]
        print(f"{case:<14} {runs[0]['faces']:>9} {statistics.median(seconds):>9.1f} "
              f"{statistics.median(r['cpu'] for r in runs):>7.1f} "
              f"{statistics.median(r['peak_mib'] for r in runs):>9.0f} "
              f"{statistics.median(r['before_mib'] for r in runs):>9.0f} "
              f"{runs[0]['size_mb']:>7.0f}  {', '.join(f'{s:.1f}' for s in seconds)}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
