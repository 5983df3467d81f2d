"""The built zip on a machine with nothing but Blender: the exporters and mesh tools work.

A child Python (``fresh_install_probe.py``) hides every library of the dev venv
except those Blender's installer unpacked from the zip's bundled wheels, installs
the zip with Blender's own installer, and exports a cube in the four formats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bpy

PROBE = Path(__file__).with_name("fresh_install_probe.py")


def test_exporters_and_mesh_tools_work_from_the_zip_alone_with_no_vendor_folder(
    extension_zip, tmp_path
):
    completed = subprocess.run(
        [sys.executable, str(PROBE), str(extension_zip), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("__REPORT__")]
    assert completed.returncode == 0 and lines, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(lines[-1][len("__REPORT__") :])
    assert report["vendor_before"] is False and report["vendor_after"] is False
    for fmt, (outcome, size) in report["exports"].items():
        assert outcome == ["FINISHED"] and size > 0, fmt
    assert all(outcome == ["FINISHED"] for outcome in report["tools"].values()), report["tools"]
    # What they imported came from the wheels Blender unpacked, not from any venv.
    site = f"{report['home']}/extensions/.local/"
    assert {"scipy", "ezdxf", "fast_simplification"} <= set(report["seen"])
    assert all(origin.startswith(site) for origin in report["seen"].values()), report["seen"]
    # Only Generate needs the runtime install: its button is greyed out, torch untouched.
    assert report["generate_poll"] is False and report["torch_loaded"] is False
    assert (tmp_path / "cube.step").read_text().startswith("ISO-10303-21;")


def test_the_generate_button_says_it_needs_the_install_when_packages_are_missing(
    installed_extension, monkeypatch
):
    from tests.blender.ui_layout import RecordingLayout

    panel_module = sys.modules[f"{installed_extension}.blender.ui.panel"]
    monkeypatch.setattr(panel_module, "missing_modules", lambda: ["torch", "diffusers"])
    layout = RecordingLayout()
    panel = type("View", (), {"layout": layout})()
    panel_module.IMG3D_PT_main.draw(panel, bpy.context)
    assert "img3d.generate" in layout.texts("operator")
    assert "preferences.addon_show" in layout.texts("operator")
    assert "Export and the mesh tools work without them" in layout.texts("label")
