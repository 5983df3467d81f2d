"""Run in a child Python: a Blender with nothing but its own numpy, then the built zip.

Every third-party library the dev venv has (scipy, ezdxf, torch, ...) is hidden
by a meta-path finder unless it comes from Blender's extension site-packages
under the throw-away user folder, which is where Blender's installer puts the
zip's bundled wheels. So what works here works on an artist's fresh machine.

    python fresh_install_probe.py <zip> <output folder>   → prints one JSON line
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="img3d-fresh-"))
os.environ["BLENDER_USER_RESOURCES"] = str(HOME)
# What the installer put there (about 200 MB) goes when the probe ends; its report stays.
atexit.register(shutil.rmtree, HOME, ignore_errors=True)

# Blender ships numpy (and requests, zstandard, cython for its own use); nothing else.
HIDDEN = {
    "scipy",
    "fast_simplification",
    "ezdxf",
    "fontTools",
    "pyparsing",
    "typing_extensions",
    "torch",
    "diffusers",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "trimesh",
    "skimage",
    "PIL",
    "manifold3d",
}
SEEN: dict[str, str] = {}


class HideVenvLibraries(importlib.abc.MetaPathFinder):
    """Find a hidden top-level module only in folders under the fresh Blender home."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in HIDDEN or "." in name:
            return None
        allowed = [entry for entry in sys.path if entry.startswith(str(HOME))]
        spec = importlib.machinery.PathFinder.find_spec(name, allowed)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: fresh machine)")
        SEEN[top] = spec.origin or ""
        return spec


sys.meta_path.insert(0, HideVenvLibraries())

import bpy  # noqa: E402


def main(zip_path: str, out_dir: str) -> dict:
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    package = "bl_ext.user_default.blender_img3d"
    bpy.ops.wm.read_homefile(app_template="")
    import addon_utils

    if package not in bpy.context.preferences.addons:
        addon_utils.enable(package, default_set=True)
    vendor_root = HOME / "extensions" / ".user" / "user_default" / "blender_img3d" / "vendor"
    # Enabling may create the empty folder; nothing may be installed in it.
    installed = lambda: vendor_root.exists() and any(p.is_file() for p in vendor_root.rglob("*"))  # noqa: E731
    report = {"vendor_before": installed(), "exports": {}, "tools": {}}
    bpy.ops.mesh.primitive_cube_add(size=0.05)
    bpy.ops.object.modifier_add(type="SUBSURF")
    bpy.ops.object.modifier_apply(modifier="Subdivision")
    mesh = bpy.context.active_object.data
    while mesh.uv_layers:  # a generated mesh has none; the tools refuse to drop them silently
        mesh.uv_layers.remove(mesh.uv_layers[0])
    for fmt, ext in (("GLB", "glb"), ("OBJ", "obj"), ("DXF", "dxf"), ("STEP", "step")):
        path = Path(out_dir) / f"cube.{ext}"
        outcome = bpy.ops.img3d.export(filepath=str(path), format=fmt)
        report["exports"][fmt] = [sorted(outcome), path.stat().st_size if path.exists() else 0]
    for tool, kwargs in (
        ("mesh_clean", {}),
        ("mesh_smooth", {"iterations": 2}),
        ("mesh_decimate", {"target_faces": 20}),
        ("quality_report", {}),
    ):
        report["tools"][tool] = sorted(getattr(bpy.ops.img3d, tool)(**kwargs))
    report["generate_poll"] = bpy.ops.img3d.generate.poll()
    report["seen"] = SEEN
    report["home"] = str(HOME)
    report["vendor_after"] = installed()
    report["torch_loaded"] = "torch" in sys.modules
    return report


if __name__ == "__main__":
    print("__REPORT__" + json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
