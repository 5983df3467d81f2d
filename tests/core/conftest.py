"""Session fixtures for core tests: tiny Shap-E model folders made in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import make_tiny_image_model, make_tiny_text_model


@pytest.fixture(scope="session")
def tiny_image_model_dir(tmp_path_factory) -> Path:
    """A tiny random ShapEImg2ImgPipeline saved in diffusers' layout (read-only by convention)."""
    return make_tiny_image_model(tmp_path_factory.mktemp("tiny-shap-e-img2img"))


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory) -> Path:
    """A tiny random ShapEPipeline saved in diffusers' layout (read-only by convention)."""
    return make_tiny_text_model(tmp_path_factory.mktemp("tiny-shap-e"))
