"""Dependency checks: missing packages are named by their pip name; installs count at once."""

from __future__ import annotations

import sys

import pytest

from blender_img3d.core.errors import DependencyError
from blender_img3d.core.system import deps


def test_missing_modules_are_named_by_their_pip_distribution(monkeypatch):
    monkeypatch.setitem(deps.RUNTIME_MODULES, "img3d_absent_mod", "img3d-absent-dist")
    assert deps.missing_modules(["numpy", "img3d_absent_mod"]) == ["img3d-absent-dist"]
    with pytest.raises(DependencyError, match="img3d-absent-dist.*Install dependencies"):
        deps.require(["img3d_absent_mod"])


def test_a_package_installed_after_a_miss_is_found_on_the_next_check(tmp_path, monkeypatch):
    name = "img3d_late_package"
    assert not deps.importable(name)
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert deps.importable(name)
    assert name not in sys.modules  # found without importing it


def test_package_status_reports_versions_of_found_packages():
    status = deps.package_status("numpy")
    assert status.found and status.version and status.distribution == "numpy"
