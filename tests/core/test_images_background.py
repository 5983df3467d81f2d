"""Image preparation: background removal (alpha, learned, flood, saliency, none) and framing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from blender_img3d.core.errors import ConfigError, ImageInputError, ModelNotFoundError
from blender_img3d.core.images import prepare_image
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import image_corpus as corpus
from tests.fixtures.background_model import build_model, install_in_cache, red_is_object

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


# --- the background choice and the learned remover ---------------------------


def test_keep_keeps_the_picture_and_says_so():
    picture, _ = corpus.object_on(background=(128, 128, 128))
    prepared = prepare_image(picture, ImageSettings(background="keep"))
    assert prepared.report.method == "none"
    assert prepared.report.bbox == [0, 0, 160, 120]
    assert prepared.report.background == "keep"
    assert "kept the background" in prepared.report.warning


def test_an_unknown_background_choice_is_a_config_error():
    with pytest.raises(ConfigError, match="background must be one of auto, learned"):
        prepare_image(corpus.object_on()[0], ImageSettings(background="magic"))


def test_auto_uses_the_learned_remover_when_it_is_in_the_cache(tmp_path):
    install_in_cache(tmp_path)
    picture, box = corpus.object_on(box=(30, 20, 90, 100))
    prepared = prepare_image(picture, ImageSettings(), cache_dir=tmp_path)
    assert prepared.report.method == "learned"
    assert prepared.report.bbox == pytest.approx(list(box), abs=3)
    assert prepared.report.confidence >= 0.7 and prepared.report.warning is None


def test_auto_without_the_learned_remover_runs_the_offline_chain(tmp_path):
    prepared = prepare_image(corpus.object_on()[0], ImageSettings(), cache_dir=tmp_path)
    assert prepared.report.method == "flood"
    assert prepared.report.confidence >= 0.7


def test_classic_ignores_a_downloaded_learned_remover(tmp_path):
    install_in_cache(tmp_path)
    prepared = prepare_image(
        corpus.object_on()[0], ImageSettings(background="classic"), cache_dir=tmp_path
    )
    assert prepared.report.method == "flood"


def test_learned_without_the_model_and_without_consent_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="--allow-download"):
        prepare_image(
            corpus.object_on()[0], ImageSettings(background="learned"), cache_dir=tmp_path
        )


def test_learned_downloads_only_with_consent(tmp_path, monkeypatch):
    from blender_img3d.core.system import model_store

    fetched = []

    def download(cache_dir, **_options):
        fetched.append(cache_dir)
        return install_in_cache(Path(cache_dir))

    monkeypatch.setattr(model_store, "download_background_model", download)
    picture = corpus.object_on()[0]
    prepared = prepare_image(
        picture, ImageSettings(background="learned"), cache_dir=tmp_path, allow_download=True
    )
    assert prepared.report.method == "learned" and fetched == [tmp_path]
    # auto never downloads: the model is used once it is there.
    prepare_image(picture, ImageSettings(), cache_dir=tmp_path / "empty", allow_download=True)
    assert fetched == [tmp_path]


@pytest.mark.parametrize("side", [64, None])
@pytest.mark.parametrize("probability", [False, True])
def test_the_learned_remover_reads_fixed_or_open_sizes_and_logits_or_probabilities(
    tmp_path, side, probability
):
    model = red_is_object(tmp_path / "m.onnx", side=side, probability=probability)
    picture, box = corpus.object_on(size=(200, 90), box=(120, 10, 180, 70))
    prepared = prepare_image(picture, ImageSettings(background="learned"), learned_model=model)
    assert prepared.report.method == "learned"
    assert prepared.report.bbox == pytest.approx(list(box), abs=4)


def test_a_learned_remover_that_finds_nothing_keeps_the_picture_and_says_so(tmp_path):
    # A bias of -20 makes every pixel background.
    model = build_model(tmp_path / "m.onnx", weights=np.zeros(3), bias=-20.0)
    prepared = prepare_image(
        corpus.object_on()[0], ImageSettings(background="learned"), learned_model=model
    )
    assert prepared.report.method == "none"
    assert "learned remover found no clear object" in prepared.report.warning


def test_a_random_learned_model_runs_end_to_end(tmp_path):
    model = build_model(tmp_path / "m.onnx", side=None, seed=3)
    picture = Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB"
    )
    prepared = prepare_image(picture, ImageSettings(background="learned"), learned_model=model)
    assert prepared.image.size == (SIZE, SIZE)
    assert prepared.report.method in {"learned", "none"}
    assert 0.0 <= prepared.report.confidence <= 1.0


def test_a_broken_model_file_is_a_clear_error(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelNotFoundError, match="download it again"):
        prepare_image(
            corpus.object_on()[0], ImageSettings(background="learned"), learned_model=model
        )


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


# --- framing from the mask, and the flood's border --------------------------------


def test_framing_ignores_debris_far_from_the_object():
    from blender_img3d.core.images.framing import subject_bbox

    mask = np.zeros((200, 300), bool)
    mask[60:140, 100:180] = True  # the object
    mask[5:9, 280:284] = True  # a speck the remover let through, in a corner
    mask[100:130, 185:200] = True  # a small part touching the object's reach: kept
    assert subject_bbox(mask) == (100, 60, 200, 140)


def test_a_doubtful_cut_frames_the_whole_picture_not_a_blob(monkeypatch):
    from blender_img3d.core.images import background, confidence, saliency

    def unsure(rgb8):
        mask = np.zeros(rgb8.shape[:2], bool)
        mask[10:20, 10:20] = True
        scores = confidence.Scores(dominance=0.2)
        return mask, mask.astype(np.float32), scores

    monkeypatch.setattr(saliency, "saliency_cut", unsure)
    busy = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB"
    )
    prepared = prepare_image(busy, ImageSettings(background="classic"))
    assert prepared.report.method == "none" and prepared.report.bbox == [0, 0, 120, 90]
    assert "weak dominance" in prepared.report.warning
    assert background.effective_background(ImageSettings(remove_background=False)) == "keep"


def test_the_border_is_smoothed_exactly_as_the_whole_picture_would_be():
    from scipy import ndimage

    from blender_img3d.core.images.background import _border_ring, _smoothed_border

    for shape in [(301, 457, 3), (20, 9, 3)]:
        rgb = np.random.default_rng(0).random(shape).astype(np.float32)
        whole = ndimage.gaussian_filter(rgb, sigma=(1.0, 1.0, 0.0))
        ring = _border_ring(*shape[:2])
        border = np.zeros(shape[:2], bool)
        border[:ring] = border[-ring:] = True
        border[:, :ring] = border[:, -ring:] = True
        np.testing.assert_allclose(_smoothed_border(rgb)[border], whole[border], atol=1e-6)


def test_a_batch_manifest_chooses_the_background_per_item_and_refuses_unknown_ones(tmp_path):
    from blender_img3d.core import settings as defaults
    from blender_img3d.core.farm.manifest import ManifestError, read_manifest
    from blender_img3d.core.farm.plan import plan_items

    corpus.object_on()[0].save(tmp_path / "a.png")
    manifest = tmp_path / "items.csv"
    manifest.write_text("image,name,background\na.png,one,keep\na.png,two,\n", encoding="utf-8")
    base = defaults.Request(image_settings=ImageSettings(background="classic"))
    items = plan_items(read_manifest(manifest), base, tmp_path / "out", ["glb"], manifest)
    assert [item.request.image_settings.background for item in items] == ["keep", "classic"]
    manifest.write_text("image,background\na.png,magic\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="line 2: background must be one of"):
        plan_items(read_manifest(manifest), base, tmp_path / "out", ["glb"], manifest)


def test_the_servers_settings_carry_the_background_choice_and_old_clients_still_parse():
    from blender_img3d.core import settings as defaults
    from blender_img3d.core.server import protocol

    request, _ = protocol.request_from_settings({"background": "learned"}, prompt="x")
    assert request.image_settings.background == "learned"
    with pytest.raises(ConfigError, match="'background' must be text"):
        protocol.request_from_settings({"background": 3}, prompt="x")
    request, _ = protocol.request_from_settings({"background": "magic"}, prompt="x")
    with pytest.raises(ConfigError, match="background must be one of"):
        request.validate()
    # A saved request from before the choice (with allow_rembg) still loads.
    old = defaults.Request(prompt="x").to_dict()
    old["image_settings"]["allow_rembg"] = True
    del old["image_settings"]["background"]
    assert defaults.Request.from_dict(old).image_settings.background == "auto"


def test_a_cut_between_the_gates_is_used_and_called_doubtful(monkeypatch):
    from blender_img3d.core.images import confidence, saliency

    def middling(rgb8):
        mask = np.zeros(rgb8.shape[:2], bool)
        mask[20:70, 30:90] = True
        return mask, mask.astype(np.float32), confidence.Scores(separation=0.6)

    monkeypatch.setattr(saliency, "saliency_cut", middling)
    busy = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB"
    )
    report = prepare_image(busy, ImageSettings(background="classic")).report
    assert report.method == "saliency" and report.bbox == [30, 20, 90, 70]
    assert report.confidence == pytest.approx(0.6)
    assert report.warning.startswith(
        "the cut-out is doubtful (saliency, confidence 0.60, weak separation)"
    )
