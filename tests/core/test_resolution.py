"""Each pinned set resolves on PyPI for every supported (Python, platform), without installing.

pip's ``--dry-run --only-binary=:all: --python-version X --platform P`` finds a
wheel for each pinned distribution (a missing wheel fails here, not on an
artist's machine). pip evaluates dependency markers for the machine it runs on,
not the target, so the set is resolved ``--no-deps`` (as the Blender install
runs it) and its closure is checked here from the metadata pip reports, with
the markers evaluated for the target: every dependency must be in the set, at
a version that satisfies it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from blender_img3d.core.system.requirements import (
    PLATFORM_TAGS,
    SUPPORTED_PYTHONS,
)
from tests.fixtures.platforms import environment, pinned_set, unmet

PYPI = "https://pypi.org/simple"


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{PYPI}/pip/", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not pypi_reachable(),
        reason="PyPI (https://pypi.org) is unreachable: the pinned-set resolution needs it "
        "(CI has it); run again online",
    ),
]


def dry_run(requirements: list[str], python, platform: str, tmp_path) -> dict:
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
        "--only-binary=:all:", "--disable-pip-version-check", "-q",
        "--python-version", f"{python[0]}.{python[1]}", "--implementation", "cp",
        "--target", str(tmp_path / "target"), "--index-url", PYPI, "--report", str(report),
    ]  # fmt: skip
    for tag in PLATFORM_TAGS[platform]:
        command += ["--platform", tag]
    # PyPI only: no local mirror or wheel folder from this machine's pip configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    completed = subprocess.run(
        [*command, *requirements], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize("platform", sorted(PLATFORM_TAGS))
@pytest.mark.parametrize("python", sorted(SUPPORTED_PYTHONS), ids=lambda v: f"py{v[0]}{v[1]}")
def test_the_pinned_set_resolves_with_wheels_and_a_closed_dependency_set(
    python, platform, tmp_path
):
    abi = SUPPORTED_PYTHONS[python]
    env = environment(platform, python)
    requirements = pinned_set(abi, env)
    report = dry_run(requirements, python, platform, tmp_path)
    installed = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in report["install"]
    }
    asked = {canonicalize_name(Requirement(text).name) for text in requirements}
    assert set(installed) == asked  # one wheel found for every pin
    wheels = [item["download_info"]["url"].rsplit("/", 1)[-1] for item in report["install"]]
    assert all(name.endswith(".whl") for name in wheels)
    missing = []
    for item in report["install"]:
        requires = item["metadata"].get("requires_dist") or []
        missing += unmet(item["metadata"]["name"], requires, env, installed)
    assert not missing, "\n".join(missing)
