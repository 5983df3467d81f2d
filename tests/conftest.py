"""Test-session set-up shared by core and Blender tests.

Blender's user folders (preferences, extensions) are pointed at a throw-away
directory *before* anything can import bpy, so tests never touch the real
user's Blender and always start from a clean extension repository.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

_BLENDER_HOME = Path(tempfile.mkdtemp(prefix="img3d-blender-user-"))
os.environ["BLENDER_USER_RESOURCES"] = str(_BLENDER_HOME)
atexit.register(shutil.rmtree, _BLENDER_HOME, ignore_errors=True)
# Never reach a model hub from tests: the loaders must work offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_addoption(parser):
    parser.addoption(
        "--nightly",
        action="store_true",
        help="long runs: the reliability fuzzers try >= 10,000 cases each (see RELIABILITY.md)",
    )


def pytest_collection_modifyitems(config, items):
    matrix_asked = "blender_matrix" in (config.getoption("-m") or "")
    corpus_asked = "corpus" in (config.getoption("-m") or "")
    for item in items:
        if "tests/blender/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.blender)
        if "blender_matrix" in item.keywords and not matrix_asked:
            item.add_marker(
                pytest.mark.skip(
                    reason="opt-in: 'pytest -m blender_matrix' runs every Blender line in a bare "
                    "venv (~6 GB cached outside the clone; .ci/run runs it)"
                )
            )
        if "corpus" in item.keywords and not corpus_asked:
            item.add_marker(
                pytest.mark.skip(reason="opt-in: 'pytest -m corpus' runs every third-party mesh")
            )


@pytest.fixture(scope="session")
def blender_user_home() -> Path:
    """The temporary folder Blender uses for user preferences and extensions."""
    return _BLENDER_HOME


@pytest.fixture(scope="session")
def tiny_image_model_dir(tmp_path_factory) -> Path:
    """A tiny random ShapEImg2ImgPipeline saved in diffusers' layout (read-only by convention)."""
    from tests.fixtures.tiny_models import make_tiny_image_model

    return make_tiny_image_model(tmp_path_factory.mktemp("tiny-shap-e-img2img"))


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory) -> Path:
    """A tiny random ShapEPipeline saved in diffusers' layout (read-only by convention)."""
    from tests.fixtures.tiny_models import make_tiny_text_model

    return make_tiny_text_model(tmp_path_factory.mktemp("tiny-shap-e"))


@pytest.fixture(scope="session")
def surface_image_model_dir(tmp_path_factory) -> Path:
    """Like ``tiny_image_model_dir`` but decoding finds a surface: for end-to-end tests."""
    from tests.fixtures.tiny_models import make_tiny_image_model

    return make_tiny_image_model(tmp_path_factory.mktemp("surface-img2img"), surface=True)


@pytest.fixture(scope="session")
def surface_text_model_dir(tmp_path_factory) -> Path:
    """Like ``tiny_text_model_dir`` but decoding finds a surface: for end-to-end tests."""
    from tests.fixtures.tiny_models import make_tiny_text_model

    return make_tiny_text_model(tmp_path_factory.mktemp("surface-text"), surface=True)


@pytest.fixture(scope="session")
def example_image() -> Path:
    return REPO_ROOT / "examples" / "stool.png"
