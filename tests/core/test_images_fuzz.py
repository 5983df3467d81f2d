"""Fuzzing: damaged files of every allowed format give a valid image or an ImageInputError.

Mutations (bit flips, overwritten, inserted and deleted bytes, truncation) are
biased towards the first bytes, where headers and the decoders' trust live.
Limits are small so that a mutated header can't make a decoder allocate much.
"""

from __future__ import annotations

import resource
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blender_img3d.core.errors import ImageInputError
from blender_img3d.core.images import prepare_image
from blender_img3d.core.settings import ImageSettings
from tests.fixtures import image_corpus as corpus

# Pillow warns (rightly) about the damage it skips over; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEEDS = corpus.fuzz_seeds()
LIMITS = ImageSettings(max_pixels=250_000, max_file_bytes=256 * 1024)
OUTPUT = 32


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        last = len(data) - 1
        position = draw(st.one_of(st.integers(0, min(64, last)), st.integers(0, last)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            del data[position:]
    return name, bytes(data)


def prepare_or_refuse(data: bytes) -> None:
    """The property: a valid model input, or ImageInputError with a message; nothing else."""
    try:
        prepared = prepare_image(data, LIMITS, size=OUTPUT)
    except ImageInputError as error:
        assert str(error).strip()
        return
    assert prepared.image.mode == "RGB"
    assert prepared.image.size == (OUTPUT, OUTPUT)
    assert prepared.report.method in ("alpha", "learned", "flood", "saliency", "none")


@settings(
    max_examples=200,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated_files())
def fuzz_mutated_files(sample: tuple[str, bytes]) -> None:
    prepare_or_refuse(sample[1])


@settings(max_examples=40, deadline=2000, derandomize=True, database=None)
@given(st.binary(min_size=0, max_size=2048))
def fuzz_random_bytes(data: bytes) -> None:
    prepare_or_refuse(data)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def test_every_fuzz_seed_is_a_valid_image_before_mutation():
    for name, data in SEEDS.items():
        prepared = prepare_image(data, LIMITS, size=OUTPUT)
        assert prepared.image.size == (OUTPUT, OUTPUT), name


def test_mutated_files_give_a_valid_image_or_an_image_input_error_in_bounded_time_and_memory():
    before, started = peak_rss_mb(), time.perf_counter()
    fuzz_mutated_files()
    assert time.perf_counter() - started < 20.0
    assert peak_rss_mb() - before < 300.0


def test_random_bytes_never_escape_as_anything_but_image_input_error():
    fuzz_random_bytes()
