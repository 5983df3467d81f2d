"""The manifest matches the package and Blender's validator accepts (and rejects) for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from blender_img3d import __version__
from blender_img3d.core.system import requirements

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
    oldest = min(requirements.BLENDER_LINES, key=lambda line: tuple(map(int, line.split("."))))
    assert MANIFEST["blender_version_min"] == f"{oldest}.0"
    # No maximum: a newer Blender installs; tests/matrix proves each released line.
    assert "blender_version_max" not in MANIFEST
    assert "wheels" not in MANIFEST  # the build adds them from requirements.py
    assert all(entry.startswith("SPDX:") for entry in MANIFEST["license"])
    assert set(MANIFEST["permissions"]) == {"files", "network"}
    for reason in MANIFEST["permissions"].values():
        assert len(reason) <= 64 and reason[-1].isalnum()
    assert "paths_exclude_pattern" in MANIFEST["build"]
    for contacted in ("PyPI", "PyTorch", "Hugging Face"):
        assert contacted in MANIFEST["permissions"]["network"]


def test_platforms_and_versions_match_what_the_pinned_sets_support():
    assert sorted(MANIFEST["platforms"]) == sorted(requirements.PLATFORM_TAGS)
    assert "macos-x64" not in MANIFEST["platforms"]  # torch 2.13 has no Intel-Mac wheel
    assert set(requirements.SUPPORTED_PYTHONS.values()) == set(requirements.LIBRARY_PINS)
    assert set(requirements.SUPPORTED_PYTHONS.values()) == set(requirements.BLENDER_RELEASES)


def test_the_staged_manifest_lists_the_wheels_and_the_platforms_built():
    text = build_extension.staged_manifest_text(
        (REPO_ROOT / "blender_manifest.toml").read_text(), ["a-1-py3-none-any.whl"], ["linux-x64"]
    )
    staged = tomllib.loads(text)
    assert staged["wheels"] == ["./wheels/a-1-py3-none-any.whl"]
    assert staged["platforms"] == ["linux-x64"]
    assert staged["permissions"] == MANIFEST["permissions"]


def test_build_writes_a_platform_zip_with_its_wheels_that_the_validator_accepts(tmp_path):
    platform = build_extension.this_platform()
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "build_extension.py"), "--output-dir",
         tmp_path, "--platform", platform],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    zip_path = tmp_path / f"blender_img3d-{__version__}-{platform.replace('-', '_')}.zip"
    assert zip_path.is_file()
    build_extension.validate(zip_path)  # raises on rejection
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)
    wheels = sorted(name for name in names if name.startswith("wheels/"))
    for requirement in requirements.BUNDLED_WHEELS:
        prefix = "wheels/" + requirements.name_of(requirement).replace("-", "_") + "-"
        found = [name for name in wheels if name.lower().startswith(prefix)]
        binary = requirements.name_of(requirement) in requirements.BINARY_BUNDLED_WHEELS
        # Compiled wheels: one per supported Python, for this platform only.
        assert len(found) == (len(requirements.SUPPORTED_PYTHONS) if binary else 1), found
    assert not any("win_amd64" in name or "macosx" in name for name in wheels)


def test_validator_rejects_a_bad_manifest_with_its_message(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(REPO_ROOT / "blender_img3d", package)
    text = (REPO_ROOT / "blender_manifest.toml").read_text()
    reason = MANIFEST["permissions"]["network"]
    # Same length (the reason may already use all 64 characters), ending in a full stop.
    (package / "blender_manifest.toml").write_text(text.replace(reason, reason[:-1] + "."))
    with pytest.raises(build_extension.BuildError, match="punctuation"):
        build_extension.validate(package)


def test_build_script_exits_non_zero_with_the_validator_message(tmp_path, monkeypatch):
    bad_manifest = tmp_path / "blender_manifest.toml"
    bad_manifest.write_text(
        (REPO_ROOT / "blender_manifest.toml").read_text().replace('"Add Mesh"', '"Not A Tag"')
    )
    monkeypatch.setattr(build_extension, "MANIFEST", bad_manifest)
    assert build_extension.main(["--output-dir", str(tmp_path / "dist")]) == 1
