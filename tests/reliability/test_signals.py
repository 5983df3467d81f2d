"""Signals: SIGTERM cleans up like SIGINT, and the exit code is 130 / 143 every time.

The CLI runs in a child process whose STEP writer is slowed down at a known
point (after its first chunk is in the temporary file), so the signal lands
mid-export deterministically: the child says "ready" through a file, the test
sends the signal, and then checks the exit code, that the temporary file is
gone and that the previous output is byte-for-byte what it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import temporary_files

REPO_ROOT = Path(__file__).resolve().parents[2]
OLD = b"previous STEP, must survive\n"

CHILD = r"""
import sys, time, pathlib
from blender_img3d.core.exporters import step

ready, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
real = step.step_chunks

def slow(*args, **kwargs):
    for index, chunk in enumerate(real(*args, **kwargs)):
        yield chunk
        if index == 0:
            ready.write_text("exporting")
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                if mode == "slow-cleanup":  # a clean-up that hangs: the 2nd signal must end it
                    ready.write_text("cleaning")
                    time.sleep(60)
                raise

step.step_chunks = slow
from blender_img3d.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def _wait_for(path: Path, text: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == text:
            return
        if process.poll() is not None:
            raise AssertionError(f"child ended early: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"child never reported {text!r}")


def _start(tmp_path: Path, mode: str, source: Path) -> tuple[subprocess.Popen, Path, Path]:
    out = tmp_path / "out" / "part.step"
    out.parent.mkdir()
    out.write_bytes(OLD)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = ["export", "--quiet", "--in", str(source), "--out", str(out)]
    args += ["--out", str(out.with_suffix(".glb"))]
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ready), mode, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    return process, ready, out


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_export_removes_the_temporary_file_and_keeps_the_old_output(
    tmp_path, mesh_files, signum, code
):
    process, ready, out = _start(tmp_path, "plain", mesh_files["glb"])
    _wait_for(ready, "exporting", process)
    assert temporary_files(out.parent)  # the STEP is being written right now
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        f"error: {'terminated' if code == 143 else 'interrupted'}; "
        "no output of this run was left half-written"
    ]
    assert "wrote" not in stdout
    assert temporary_files(out.parent) == []
    assert out.read_bytes() == OLD
    assert not out.with_suffix(".glb").exists()  # staged with the STEP: discarded with it


def test_a_second_signal_during_a_hung_cleanup_exits_at_once_without_temporaries(
    tmp_path, mesh_files
):
    process, ready, out = _start(tmp_path, "slow-cleanup", mesh_files["glb"])
    _wait_for(ready, "exporting", process)
    process.send_signal(signal.SIGTERM)
    _wait_for(ready, "cleaning", process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143
    assert temporary_files(out.parent) == []
    assert out.read_bytes() == OLD


STARTER = r"""
import pathlib, runpy, sys
import blender_img3d  # the package itself: two tiny modules, then the command starts
pathlib.Path(sys.argv[1]).write_text("started")
sys.argv = ["blender_img3d", *sys.argv[2:]]
runpy.run_module("blender_img3d", run_name="__main__", alter_sys=True)  # what -m does
"""


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0])
def test_sigint_at_any_moment_of_a_command_exits_130(tmp_path, delay):
    """Ctrl-C while the CLI imports, while argparse runs or while the command works.

    Not earlier: while the interpreter itself starts, before any line of ours
    runs, CPython dies by the signal (see RELIABILITY.md).
    """
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(ready), "info", "--no-devices"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    _wait_for(ready, "started", process)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    # 0 when "info" finished before the signal; never a death by signal (-2).
    assert process.returncode in (0, 130), stderr
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr
    if process.returncode == 130:
        assert stderr.strip().endswith(b"error: interrupted; no output of this run was left "
                                       b"half-written")  # fmt: skip


def test_signal_handlers_are_restored_after_an_in_process_command(capsys):
    from blender_img3d.cli.main import main

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["info", "--no-devices"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
