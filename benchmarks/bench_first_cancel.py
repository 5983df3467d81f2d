"""The first Cancel in a Blender session: how soon Generate is free again, the worker stopped.

Each run is a fresh child process (bpy, the extension's task state, the local
backend and the tests' tiny text model): Generate is started, Cancel comes
``--after`` seconds later, during the first model load (imports of torch,
diffusers and transformers, then the weights: nothing there can stop half-way),
and the main thread keeps ticking as Blender's timer would. Measured from the
cancel: until the session has ended (the panel's Generate works again), until a
new Generate has started, and until the old worker thread has stopped; then
whether that worker left any file. Not a test: run it by hand,

    .venv/bin/python benchmarks/bench_first_cancel.py [--repeats 3] [--repo OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bpy
from blender_img3d.blender import session as sessions
from blender_img3d.blender import tasks
from blender_img3d.core.backend import get_backend
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request

for cls in tasks.CLASSES:
    bpy.utils.register_class(cls)
tasks.register_properties()


class NoHistory(sessions.GenerateSession):
    def on_end(self, context):  # the scene history needs the whole add-on's properties
        pass


def start(folder):
    request = Request(prompt="a chair", generation=GenerationSettings(
        model=sys.argv[2], steps=2, grid_size=16), mesh=MeshSettings(enabled=False))
    return NoHistory(request, sessions.ImportOptions(), backend=get_backend("local"),
                     output_dir=folder).start(bpy.context.window_manager)


old_folder, new_folder = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
old = start(old_folder)
deadline = time.perf_counter() + float(sys.argv[3])
while time.perf_counter() < deadline:
    old.tick(bpy.context)
    time.sleep(0.02)
phase = tasks.state_of("generate").phase
cancelled = time.perf_counter()
sessions.cancel_active()
while old.tick(bpy.context) == tasks.RUNNING:
    time.sleep(0.02)
ended = time.perf_counter() - cancelled
new = start(new_folder)
restarted = time.perf_counter() - cancelled
old.job.join()
stopped = time.perf_counter() - cancelled
new.cancel()
new.run_to_end(bpy.context, timeout=120)
new.job.join()
for ticker in list(tasks._BACKGROUND_TICKERS):  # what Blender's timers would still run
    while ticker() is not None:
        time.sleep(0.02)
print(json.dumps({"phase": phase, "ended": ended, "restarted": restarted, "stopped": stopped,
                  "old_files": len(list(old_folder.iterdir()))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--after", type=float, default=0.5, help="seconds before Cancel")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout to measure")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.suite import _tiny_folder

    model = _tiny_folder("text")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "unknown CPU",
    )
    print(f"{cpu}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; checkout {args.repo}")
    runs = []
    for _ in range(args.repeats):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(args.repo), str(model), str(args.after)],
            capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  cancelled during {runs[-1]['phase']!r}: {runs[-1]}", flush=True)
    for key, label in (
        ("ended", "cancel -> session ended (Generate free)"),
        ("restarted", "cancel -> a new Generate started"),
        ("stopped", "cancel -> old worker stopped"),
    ):
        print(f"{label:<42} median {statistics.median(r[key] for r in runs):6.2f} s")
    print(f"files left by the cancelled runs: {sum(r['old_files'] for r in runs)}")


if __name__ == "__main__":
    main()
