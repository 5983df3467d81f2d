"""The manifest matches the package and Blender's validator accepts (and rejects) for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from blender_img3d import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tools"))
import build_extension  # noqa: E402

MANIFEST = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text())


def test_manifest_version_equals_package_version():
    assert MANIFEST["version"] == __version__


def test_manifest_declares_what_the_issue_asks_for():
    assert MANIFEST["schema_version"] == "1.0.0"
    assert MANIFEST["id"] == "blender_img3d"
    assert MANIFEST["type"] == "add-on"
    assert MANIFEST["blender_version_min"] == "4.2.0"
    assert all(entry.startswith("SPDX:") for entry in MANIFEST["license"])
    assert set(MANIFEST["permissions"]) == {"files", "network"}
    for reason in MANIFEST["permissions"].values():
        assert len(reason) <= 64 and reason[-1].isalnum()
    assert "paths_exclude_pattern" in MANIFEST["build"]


def test_build_writes_a_zip_the_validator_accepts(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "build_extension.py"), "--output-dir", tmp_path],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    zip_path = tmp_path / f"blender_img3d-{__version__}.zip"
    assert zip_path.is_file()
    build_extension.validate(zip_path)  # raises on rejection
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)


def test_validator_rejects_a_bad_manifest_with_its_message(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(REPO_ROOT / "blender_img3d", package)
    text = (REPO_ROOT / "blender_manifest.toml").read_text()
    reason = MANIFEST["permissions"]["network"]
    (package / "blender_manifest.toml").write_text(text.replace(reason, reason + "."))
    with pytest.raises(build_extension.BuildError, match="punctuation"):
        build_extension.validate(package)


def test_build_script_exits_non_zero_with_the_validator_message(tmp_path, monkeypatch):
    bad_manifest = tmp_path / "blender_manifest.toml"
    bad_manifest.write_text(
        (REPO_ROOT / "blender_manifest.toml").read_text().replace('"Add Mesh"', '"Not A Tag"')
    )
    monkeypatch.setattr(build_extension, "MANIFEST", bad_manifest)
    assert build_extension.main(["--output-dir", str(tmp_path / "dist")]) == 1
