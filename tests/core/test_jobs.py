"""The worker-thread job: messages, coalesced progress, cancel, errors, bounded polling."""

from __future__ import annotations

import threading
import time

import pytest

from blender_img3d.core.errors import CancelledError, ImageInputError
from blender_img3d.core.jobs import Job, format_duration, overall_fraction
from blender_img3d.core.progress import Phase, raise_if_cancelled


def sampling_work(steps: int, delay: float = 0.0, started: threading.Event | None = None):
    calls = []

    def work(progress, cancel):
        thread = threading.current_thread().name
        for step in range(1, steps + 1):
            raise_if_cancelled(cancel)
            if started is not None:
                started.set()
            time.sleep(delay)
            calls.append(step)
            progress(Phase.SAMPLING, step, steps)
        return {"steps": len(calls), "thread": thread}

    return work, calls


def test_result_arrives_after_progress_and_runs_on_another_thread():
    work, _ = sampling_work(5)
    job = Job(work).start()
    final = job.run_to_end(timeout=10)
    assert final.kind == "result"
    assert final.payload["steps"] == 5
    assert final.payload["thread"] != threading.current_thread().name
    assert job.last_progress is not None and job.last_progress.step == 5
    assert not job.alive


def test_poll_coalesces_progress_into_the_newest_update():
    work, _ = sampling_work(20)
    job = Job(work).start()
    job.join(10)
    messages = job.poll(budget_seconds=1.0)
    kinds = [message.kind for message in messages]
    assert kinds == ["progress", "result"]
    assert messages[0].payload.step == 20


def test_cancel_stops_within_one_step():
    started = threading.Event()
    work, calls = sampling_work(1000, delay=0.01, started=started)
    job = Job(work).start()
    assert started.wait(5)
    job.cancel()
    steps_when_cancelled = len(calls)
    final = job.run_to_end(timeout=10)
    assert final.kind == "cancelled"
    assert isinstance(final.payload, CancelledError)
    assert len(calls) <= steps_when_cancelled + 1
    assert not job.alive


def test_typed_errors_are_reported_not_raised():
    def work(progress, cancel):
        raise ImageInputError("The image is blank.")

    final = Job(work).start().run_to_end(timeout=10)
    assert final.kind == "error"
    assert str(final.payload) == "The image is blank."


def test_unexpected_exceptions_become_a_clear_error():
    def work(progress, cancel):
        raise ZeroDivisionError("boom")

    final = Job(work).start().run_to_end(timeout=10)
    assert final.kind == "error"
    assert "Unexpected error" in str(final.payload) and "boom" in str(final.payload)


def test_poll_respects_its_time_budget_with_a_full_queue():
    def work(progress, cancel):
        for step in range(50_000):
            progress(Phase.SAMPLING, step, 50_000)
        return "done"

    job = Job(work).start()
    job.join(30)
    start = time.perf_counter()
    job.poll(budget_seconds=0.002)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05  # budget plus scheduling slack; the queue held 50k messages
    assert job.run_to_end(timeout=30).kind == "result"


def test_eta_and_overall_fraction():
    work, _ = sampling_work(4, delay=0.02)
    job = Job(work).start()
    job.join(10)
    job.poll(1.0)
    update = job.last_progress
    assert update.eta_seconds == pytest.approx(0.0, abs=1e-6)  # last step: nothing left
    assert 0 < overall_fraction(Phase.SAMPLING, 2, 4) < overall_fraction(Phase.DECODING, 0, 4)
    assert overall_fraction(Phase.EXPORTING, 1, 1) == pytest.approx(1.0)
    assert format_duration(75) == "1m 15s" and format_duration(4.4) == "4s"


def test_a_job_starts_once():
    work, _ = sampling_work(1)
    job = Job(work).start()
    with pytest.raises(RuntimeError):
        job.start()
    job.run_to_end(timeout=10)
