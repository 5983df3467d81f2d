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


WARM_THEN_LOAD = """
import importlib.abc, json, sys
from blender_img3d.core.shap_e import loading, warmup
heavy_before = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]
job = warmup.warm_in_background()
again = warmup.warm_in_background() is job and job.start() is False
finished = job.wait(timeout=240)
imported_late = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('torch', 'diffusers', 'transformers'):
            imported_late.append(name)
        return None
sys.meta_path.insert(0, Watch())
loading.load_models({folder!r}, mode='text', device='cpu', dtype='float32')
print(json.dumps({{
    'heavy_before': heavy_before, 'again': again, 'finished': finished, 'state': job.state,
    'error': job.error, 'imported_late': imported_late,
    'pipelines': [m for m in sys.modules if m.startswith('diffusers.pipelines.shap_e.pipeline')],
}}))
"""


def test_the_background_import_brings_in_what_loading_a_model_imports(tiny_text_model_dir):
    """Blender's panel warms the engine once; a load after it imports nothing heavy itself."""
    completed = run_python(WARM_THEN_LOAD.format(folder=str(tiny_text_model_dir)))
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["heavy_before"] == []  # importing the warm-up module is cheap
    assert result["again"] is True  # one import per process, however often the panel redraws
    assert (result["finished"], result["state"], result["error"]) == (True, "done", None)
    assert result["imported_late"] == []
    assert result["pipelines"] == []  # only the model classes, never diffusers' pipelines


def test_the_background_import_returns_at_once_and_keeps_its_failure(caplog):
    import threading

    from blender_img3d.core.shap_e import warmup

    release = threading.Event()
    calls = []

    def slow_import() -> None:
        calls.append(threading.current_thread().name)
        assert release.wait(30)

    job = warmup.ImportWarmup(slow_import)
    assert (job.state, job.wait(0)) == (warmup.IDLE, False)
    assert job.start() is True
    assert job.state == warmup.RUNNING  # start returned while the import still runs
    assert job.start() is False
    release.set()
    assert job.wait(30) is True
    assert (job.state, job.error, calls) == (warmup.DONE, None, ["img3d-warm-imports"])
    assert job.seconds is not None and job.seconds >= 0

    def broken_import() -> None:
        raise ImportError("No module named 'torch'")

    failing = warmup.ImportWarmup(broken_import)
    with caplog.at_level("INFO", logger="blender_img3d.core.shap_e.warmup"):
        failing.start()
        assert failing.wait(30) is True  # nothing raised into the caller or the thread
    assert failing.state == warmup.FAILED
    assert failing.error == "ImportError: No module named 'torch'"
    assert "No module named 'torch'" in caplog.text
