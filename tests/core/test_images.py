"""Image input: decoding, validation, limits, modes, orientation, pixel arrays, saving."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_img3d.core.errors import ExportError, ImageInputError
from blender_img3d.core.images import (
    load_image,
    prepare_image,
    save_model_input,
)
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import image_corpus as corpus

REPO_ROOT = Path(__file__).resolve().parents[2]


def rgb_at(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return image.convert("RGB").getpixel((x, y))


def close(colour, expected, tolerance=12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(colour, expected))


# --- sources -----------------------------------------------------------------


def test_path_bytes_and_pil_sources_give_the_same_pixels(tmp_path):
    picture, _ = corpus.object_on()
    path = tmp_path / "mug.png"
    path.write_bytes(corpus.encode(picture, "PNG"))
    from_path = load_image(path)
    from_str = load_image(str(path))
    from_bytes = load_image(path.read_bytes())
    from_pil = load_image(picture)
    for image in (from_path, from_str, from_bytes, from_pil):
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), np.asarray(picture))


def test_an_unknown_source_type_is_refused_with_the_accepted_kinds():
    with pytest.raises(ImageInputError, match="file path, encoded image bytes, a PIL image"):
        load_image(12345)


def test_a_missing_file_and_a_folder_are_refused_clearly(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)


def test_importing_the_images_package_stays_cheap():
    code = (
        "import sys, blender_img3d.core.images\n"
        "heavy = ('scipy', 'skimage', 'torch', 'cv2', 'onnxruntime')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


# --- formats and damage ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "TGA", "GIF"])
def test_every_allowed_format_decodes_to_rgb(fmt):
    picture, (x0, y0, x1, y1) = corpus.object_on(background=(230, 230, 230))
    image = load_image(corpus.encode(picture, fmt))
    assert image.mode in ("RGB", "RGBA")
    assert image.size == picture.size
    assert close(rgb_at(image, (x0 + x1) // 2, (y0 + y1) // 2), corpus.OBJECT_RED, 20)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "PDF document"),
        (corpus.encode(Image.new("RGB", (16, 16), "red"), "ICO"), "ICO icon"),
        (b"v/1\x01\x02\x00\x00\x00channels\x00" + bytes(64), "OpenEXR"),
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + bytes(64), "Radiance HDR"),
    ],
)
def test_unsupported_formats_are_named_in_the_error(data, named):
    with pytest.raises(ImageInputError, match=named):
        load_image(data)


def test_hdr_and_exr_errors_point_to_blender_pixels():
    with pytest.raises(ImageInputError, match="Blender"):
        load_image(b"v/1\x01" + bytes(64))


def test_a_text_file_is_not_a_recognised_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, this is not a picture\n" * 10)
    with pytest.raises(ImageInputError, match="not a recognised image"):
        load_image(path)


def test_random_bytes_are_refused():
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageInputError):
        load_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_a_truncated_file_is_reported_as_truncated_or_corrupt(fmt):
    picture, _ = corpus.object_on(size=(200, 150), noise=10.0)
    data = corpus.encode(picture, fmt)
    with pytest.raises(ImageInputError, match="truncated or corrupt|not a recognised"):
        load_image(data[: len(data) // 2])


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        load_image(path)


# --- limits ------------------------------------------------------------------


def test_a_file_over_the_byte_limit_is_refused_before_decoding(tmp_path):
    picture, _ = corpus.object_on(noise=20.0)
    path = tmp_path / "big.png"
    path.write_bytes(corpus.encode(picture, "PNG"))
    settings = ImageSettings(max_file_bytes=2048)
    with pytest.raises(ImageInputError, match=r"over the 2 KB limit \(max_file_bytes\)"):
        load_image(path, settings)
    with pytest.raises(ImageInputError, match="max_file_bytes"):
        load_image(path.read_bytes(), settings)


def test_a_decompression_bomb_header_is_refused_fast_without_allocating():
    data = corpus.png_claiming(100_000, 100_000)
    started = time.perf_counter()
    with pytest.raises(ImageInputError, match="decompression bomb"):
        load_image(data)
    assert time.perf_counter() - started < 1.0


def test_the_pixel_limit_is_checked_from_the_header_and_named():
    # 9000 x 9000 = 81 MP: under Pillow's own bomb limits, over ours.
    data = corpus.png_claiming(9000, 9000)
    started = time.perf_counter()
    with pytest.raises(ImageInputError, match=r"9000×9000 pixels \(81 MP\), over the 64 MP"):
        load_image(data)
    assert time.perf_counter() - started < 1.0


def test_a_small_pixel_limit_applies_to_every_kind_of_source():
    settings = ImageSettings(max_pixels=100)
    picture = Image.new("RGB", (20, 20), "red")
    for source in (corpus.encode(picture, "PNG"), picture, np.zeros((20, 20, 4), np.float32)):
        with pytest.raises(ImageInputError, match="max_pixels"):
            load_image(source, settings)


def test_pillows_global_pixel_limit_is_left_untouched():
    before = Image.MAX_IMAGE_PIXELS
    for data in (corpus.png_claiming(9000, 9000), corpus.png_claiming(100_000, 100_000)):
        with pytest.raises(ImageInputError):
            load_image(data, ImageSettings(max_pixels=10**12))
    picture, _ = corpus.object_on()
    prepare_image(corpus.encode(picture, "PNG"), ImageSettings(max_pixels=100_000))
    assert Image.MAX_IMAGE_PIXELS == before


# --- blank -------------------------------------------------------------------


def test_an_all_white_image_is_refused_as_blank():
    with pytest.raises(ImageInputError, match="blank"):
        prepare_image(corpus.encode(Image.new("RGB", (64, 64), corpus.WHITE), "PNG"))


def test_a_fully_transparent_image_is_refused():
    with pytest.raises(ImageInputError, match="fully transparent"):
        load_image(Image.new("RGBA", (32, 32), (255, 0, 0, 0)))


# --- modes -------------------------------------------------------------------


def test_one_bit_and_grey_images_become_rgb():
    one_bit = Image.new("1", (16, 16), 0)
    one_bit.paste(1, (0, 0, 8, 16))
    image = load_image(one_bit)
    assert image.mode == "RGB"
    assert rgb_at(image, 2, 2) == (255, 255, 255) and rgb_at(image, 12, 2) == (0, 0, 0)
    grey = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1)), "L")
    assert rgb_at(load_image(grey), 5, 0) == (80, 80, 80)


def test_grey_with_alpha_keeps_its_alpha():
    la = Image.new("LA", (10, 10), (0, 0))
    la.paste((90, 255), (2, 2, 8, 8))
    image = load_image(la)
    assert image.mode == "RGBA"
    assert image.getpixel((5, 5)) == (90, 90, 90, 255)
    assert image.getpixel((0, 0))[3] == 0


def test_a_palette_with_transparency_becomes_rgba_and_cuts_out_by_alpha():
    data = corpus.encode(corpus.palette_with_transparency(), "PNG")
    image = load_image(data)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0
    assert image.getpixel((40, 30)) == (*corpus.OBJECT_RED, 255)
    prepared = prepare_image(data)
    assert prepared.report.method == "alpha"
    assert prepared.report.bbox == [20, 15, 60, 45]
    assert rgb_at(prepared.image, 2, 2) == (255, 255, 255)  # green background gone


def test_a_cmyk_jpeg_comes_out_in_the_right_colours():
    picture, (x0, y0, x1, y1) = corpus.object_on(background=(255, 255, 255))
    data = corpus.encode(picture.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = load_image(data)
    assert image.mode == "RGB"
    assert close(rgb_at(image, (x0 + x1) // 2, (y0 + y1) // 2), corpus.OBJECT_RED, 25)
    assert close(rgb_at(image, 2, 2), corpus.WHITE, 10)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_is_scaled_by_its_range_not_clipped(fmt):
    values = corpus.sixteen_bit_ramp()
    data = corpus.encode(Image.fromarray(values), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    image = np.asarray(load_image(data).convert("L")).astype(int)
    expected = np.round(values / 257.0).astype(int)
    assert np.abs(image - expected).max() <= 1
    assert image[0, 0] == 0 and image[0, 31] not in (0, 255)  # mid-ramp stays mid-grey
    assert image[20, 50] == 16  # 4096 / 257, where clipping would give 255


def test_thirty_two_bit_integer_and_float_images_use_their_value_range():
    ints = Image.fromarray(np.array([[0, 1000, 100_000]], np.int32), "I")
    assert [rgb_at(load_image(ints), x, 0)[0] for x in range(3)] == [0, 3, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert [rgb_at(load_image(unit), x, 0)[0] for x in range(3)] == [0, 128, 255]
    wide = Image.fromarray(np.array([[-2.0, 0.0, 2.0]], np.float32), "F")
    assert [rgb_at(load_image(wide), x, 0)[0] for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(fmt):
    data = corpus.animated(fmt)
    image = load_image(data)
    assert close(rgb_at(image, 15, 30), (255, 0, 0), 30)  # frame 0's red square
    assert close(rgb_at(image, 62, 30), corpus.WHITE, 30)  # not frame 1's blue one
    prepared = prepare_image(data)
    assert "animated: used the first frame" in prepared.report.steps
    assert prepared.report.bbox[2] <= 40  # the object found is the left (red) one


# --- EXIF orientation --------------------------------------------------------

# Where the stored top-left (red) and top-right (blue) markers end up on screen.
_CORNERS_AFTER_ORIENTATION = {
    1: ("TL", "TR"),
    2: ("TR", "TL"),
    3: ("BR", "BL"),
    4: ("BL", "BR"),
    5: ("TL", "BL"),
    6: ("TR", "BR"),
    7: ("BR", "TR"),
    8: ("BL", "TL"),
}


def corner_colour(image: Image.Image, corner: str) -> tuple[int, ...]:
    x = 3 if corner[1] == "L" else image.width - 4
    y = 3 if corner[0] == "T" else image.height - 4
    return rgb_at(image, x, y)


@pytest.mark.parametrize("orientation", sorted(_CORNERS_AFTER_ORIENTATION))
def test_exif_orientation_puts_the_object_where_the_tag_says(orientation):
    stored = corpus.corner_markers((60, 40))
    image = load_image(corpus.with_exif_orientation(stored, orientation))
    expected_size = (40, 60) if orientation >= 5 else (60, 40)
    assert image.size == expected_size
    red_corner, blue_corner = _CORNERS_AFTER_ORIENTATION[orientation]
    assert close(corner_colour(image, red_corner), (255, 0, 0), 40)
    assert close(corner_colour(image, blue_corner), (0, 0, 255), 40)


def test_the_report_gives_the_bbox_in_upright_source_pixels():
    stored = Image.new("RGB", (90, 60), corpus.WHITE)
    stored.paste((0, 0, 0), (0, 0, 20, 10))  # stored top-left
    prepared = prepare_image(corpus.with_exif_orientation(stored, 6, fmt="PNG"))
    assert prepared.report.original_size == [60, 90]
    x0, y0, x1, y1 = prepared.report.bbox
    assert (x0, y0) == pytest.approx((50, 0), abs=1) and (x1, y1) == pytest.approx((60, 20), abs=1)


def test_an_embedded_icc_profile_is_applied_and_a_broken_one_ignored():
    from PIL import ImageCms

    picture, (x0, y0, x1, y1) = corpus.object_on(background=(230, 230, 230))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = load_image(corpus.encode(picture, "PNG", icc_profile=srgb))
    assert np.array_equal(np.asarray(tagged), np.asarray(picture))  # sRGB → sRGB is identity
    cmyk = load_image(corpus.encode(picture.convert("CMYK"), "JPEG", icc_profile=srgb))
    assert close(rgb_at(cmyk, (x0 + x1) // 2, (y0 + y1) // 2), corpus.OBJECT_RED, 25)
    broken = prepare_image(corpus.encode(picture, "PNG", icc_profile=b"not a profile" * 20))
    assert any("unusable ICC profile" in step for step in broken.report.steps)
    assert broken.report.method == "flood"


# --- pixel arrays (Blender images) -------------------------------------------


def blender_pixels(linear_value: float) -> np.ndarray:
    """8 x 6 RGBA float pixels, bottom-up: the bottom row (stored first) is red."""
    pixels = np.full((6, 8, 4), linear_value, np.float32)
    pixels[..., 3] = 1.0
    pixels[0] = (1.0, 0.0, 0.0, 1.0)
    return pixels


def test_bottom_up_pixels_are_flipped_so_the_first_stored_row_is_the_bottom():
    image = load_image(blender_pixels(0.5))
    assert image.size == (8, 6)
    assert image.getpixel((0, 5))[:3] == (255, 0, 0)
    assert image.getpixel((0, 0))[:3] != (255, 0, 0)
    top_down = load_image(blender_pixels(0.5), bottom_up=False)
    assert top_down.getpixel((0, 0))[:3] == (255, 0, 0)


def test_flat_pixels_need_and_use_width_and_height():
    pixels = blender_pixels(0.5)
    flat = pixels.ravel()
    image = load_image(flat, width=8, height=6)
    assert np.array_equal(np.asarray(image), np.asarray(load_image(pixels)))
    with pytest.raises(ImageInputError, match="needs width and height"):
        load_image(flat)
    with pytest.raises(ImageInputError, match="does not fit 7×6"):
        load_image(flat, width=7, height=6)


def test_linear_pixels_get_the_srgb_transfer_curve_and_srgb_pixels_do_not():
    linear = load_image(blender_pixels(0.2), linear=True)
    srgb = load_image(blender_pixels(0.2), linear=False)
    # sRGB(0.2) = 1.055 * 0.2 ** (1 / 2.4) - 0.055 = 0.4845 -> 124
    assert linear.getpixel((0, 0))[:3] == (124, 124, 124)
    assert srgb.getpixel((0, 0))[:3] == (51, 51, 51)
    assert linear.getpixel((0, 0))[3] == 255  # alpha is never curved
    dark = load_image(blender_pixels(0.002), linear=True)
    assert dark.getpixel((0, 0))[0] == round(0.002 * 12.92 * 255)  # the linear toe


def test_hdr_values_and_nans_in_pixels_are_clipped_not_fatal():
    pixels = blender_pixels(0.5)
    pixels[3, 3] = (7.5, np.nan, -1.0, 1.0)
    image = load_image(pixels, linear=True)
    assert image.getpixel((3, 2))[:3] == (255, 0, 0)


def test_rgb_and_integer_pixel_arrays_are_accepted():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[-1] = (0, 255, 0)
    image = load_image(rgb)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (0, 255, 0)


def test_bad_pixel_arrays_are_refused_with_the_shapes_that_work():
    with pytest.raises(ImageInputError, match=r"\(H, W, 3\|4\)"):
        load_image(np.zeros((4, 4, 5), np.float32))
    with pytest.raises(ImageInputError, match="float, uint8 or uint16"):
        load_image(np.zeros((4, 4, 4), np.complex64))
    with pytest.raises(ImageInputError, match="positive integers"):
        load_image(np.zeros(64, np.float32), width=-4, height=4)


def test_pixels_prepare_end_to_end_with_the_object_upright():
    pixels = np.ones((64, 64, 4), np.float32)
    pixels[40:60, 10:30, :3] = (0.8, 0.05, 0.05)  # rows 40..60 from the bottom = near the top
    prepared = prepare_image(pixels, linear=True)
    assert prepared.report.format == "pixels"
    x0, y0, x1, y1 = prepared.report.bbox
    assert (x0, y0, x1, y1) == pytest.approx((10, 4, 30, 24), abs=1)


# --- saving the model input --------------------------------------------------


def test_save_model_input_writes_exactly_the_prepared_png(tmp_path):
    picture, _ = corpus.object_on()
    prepared = prepare_image(picture)
    target = tmp_path / "input.png"
    assert save_model_input(prepared, target) == target
    with Image.open(target) as saved:
        assert saved.format == "PNG" and saved.size == (224, 224)
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(prepared.image))
    assert [p.name for p in tmp_path.iterdir()] == ["input.png"]  # no temp file left


def test_save_model_input_replaces_an_old_file_and_fails_cleanly(tmp_path):
    prepared = prepare_image(corpus.object_on()[0])
    target = tmp_path / "input.png"
    target.write_bytes(b"old")
    save_model_input(prepared, target)
    assert target.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ExportError, match="does not exist"):
        save_model_input(prepared, tmp_path / "missing" / "input.png")
    with pytest.raises(ExportError, match="is a folder"):
        save_model_input(prepared, tmp_path)
    with pytest.raises(ImageInputError, match="Nothing to save"):
        save_model_input("not an image", tmp_path / "x.png")


def test_a_failed_save_leaves_neither_a_partial_file_nor_a_temp_file(tmp_path, monkeypatch):
    prepared = prepare_image(corpus.object_on()[0])
    target = tmp_path / "input.png"
    target.write_bytes(b"previous")

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(ExportError, match="No space left on device"):
        save_model_input(prepared, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["input.png"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_save_model_input_into_a_read_only_folder_is_an_export_error(tmp_path):
    prepared = prepare_image(corpus.object_on()[0])
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="writable"):
            save_model_input(prepared, tmp_path / "input.png")
    finally:
        tmp_path.chmod(0o700)


def test_the_report_is_json_serialisable_and_complete():
    prepared = prepare_image(corpus.encode(corpus.object_on()[0], "JPEG"))
    record = json.loads(json.dumps(prepared.report.to_dict()))
    for key in (
        "method",
        "mask_coverage",
        "bbox",
        "background_color",
        "original_size",
        "original_mode",
        "steps",
    ):
        assert key in record
    assert record["original_size"] == [160, 120] and record["original_mode"] == "RGB"
