"""Image preparation: background removal (alpha, flood, rembg, none) and framing on white."""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest
from PIL import Image, ImageDraw

from blender_img3d.core.errors import ConfigError, ImageInputError
from blender_img3d.core.images import prepare_image
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import image_corpus as corpus

SIZE = 224


def output_bbox(image: Image.Image, threshold: int = 40) -> tuple[int, int, int, int]:
    """End-exclusive bbox of the pixels that are visibly not white."""
    pixels = np.asarray(image).astype(int)
    ink = (255 - pixels).sum(axis=2) > threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def assert_centred_with_border(image: Image.Image, border: float, aspect: float) -> None:
    """The object's longer side fills 1 - 2 * border of the square, and it is centred."""
    x0, y0, x1, y1 = output_bbox(image)
    longer = (1.0 - 2.0 * border) * SIZE
    width, height = (longer, longer * aspect) if aspect <= 1 else (longer / aspect, longer)
    assert x1 - x0 == pytest.approx(width, abs=3)
    assert y1 - y0 == pytest.approx(height, abs=3)
    assert (x0 + x1) / 2 == pytest.approx(SIZE / 2, abs=2)
    assert (y0 + y1) / 2 == pytest.approx(SIZE / 2, abs=2)


def corners_are_white(image: Image.Image) -> bool:
    pixels = np.asarray(image)
    return all((pixels[y, x] >= 250).all() for y in (0, -1) for x in (0, -1))


# --- flood fill from the border ----------------------------------------------


def test_a_product_shot_on_noisy_grey_is_cut_out_centred_with_the_default_border():
    picture, box = corpus.object_on(background=(128, 128, 128), noise=6.0)
    prepared = prepare_image(corpus.encode(picture, "JPEG", quality=92))
    report = prepared.report
    assert report.method == "flood"
    assert report.bbox == pytest.approx(list(box), abs=2)
    assert report.background_color == pytest.approx([128, 128, 128], abs=4)
    assert report.mask_coverage == pytest.approx(50 * 70 / (160 * 120), abs=0.02)
    assert prepared.image.mode == "RGB" and prepared.image.size == (SIZE, SIZE)
    assert corners_are_white(prepared.image)
    x0, y0, x1, y1 = report.bbox  # JPEG's chroma blur widens the red edge a little
    assert_centred_with_border(prepared.image, 0.15, aspect=(y1 - y0) / (x1 - x0))


def test_the_border_setting_changes_how_much_of_the_square_the_object_fills():
    picture, _ = corpus.object_on()
    prepared = prepare_image(picture, ImageSettings(border=0.05))
    assert prepared.report.border == 0.05
    assert_centred_with_border(prepared.image, 0.05, aspect=70 / 50)
    no_border = prepare_image(picture, ImageSettings(border=0.0))
    assert output_bbox(no_border.image)[1] <= 1  # the tall object touches top and bottom


def test_a_gradient_background_with_vignette_is_removed():
    picture, box = corpus.object_on_gradient()
    prepared = prepare_image(picture)
    assert prepared.report.method == "flood"
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)
    assert corners_are_white(prepared.image)
    assert_centred_with_border(prepared.image, 0.15, aspect=80 / 60)


def test_an_object_touching_the_edge_is_still_found():
    picture, box = corpus.object_on(box=(0, 30, 60, 100))
    prepared = prepare_image(picture)
    assert prepared.report.method == "flood"
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)
    assert_centred_with_border(prepared.image, 0.15, aspect=70 / 60)


def test_no_grey_halo_is_left_around_the_object():
    picture, _ = corpus.object_on(background=(110, 110, 110))
    pixels = np.asarray(prepare_image(picture).image).astype(int)
    greyish = (np.ptp(pixels, axis=2) < 12) & (pixels.min(axis=2) < 230)
    assert not greyish.any()


