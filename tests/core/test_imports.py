"""Import hygiene: core never imports bpy, and importing the package stays cheap."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import blender_img3d.core

REPO_ROOT = Path(__file__).resolve().parents[2]

BLOCK_BPY = """
import importlib.abc, sys
class BlockBpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "bpy" or name.startswith("bpy.") or name in ("bmesh", "mathutils"):
            raise ImportError(f"core imported {name}")
sys.meta_path.insert(0, BlockBpy())
"""


def core_module_names() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(blender_img3d.core.__path__, "blender_img3d.core.")
    )


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def test_every_core_module_imports_without_bpy():
    names = core_module_names()
    assert "blender_img3d.core.settings" in names
    code = BLOCK_BPY + f"import importlib\nfor name in {names!r}: importlib.import_module(name)\n"
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr


def test_importing_the_package_and_core_loads_no_heavy_library():
    names = core_module_names()
    code = (
        "import importlib, json, sys\n"
        f"for name in ['blender_img3d', 'blender_img3d.cli.main'] + {names!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = ['bpy', 'torch', 'diffusers', 'transformers', 'trimesh', 'skimage', 'ezdxf']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == []


def test_cli_help_works_without_blender_or_torch():
    code = (
        "import runpy, sys, json\n"
        "sys.argv = ['blender_img3d', '--help']\n"
        "try:\n    runpy.run_module('blender_img3d', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "heavy = [m for m in ('bpy', 'torch', 'diffusers') if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    completed = run_python(code)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}
    assert "generate" in completed.stdout or "info" in completed.stdout
