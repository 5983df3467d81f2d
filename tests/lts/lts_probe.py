"""Run by an LTS venv's Python: install the zip, enable, generate on a tiny model, export.

python lts_probe.py <zip> <tiny text model> <output folder>   → one JSON line
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="img3d-lts-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bpy  # noqa: E402


def main(zip_path: str, model: str, out_dir: str) -> dict:
    report = {"blender": bpy.app.version_string, "bpy_file": bpy.__file__}
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    report["install"] = sorted(result)
    package = "bl_ext.user_default.blender_img3d"
    bpy.ops.wm.read_homefile(app_template="")
    import addon_utils

    if package not in bpy.context.preferences.addons:
        addon_utils.enable(package, default_set=True)
    report["enabled"] = package in bpy.context.preferences.addons
    before = set(bpy.data.objects.keys())
    outcome = bpy.ops.img3d.generate(prompt="a cube", model=model, steps=2, grid_size=16, seed=1)
    report["generate"] = sorted(outcome)
    new = [name for name in bpy.data.objects.keys() if name not in before]
    report["objects"] = new
    if new:
        obj = bpy.data.objects[new[0]]
        bpy.ops.object.select_all(action="DESELECT")
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
        report["faces"] = len(obj.data.polygons)
    report["exports"] = {}
    for fmt, ext in (("GLB", "glb"), ("OBJ", "obj"), ("DXF", "dxf"), ("STEP", "step")):
        path = Path(out_dir) / f"lts.{ext}"
        done = bpy.ops.img3d.export(filepath=str(path), format=fmt)
        report["exports"][fmt] = [sorted(done), path.stat().st_size if path.exists() else 0]
    return report


if __name__ == "__main__":
    print("__REPORT__" + json.dumps(main(*sys.argv[1:4])), flush=True)
