"""Real Blender (the bpy wheel) with the extension built, validated and installed for real.

The session builds this platform's ``dist``-style zip (bundled exporter wheels
included) into a temp folder with ``tools/build_extension.py`` (Blender's own
builder and validator), installs it
with Blender's own ``extensions.package_install_files`` into the
``user_default`` repository, and every test starts from a fresh home file with
the extension enabled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy", reason="the bpy wheel is part of the dev set-up")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_MODULE = "bl_ext.user_default.blender_img3d"


def build_extension_zip(output_dir: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    return build_extension.build_for_this_platform(output_dir)


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    return build_extension_zip(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed_extension(extension_zip) -> str:
    """Install the freshly built zip once; return the add-on's module name."""
    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    # FINISHED is returned even when Blender refused the package (a version range, say).
    assert EXTENSION_MODULE in bpy.context.preferences.addons, "Blender refused the extension"
    return EXTENSION_MODULE


@pytest.fixture(autouse=True)
def fresh_blender_file(installed_extension):
    """A clean scene per test, with the extension enabled (a test may have disabled it)."""
    import addon_utils

    bpy.ops.wm.read_homefile(app_template="")
    if installed_extension not in bpy.context.preferences.addons:
        addon_utils.enable(installed_extension, default_set=True)
    yield
    bpy.ops.wm.read_homefile(app_template="")