def test_enclosed_background_such_as_a_ring_hole_becomes_white():
    picture = Image.new("RGB", (160, 160), (120, 120, 120))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((20, 20, 140, 140), fill=(30, 60, 200))
    draw.ellipse((55, 55, 105, 105), fill=(120, 120, 120))
    prepared = prepare_image(picture)
    assert prepared.report.method == "flood"
    assert (np.asarray(prepared.image)[112, 112] >= 250).all()  # the hole's centre


def test_small_specks_in_the_background_are_not_part_of_the_object():
    picture, box = corpus.object_on(size=(200, 150), box=(80, 40, 130, 110))
    picture.paste((0, 0, 0), (10, 10, 12, 12))  # dust
    prepared = prepare_image(picture)
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)


def test_thin_parts_attached_to_the_object_survive_cleaning():
    picture, _ = corpus.object_on(size=(400, 300), box=(150, 60, 250, 160))
    picture.paste(corpus.OBJECT_RED, (160, 160, 162, 260))  # a 2 px wide leg
    prepared = prepare_image(picture)
    assert prepared.report.bbox == pytest.approx([150, 60, 250, 260], abs=2)


def test_a_busy_background_is_kept_rather_than_guessed():
    noise = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    prepared = prepare_image(noise, bottom_up=False)
    assert prepared.report.method == "none"
    assert any("not plain" in note for note in prepared.report.notes)
    assert prepared.report.mask_coverage == 1.0


# --- alpha -------------------------------------------------------------------


def test_a_real_alpha_mask_is_used_and_composited_on_white():
    picture, box = corpus.ellipse_rgba()
    prepared = prepare_image(corpus.encode(picture, "PNG"))
    report = prepared.report
    assert report.method == "alpha"
    assert report.bbox == pytest.approx(list(box), abs=1)
    assert report.mask_coverage == pytest.approx(np.pi * 30 * 25 / (120 * 90), abs=0.02)
    assert corners_are_white(prepared.image)  # the transparent black did not show
    assert_centred_with_border(prepared.image, 0.15, aspect=50 / 60)


def test_opaque_alpha_is_ignored_and_the_background_removed_by_colour():
    picture, box = corpus.object_on()
    prepared = prepare_image(picture.convert("RGBA"))
    assert prepared.report.method == "flood"
    assert any("opaque" in note for note in prepared.report.notes)
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)


def test_use_alpha_off_flattens_onto_white_then_removes_by_colour():
    picture, box = corpus.ellipse_rgba()
    prepared = prepare_image(picture, ImageSettings(use_alpha=False))
    assert prepared.report.method == "flood"
    assert prepared.report.background_color == [255, 255, 255]
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)


# --- no removal --------------------------------------------------------------


def test_remove_background_off_keeps_the_picture_padded_to_a_square():
    picture, _ = corpus.object_on(background=(128, 128, 128))
    prepared = prepare_image(picture, ImageSettings(remove_background=False))
    pixels = np.asarray(prepared.image)
    assert prepared.report.method == "none"
    assert prepared.report.bbox == [0, 0, 160, 120]
    assert (pixels[112, 3] == 128).all()  # the grey background is still there
    assert (pixels[3, 112] >= 250).all()  # white bands pad 160x120 to a square
    assert (pixels[30, 112] < 250).any() and (pixels[25, 112] >= 250).all()


def test_remove_background_off_still_honours_a_real_alpha_mask():
    picture, _ = corpus.ellipse_rgba()
    prepared = prepare_image(picture, ImageSettings(remove_background=False))
    assert prepared.report.method == "alpha"


# --- rembg (optional) --------------------------------------------------------


def test_rembg_not_installed_falls_back_to_the_builtin_remover(monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)  # makes `import rembg` fail
    picture, box = corpus.object_on()
    prepared = prepare_image(picture, ImageSettings(allow_rembg=True))
    assert prepared.report.method == "flood"
    assert any("rembg not installed" in note for note in prepared.report.notes)
    assert prepared.report.bbox == pytest.approx(list(box), abs=2)


