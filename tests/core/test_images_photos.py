"""Real photos through the offline remover: a good cut, or the picture kept with its line.

The corpus (tests/fixtures/photo_corpus.py, licences there) is third-party photos
from scikit-image's wheel and Debian's opencv-doc, each with a hand-made verdict.
The rule for every photo: a cut must be right (its box within IoU 0.8 of the
expected one), or the picture is kept whole and the user is told why. A wrong
cut, which the model would turn into a wrong object, is the one failure.

Measured with the classic chain alone (``--background classic``), no learned
model: the share of one-object photos that get a good cut is held at or above
:data:`GOOD_CUT_FLOOR` (the issue's target is 0.8; see the closing table in
benchmarks/RESULTS.md for where the chain stands and why).
"""

from __future__ import annotations

import pytest

from blender_img3d.core.images import prepare_image
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import photo_corpus
from tests.fixtures.photo_corpus import NO_OBJECT, ONE_OBJECT, box_iou

pytestmark = pytest.mark.slow  # about 1 s a photo on a shared 2-core machine

# What the classic chain reaches on ONE_OBJECT today: 6 of 15 (a regression floor).
GOOD_CUT_FLOOR = 6 / 15
# Photos the classic chain cuts wrongly and confidently: its known limits, kept
# visible (strict xfail: fixing one fails the test until it is taken off the list).
WRONG_CUTS = {
    "lake": "water against sky and shore reads as one object to colour models",
    "corridor": "a bright wall panel outlined by door frames reads as an object",
}


# Each photo is prepared once per session (preparation is deterministic).
_REPORTS: dict[str, object] = {}


def _prepare(photo, tmp_path):
    path = photo.path()
    if path is None:
        pytest.skip(f"{photo.package} is not installed (vendor_install.py --dev installs it)")
    if photo.name not in _REPORTS:
        # An empty cache: the learned remover must not take part.
        settings = ImageSettings(background="classic")
        _REPORTS[photo.name] = prepare_image(path, settings, cache_dir=tmp_path).report
    return _REPORTS[photo.name]


def _cut_box(report) -> tuple[int, int, int, int]:
    if report.method == "none":
        width, height = report.original_size
        return (0, 0, width, height)
    return tuple(report.bbox)


def _marks(photo):
    if photo.name in WRONG_CUTS:
        return [pytest.mark.xfail(strict=True, reason=WRONG_CUTS[photo.name])]
    return []


@pytest.mark.parametrize("photo", [pytest.param(p, id=p.name, marks=_marks(p)) for p in ONE_OBJECT])
def test_a_one_object_photo_is_cut_well_or_kept_with_its_line(photo, tmp_path):
    report = _prepare(photo, tmp_path)
    width, height = report.original_size
    if report.method == "none":
        assert report.warning and report.warning.startswith("kept the background")
        assert "--background learned" in report.warning
        assert report.bbox == [0, 0, width, height]  # the whole picture, not a blob
    else:
        iou = box_iou(_cut_box(report), photo.expected_box(width, height))
        assert iou >= 0.8, f"{photo.name}: {report.method} cut, box IoU {iou:.2f}"
        assert report.confidence is not None


@pytest.mark.parametrize("photo", [pytest.param(p, id=p.name, marks=_marks(p)) for p in NO_OBJECT])
def test_a_photo_without_one_object_is_kept_with_its_line(photo, tmp_path):
    report = _prepare(photo, tmp_path)
    assert report.method == "none", f"{photo.name}: cut by {report.method}"
    assert report.warning.startswith("kept the background")
    assert report.confidence is not None and report.confidence < 0.55


def test_the_classic_chain_cuts_enough_one_object_photos_well(tmp_path):
    good = total = 0
    for photo in ONE_OBJECT:
        if photo.path() is None:
            continue
        report = _prepare(photo, tmp_path)
        width, height = report.original_size
        total += 1
        iou = box_iou(_cut_box(report), photo.expected_box(width, height))
        good += report.method != "none" and iou >= 0.8
    if total < len(ONE_OBJECT):
        pytest.skip("part of the photo corpus is not installed")
    assert good / total >= GOOD_CUT_FLOOR


def test_the_corpus_has_twenty_photos_with_licences():
    assert len(photo_corpus.PHOTOS) >= 20
    assert all(photo.licence for photo in photo_corpus.PHOTOS)
    assert len({photo.name for photo in photo_corpus.PHOTOS}) == len(photo_corpus.PHOTOS)


def test_the_cli_prints_the_kept_line(surface_image_model_dir, tmp_path, capsys):
    from blender_img3d.cli.main import main

    brick = next(photo for photo in NO_OBJECT if photo.name == "brick")
    if brick.path() is None:
        pytest.skip("scikit-image's data is not installed")
    code = main(
        [
            "generate", "--image", str(brick.path()), "--model", str(surface_image_model_dir),
            "--steps", "2", "--grid-size", "16", "--out", str(tmp_path / "brick.glb"),
            "--background", "classic", "--quiet", "--cache-dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if "kept the background" in line]
    assert len(lines) == 1 and "--background learned" in lines[0]
