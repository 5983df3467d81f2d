"""Real photos through the offline remover: a good cut, or the user told.

The corpus (tests/fixtures/photo_corpus.py, licences there) is third-party photos
from scikit-image's wheel and Debian's opencv-doc, each with a hand-made verdict;
30 of them were added by a census of every image in those packages' folders
(tests/fixtures/photo_census.md). The rule for every photo: a cut must be right
(its box within IoU 0.8 of the expected one), or the user gets the one line that
says the background was kept or the cut is doubtful. A wrong cut nobody is told
about, which the model would turn into a wrong object, is the one failure.

Measured with the classic chain alone (``--background classic``), no learned
model: how many one-object photos get a good cut, and how many photos without
one object are kept, are held at or above floors (the issue's target for the
first is 0.8; benchmarks/RESULTS.md has the table and why the chain stops short).
"""

from __future__ import annotations

import pytest

from blender_img3d.core.images import prepare_image
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import photo_corpus
from tests.fixtures.photo_corpus import NO_OBJECT, ONE_OBJECT, cut_iou, is_good_cut

pytestmark = pytest.mark.slow  # about 1 s a photo on a shared 2-core machine

# What the classic chain reaches today (regression floors, not targets).
GOOD_CUT_FLOOR = 9 / 19  # one-object photos cut well (10 today)
KEPT_FLOOR = 14 / 39  # photos without one object kept whole (15 today)
# Wrong cuts the chain makes without a word: its known limits, kept visible
# (strict xfail: fixing one fails the test until it is taken off the list).
SILENT_WRONG_CUTS = {
    "notebook": "a close-up of a notebook on cloth reads as an object on a plain background",
}
# What the learned path reaches with a real model, U²-Net-p (4.6 MB, from PyPI; the
# add-on's own model, BiRefNet lite, can't be fetched here): one-object photos cut well.
LEARNED_GOOD_CUT_FLOOR = 13 / 19  # 14 today
_KEPT = "kept the background"
_DOUBT = "the cut-out is doubtful"


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


def _marks(photo):
    if photo.name in SILENT_WRONG_CUTS:
        return [pytest.mark.xfail(strict=True, reason=SILENT_WRONG_CUTS[photo.name])]
    return []


@pytest.mark.parametrize("photo", [pytest.param(p, id=p.name, marks=_marks(p)) for p in ONE_OBJECT])
def test_a_one_object_photo_is_cut_well_or_the_user_is_told(photo, tmp_path):
    report = _prepare(photo, tmp_path)
    width, height = report.original_size
    if report.method == "none":
        assert report.warning and report.warning.startswith(_KEPT)
        assert "--background learned" in report.warning
        assert report.bbox == [0, 0, width, height]  # the whole picture, not a blob
        return
    assert report.confidence is not None
    if report.method == "saliency":  # never sure on a busy photo
        assert report.warning and report.warning.startswith(_DOUBT)
    if not is_good_cut(photo, report):
        iou = cut_iou(photo, report)
        assert report.warning and report.warning.startswith(_DOUBT), (
            f"{photo.name}: {report.method} cut, box IoU {iou:.2f}, and nothing said"
        )


@pytest.mark.parametrize("photo", [pytest.param(p, id=p.name, marks=_marks(p)) for p in NO_OBJECT])
def test_a_photo_without_one_object_is_kept_or_the_user_is_told(photo, tmp_path):
    report = _prepare(photo, tmp_path)
    if report.method == "none":
        assert report.warning.startswith(_KEPT)
        assert report.confidence is not None and report.confidence < 0.55
    else:
        assert report.warning and report.warning.startswith(_DOUBT), (
            f"{photo.name}: cut by {report.method} at {report.confidence}, nothing said"
        )


def test_the_classic_chain_cuts_enough_photos_well_and_keeps_enough(tmp_path):
    if any(photo.path() is None for photo in photo_corpus.PHOTOS):
        pytest.skip("part of the photo corpus is not installed")
    good = sum(is_good_cut(p, _prepare(p, tmp_path)) for p in ONE_OBJECT)
    kept = sum(_prepare(p, tmp_path).method == "none" for p in NO_OBJECT)
    assert good / len(ONE_OBJECT) >= GOOD_CUT_FLOOR, f"{good} of {len(ONE_OBJECT)} cut well"
    assert kept / len(NO_OBJECT) >= KEPT_FLOOR, f"{kept} of {len(NO_OBJECT)} kept"


def test_the_learned_path_with_a_real_model_cuts_most_one_object_photos_well():
    from tests.fixtures.background_model import real_remover

    model = real_remover()
    if model is None:
        pytest.skip("the real salient-object model is not installed: vendor_install.py --dev")
    if any(photo.path() is None for photo in ONE_OBJECT):
        pytest.skip("part of the photo corpus is not installed")
    settings = ImageSettings(background="learned")
    reports = [prepare_image(p.path(), settings, learned_model=model).report for p in ONE_OBJECT]
    assert {report.method for report in reports} <= {"learned", "none"}
    good = sum(is_good_cut(photo, report) for photo, report in zip(ONE_OBJECT, reports))
    assert good / len(ONE_OBJECT) >= LEARNED_GOOD_CUT_FLOOR, f"{good} of {len(ONE_OBJECT)}"


def test_the_corpus_has_twenty_photos_with_licences():
    assert len(photo_corpus.PHOTOS) >= 20 and len(photo_corpus.CENSUS_ADDED) >= 20
    assert photo_corpus.CENSUS_ADDED <= {photo.name for photo in photo_corpus.PHOTOS}
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