def fake_rembg(remove) -> types.ModuleType:
    module = types.ModuleType("rembg")
    module.remove = remove
    return module


def test_rembg_is_used_when_installed_and_allowed(monkeypatch):
    calls = []

    def remove(image):
        calls.append(image.size)
        cut = image.convert("RGBA")
        alpha = Image.new("L", image.size, 0)
        alpha.paste(255, (20, 20, 60, 50))
        cut.putalpha(alpha)
        return cut

    monkeypatch.setitem(sys.modules, "rembg", fake_rembg(remove))
    picture, _ = corpus.object_on()
    prepared = prepare_image(picture, ImageSettings(allow_rembg=True))
    assert calls == [(160, 120)]
    assert prepared.report.method == "rembg"
    assert prepared.report.bbox == [20, 20, 60, 50]
    not_allowed = prepare_image(picture, ImageSettings(allow_rembg=False))
    assert not_allowed.report.method == "flood" and len(calls) == 1


def test_a_failing_rembg_falls_back_with_a_note(monkeypatch):
    def remove(image):
        raise RuntimeError("no model u2net.onnx and downloads are off")

    monkeypatch.setitem(sys.modules, "rembg", fake_rembg(remove))
    prepared = prepare_image(corpus.object_on()[0], ImageSettings(allow_rembg=True))
    assert prepared.report.method == "flood"
    assert any("rembg failed" in note for note in prepared.report.notes)


# --- sizes, big pictures, options --------------------------------------------


def test_the_output_size_is_configurable():
    prepared = prepare_image(corpus.object_on()[0], size=64)
    assert prepared.image.size == (64, 64) and prepared.report.output_size == 64


def test_impossible_options_are_config_errors():
    picture = corpus.object_on()[0]
    with pytest.raises(ConfigError, match="border"):
        prepare_image(picture, ImageSettings(border=0.5))
    with pytest.raises(ConfigError, match="size"):
        prepare_image(picture, size=0)


def test_a_near_half_border_does_not_build_a_huge_canvas():
    picture, _ = corpus.object_on(size=(1600, 1200), box=(500, 300, 1000, 1000))
    started = time.perf_counter()
    prepared = prepare_image(picture, ImageSettings(border=0.49))
    assert time.perf_counter() - started < 3.0
    x0, y0, x1, y1 = output_bbox(prepared.image)
    assert y1 - y0 == pytest.approx(0.02 * SIZE, abs=2)


def test_a_huge_jpeg_is_decoded_at_reduced_scale_with_the_bbox_in_full_pixels():
    picture, box = corpus.object_on(size=(5000, 3750), box=(1500, 1000, 3000, 3000))
    data = corpus.encode(picture, "JPEG", quality=85)
    prepared = prepare_image(data)
    report = prepared.report
    assert any("reduced scale" in step for step in report.steps)
    assert report.original_size == [5000, 3750]
    assert report.bbox == pytest.approx(list(box), abs=8)
    assert_centred_with_border(prepared.image, 0.15, aspect=2000 / 1500)


def test_a_large_png_is_analysed_downscaled_and_reported_in_source_pixels():
    picture, box = corpus.object_on(size=(3000, 1000), box=(100, 200, 700, 900))
    prepared = prepare_image(corpus.encode(picture, "PNG"))
    assert any(step.startswith("analysed at 2048×683") for step in prepared.report.steps)
    assert prepared.report.bbox == pytest.approx(list(box), abs=3)


def test_a_picture_that_is_only_background_after_removal_is_an_error():
    # A faint 1-pixel line on white: not blank, but nothing survives cleaning.
    picture = Image.new("RGB", (200, 200), (255, 255, 255))
    picture.putpixel((100, 100), (250, 250, 250))
    with pytest.raises(ImageInputError, match="No object found"):
        prepare_image(picture)
