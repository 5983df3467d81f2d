"""Images: the saved model input is what its name says; the corpus of odd images is
covered by tests/core/test_images*.py, the byte fuzzer lives in test_fuzz.py."""

from __future__ import annotations

import pytest
from PIL import Image

from blender_img3d.core.errors import ExportError
from blender_img3d.core.images import prepare_image, save_model_input
from blender_img3d.core.images.preparation import MODEL_INPUT_FORMATS
from tests.fixtures import image_corpus as corpus


@pytest.mark.parametrize("suffix", sorted(MODEL_INPUT_FORMATS))
def test_the_saved_input_is_encoded_as_its_suffix_says(tmp_path, suffix):
    prepared = prepare_image(corpus.object_on()[0])
    path = save_model_input(prepared, tmp_path / f"seen{suffix}")
    with Image.open(path) as saved:
        assert saved.format == MODEL_INPUT_FORMATS[suffix]
        assert saved.size == prepared.image.size
    assert [p.name for p in tmp_path.iterdir()] == [f"seen{suffix}"]


@pytest.mark.parametrize("name", ["seen.gif", "seen", "seen.glb"])
def test_other_suffixes_are_refused_and_nothing_is_written(tmp_path, name):
    prepared = prepare_image(corpus.object_on()[0])
    with pytest.raises(ExportError, match="use an image suffix"):
        save_model_input(prepared, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
