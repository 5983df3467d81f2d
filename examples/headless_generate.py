"""Generate a mesh from an image without a window, save a .blend and export GLB + STEP.

Run with Blender (the exit code is non-zero on any failure):

    blender -b --python-exit-code 1 --python examples/headless_generate.py -- \\
        --image examples/stool.png --out-dir out/ [--model DIR_OR_ID] [--steps 64]

or with the bpy wheel's Python: ``.venv/bin/python examples/headless_generate.py -- ...``.
It uses the installed extension when there is one, else this repository's copy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import bpy

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALLED_MODULE = "bl_ext.user_default.blender_img3d"


def script_args() -> list[str]:
    """Arguments after ``--`` (Blender keeps its own before it)."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []


def enable_addon() -> str:
    """Enable the installed extension, or this repository's package; return its module name."""
    import addon_utils  # importable only once bpy is (the bpy wheel sets its path up)

    for module in (INSTALLED_MODULE, "blender_img3d"):
        if module == "blender_img3d" and str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        try:
            if addon_utils.enable(module, default_set=True) is not None:
                return module
        except ImportError:
            continue
    raise SystemExit("error: the blender_img3d add-on is neither installed nor next to this script")


def main() -> int:
    parser = argparse.ArgumentParser(prog="headless_generate.py")
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--model", default="")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid-size", type=int, default=128)
    parser.add_argument("--target-faces", type=int, default=20000)
    args = parser.parse_args(script_args())

    module = enable_addon()
    api = importlib.import_module(module + ".blender.api")
    errors = importlib.import_module(module + ".core.errors")

    bpy.ops.wm.read_homefile(use_empty=True)
    try:
        overrides = dict(
            image_path=str(args.image.resolve()),
            steps=args.steps,
            seed=args.seed,
            grid_size=args.grid_size,
            target_faces=args.target_faces,
        )
        if args.model:
            overrides["model"] = args.model
        objects = api.generate(**overrides)
    except errors.Img3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.image.stem
    bpy.ops.wm.save_as_mainfile(filepath=str(args.out_dir / f"{stem}.blend"))
    for fmt, suffix in (("GLB", ".glb"), ("STEP", ".step")):
        result = bpy.ops.img3d.export(filepath=str(args.out_dir / f"{stem}{suffix}"), format=fmt)
        if result != {"FINISHED"}:
            print(f"error: {fmt} export failed", file=sys.stderr)
            return 1
    print(f"generated {', '.join(obj.name for obj in objects)} into {args.out_dir}")
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
