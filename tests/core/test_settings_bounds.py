"""One set of bounds: Request.validate refuses every out-of-range count or size at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_img3d.core import choices, settings
from blender_img3d.core.errors import ConfigError
from blender_img3d.core.settings import GenerationSettings, MeshSettings, Request
from blender_img3d.core.shap_e import schedules

REPO_ROOT = Path(__file__).resolve().parents[2]


def request(**changes) -> Request:
    generation = {k: v for k, v in changes.items() if k in GenerationSettings.__dataclass_fields__}
    mesh = {k: v for k, v in changes.items() if k in MeshSettings.__dataclass_fields__}
    return Request(
        prompt="a red chair", generation=GenerationSettings(**generation), mesh=MeshSettings(**mesh)
    )


def test_the_defaults_validate():
    request().validate()


@pytest.mark.parametrize(
    ("field", "high"),
    [
        ("steps", settings.MAX_STEPS),
        ("seed", settings.MAX_SEED),
        ("batch", settings.MAX_BATCH),
        ("grid_size", settings.MAX_GRID_SIZE),
        ("query_batch", settings.MAX_QUERY_BATCH),
        ("target_faces", settings.MAX_TARGET_FACES),
        ("keep_components", settings.MAX_KEEP_COMPONENTS),
        ("smooth_iterations", settings.MAX_SMOOTH_ITERATIONS),
    ],
)
def test_each_count_is_bounded_by_its_named_constant(field, high):
    request(**{field: high}).validate()
    request(**{field: np.int64(high)}).validate()  # numpy integers are whole numbers too
    words = field.replace("_", " ").replace("iterations", "")
    for bad in (high + 1, 2.5, "3", True):
        with pytest.raises(ConfigError, match=words.split()[0]):
            request(**{field: bad}).validate()


def test_a_huge_smoothing_count_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"between 0 and {settings.MAX_SMOOTH_ITERATIONS}"):
        request(smooth_iterations=10_000_000).validate()
    assert time.perf_counter() - started < 1.0  # no work started, nothing to wait for


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 0.0},
        {"size": settings.MAX_SIZE * 10},
        {"size": 1e300},
        {"size": float("nan")},
        {"size": settings.MIN_SIZE / 10},
        {"guidance": float("inf")},
        {"guidance": settings.MAX_GUIDANCE + 1},
        {"sigma_max": settings.MAX_SIGMA * 2},
        {"sigma_min": 0.0},
        {"sigma_min": 200.0},
        {"seed": -1},
        {"steps": 0},
        {"grid_size": settings.MIN_GRID_SIZE - 1},
        {"query_batch": 0},
        {"device": "tpu"},
        {"device": "cuda:x"},
        {"dtype": "int8"},
        {"schedule": "ddim"},
    ],
)
def test_impossible_settings_are_refused_with_one_line(changes):
    with pytest.raises(ConfigError) as caught:
        request(**changes).validate()
    assert "\n" not in str(caught.value)


def test_sizes_and_devices_inside_the_bounds_pass():
    request(size=settings.MIN_SIZE).validate()
    request(size=settings.MAX_SIZE).validate()
    request(device="cuda:1").validate()  # spelling only; availability is the loader's
    assert settings.parse_device(" CUDA:1 ") == ("cuda", 1)


def test_choices_are_derived_from_the_sampler_registry():
    assert [(c.name, c.label, c.description) for c in choices.SCHEDULES] == [
        (s.name, s.label, s.description) for s in schedules.registered()
    ]
    assert settings.SCHEDULES == tuple(s.name for s in schedules.registered())
    assert settings.DEFAULT_SCHEDULE == schedules.registered()[0].name
    with pytest.raises(ConfigError, match="shap-e"):
        schedules.get("ddim")


def test_a_registered_sampler_reaches_validation_and_the_cli_without_torch():
    # Adding a sampler is its code plus one register() call: nothing else to edit.
    code = (
        "import sys\n"
        "from blender_img3d.core.shap_e import schedules as s\n"
        "s.register(s.Schedule('draft', 'Draft', 'a test sampler', s.reference_plan, s.heun))\n"
        "from blender_img3d.core import settings\n"
        "from blender_img3d.cli import main\n"
        "assert 'draft' in settings.SCHEDULES\n"
        "settings.Request(prompt='x', generation=settings.GenerationSettings("
        "schedule='draft')).validate()\n"
        "try:\n"
        "    main.main(['generate', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "draft" in completed.stdout
