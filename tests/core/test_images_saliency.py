"""The offline remover for busy photos, piece by piece: saliency, GrabCut's outline, the cues.

The photo corpus (test_images_photos.py) judges the whole chain on real photos;
these pin each piece on pictures whose answer is known by construction.
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_img3d.core.errors import DependencyError
from blender_img3d.core.images import background, confidence, grabcut, saliency


def _busy_with_object(height=120, width=160, seed=0):
    """Green-brown foliage noise touching every edge, a red-and-white object in the middle."""
    rng = np.random.default_rng(seed)
    picture = np.empty((height, width, 3), np.uint8)
    leaves = rng.integers(0, 2, (height, width))
    picture[leaves == 0] = (60, 120, 40)
    picture[leaves == 1] = (110, 90, 50)
    picture = np.clip(picture + rng.integers(-25, 25, picture.shape), 0, 255).astype(np.uint8)
    box = (slice(35, 95), slice(55, 115))
    picture[box] = (200, 30, 30)
    picture[50:80, 70:100] = (240, 240, 230)
    return picture, box


def test_the_saliency_of_an_object_off_the_frame_is_high_and_of_the_background_low():
    picture, box = _busy_with_object()
    values = saliency.boundary_saliency(picture)
    assert values.shape == picture.shape[:2] and values.dtype == np.float32
    assert 0.0 <= values.min() and values.max() <= 1.0
    inside = np.zeros(values.shape, bool)
    inside[box] = True
    assert values[inside].mean() > 0.6 and values[~inside].mean() < 0.2


def test_the_cut_of_a_busy_photo_finds_the_object_and_trusts_it():
    picture, box = _busy_with_object(240, 320)
    # Twice the analysis size: the cut is made small and brought back to full size.
    big = np.repeat(np.repeat(picture, 2, axis=0), 2, axis=1)
    mask, alpha, scores = saliency.saliency_cut(big)
    assert mask.shape == big.shape[:2] and alpha.dtype == np.float32
    rows, cols = np.nonzero(mask)
    found = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    expected = (2 * box[1].start, 2 * box[0].start, 2 * box[1].stop, 2 * box[0].stop)
    assert np.allclose(found, expected, atol=6), found
    assert scores.confidence > 0.9 and scores.details["frame_share"] == 0.0


def test_a_texture_without_an_object_is_not_trusted():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    _, _, scores = saliency.saliency_cut(noise)
    assert scores.confidence < 0.55


def test_otsu_splits_two_groups_between_them():
    values = np.concatenate([np.full(300, 0.2), np.full(100, 0.7)])
    assert 0.2 <= saliency.otsu_threshold(values) <= 0.7
    assert np.isfinite(saliency.otsu_threshold(np.full(50, 0.4)))


def test_grabcut_makes_a_rough_mask_follow_the_object():
    picture, box = _busy_with_object()
    # A rough saliency: a blob bigger than the object, surest in its middle.
    rough = np.zeros(picture.shape[:2], np.float32)
    rough[25:105, 45:125] = 0.6
    rough[45:85, 65:105] = 0.9
    mask = grabcut.refine(picture, rough, 0.5)
    inside = np.zeros(mask.shape, bool)
    inside[box] = True
    assert (mask & inside).sum() / inside.sum() > 0.95
    assert (mask & ~inside).sum() < 0.05 * inside.sum()


def test_grabcut_that_fails_leaves_the_saliencys_mask(monkeypatch):
    cv2 = pytest.importorskip("cv2")

    def broken(*args, **kwargs):
        raise cv2.error("no mixture")

    monkeypatch.setattr(cv2, "grabCut", broken)
    rough = np.zeros((40, 50), np.float32)
    rough[10:30, 10:40] = 0.9
    picture = np.zeros((40, 50, 3), np.uint8)
    np.testing.assert_array_equal(grabcut.refine(picture, rough, 0.5), rough >= 0.5)


def test_without_opencv_the_offline_remover_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    rough = np.full((20, 20), 0.9, np.float32)
    with pytest.raises(DependencyError, match="opencv-python-headless.*--background keep"):
        grabcut.refine(np.zeros((20, 20, 3), np.uint8), rough, 0.5)


def test_the_frame_cue_tells_a_cut_running_along_the_border():
    mask = np.zeros((100, 100), bool)
    mask[30:70, 30:70] = True  # off the frame
    assert confidence.frame_share(mask) == 0.0
    mask[90:, :] = True  # the bottom edge
    # The bottom row, and 9 pixels of each side column: 118 of the 396 border pixels.
    assert confidence.frame_share(mask) == pytest.approx(118 / 396)
    picture = np.zeros((100, 100, 3), np.uint8)
    picture[mask] = 255
    scores = confidence.cut_confidence(picture, mask, outline=False, frame=True)
    assert scores.frame == 0.0 and scores.weakest() == "frame"


def test_a_cue_not_judged_stays_one_and_the_confidence_is_the_weakest():
    scores = confidence.Scores(separation=0.4, coverage=0.7)
    assert scores.frame == 1.0 and scores.edges == 1.0
    assert scores.confidence == pytest.approx(0.4) and scores.weakest() == "separation"


def test_a_busy_photos_cut_is_doubtful_at_any_confidence_a_plain_ones_is_not():
    line = background._doubt("saliency", 0.95, "separation")
    assert line.startswith("the cut-out is doubtful (saliency, confidence 0.95, busy photos")
    assert "--save-input" in line and "--background learned" in line
    assert background._doubt("flood", 0.95, "dominance") is None
    assert "weak dominance" in background._doubt("flood", 0.6, "dominance")
