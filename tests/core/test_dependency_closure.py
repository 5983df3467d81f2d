"""Offline: what Blender installs holds every runtime requirement and is closed under
its dependencies, for each supported (Python, platform).

The vendor folder is filled with ``pip --no-deps`` (so no resolver can pull a second
torch or numpy), so a distribution missing from the pinned set is simply absent in
Blender, as ``xatlas`` once was: Bake then asked for an install that could never help.
The dependencies are read from the dev venv's own metadata (it installs the same
pins), with the markers evaluated for each target.
"""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from blender_img3d.core.system.requirements import (
    PLATFORM_TAGS,
    RUNTIME_MODULES,
    RUNTIME_REQUIREMENTS,
    SUPPORTED_PYTHONS,
)
from tests.fixtures.platforms import environment, pinned_set, unmet

TARGETS = [(python, platform) for python in SUPPORTED_PYTHONS for platform in PLATFORM_TAGS]
IDS = [f"py{python[0]}{python[1]}-{platform}" for python, platform in TARGETS]


def installed_set(python: tuple[int, int], platform: str) -> dict[str, str]:
    env = environment(platform, python)
    pins = [Requirement(text) for text in pinned_set(SUPPORTED_PYTHONS[python], env)]
    return {canonicalize_name(req.name): str(req.specifier).lstrip("=") for req in pins}


@pytest.mark.parametrize(("python", "platform"), TARGETS, ids=IDS)
def test_every_runtime_requirement_and_module_is_in_what_blender_installs(python, platform):
    installed = installed_set(python, platform)
    for text in RUNTIME_REQUIREMENTS:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{text} is a runtime requirement Blender doesn't install"
        assert requirement.specifier.contains(installed[name], prereleases=True), (
            text,
            installed[name],
        )
    for module, distribution in RUNTIME_MODULES.items():
        assert canonicalize_name(distribution) in installed, f"{module} ({distribution})"


@pytest.mark.parametrize(("python", "platform"), TARGETS, ids=IDS)
def test_what_blender_installs_is_closed_under_its_dependencies(python, platform):
    env = environment(platform, python)
    installed = installed_set(python, platform)
    missing = []
    for name, version in installed.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a platform-only package (colorama): its own pin is what is checked
        if name == "numpy" and distribution.version != version:
            continue  # Blender's own numpy differs per line; it needs nothing
        assert distribution.version.split("+")[0] == version, (
            f"the dev venv has {name} {distribution.version}, the pinned set {version}: "
            "run 'python3 vendor_install.py --dev'"
        )
        missing += unmet(name, distribution.requires or [], env, installed)
    assert not missing, "\n".join(missing)


def test_a_missing_runtime_requirement_would_be_caught(monkeypatch):
    """The check above fails for a requirement outside the derived set (the xatlas bug)."""
    import blender_img3d.core.system.requirements as requirements

    monkeypatch.setattr(
        requirements, "LIBRARY_PINS", {abi: requirements._TRANSITIVE for abi in ("cp311", "cp313")}
    )
    import tests.fixtures.platforms as platforms

    monkeypatch.setattr(platforms, "LIBRARY_PINS", requirements.LIBRARY_PINS)
    with pytest.raises(AssertionError, match="Blender doesn't install"):
        test_every_runtime_requirement_and_module_is_in_what_blender_installs((3, 11), "linux-x64")
