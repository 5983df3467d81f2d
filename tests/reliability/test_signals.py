"""Signals: SIGTERM cleans up like SIGINT, and the exit code is 130 / 143 every time.

Two kinds of child process, both real processes receiving real signals:

* Mid-export cases run ``python -m blender_img3d export`` (``__main__`` through
  ``runpy``, as ``-m`` does) in a child forked from a warm "zygote": one Python
  per module that has imported the export path and run one export, so a case
  costs a fork instead of importing numpy, scipy and trimesh again. In the child
  the STEP writer pauses after its first chunk is in the temporary file and
  says so on a pipe; the test signals it then, deterministically mid-export.
* The any-moment cases start a fresh interpreter (``python -m blender_img3d
  info``), because they are about the imports. Its readiness is read from
  outside: the moment ``/proc/PID/status`` shows SIGTERM caught, ``__main__``'s
  first statements have installed both handlers; the test then sends SIGINT at
  fractions of the command's measured length, from "at once" to "after it ended".
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_img3d.cli.interrupts import stopped_line
from tests.reliability.conftest import temporary_files

REPO_ROOT = Path(__file__).resolve().parents[2]
OLD = b"previous STEP, must survive\n"
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO_ROOT),
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

ZYGOTE = r"""
import json, os, runpy, sys, time, traceback

report = os.fdopen(os.dup(1), "w", buffering=1)  # the pipe to the test: one line per event
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.dup2(log, 1)
os.dup2(log, 2)

from blender_img3d.cli.main import main
from blender_img3d.core.exporters import step

warm = json.loads(sys.argv[2])  # one real export: every lazy import of the path happens now
outputs = [arg for path in warm["out"] for arg in ("--out", path)]
assert main(["export", "--quiet", "--in", warm["in"], *outputs]) == 0
real_chunks = step.step_chunks


def paused_chunks(mode):
    def chunks(*args, **kwargs):
        for index, chunk in enumerate(real_chunks(*args, **kwargs)):
            yield chunk
            if index == 0:
                try:  # the report inside: a signal right after it lands in this block
                    report.write(f"{os.getpid()} exporting\n")
                    time.sleep(60)
                except KeyboardInterrupt:
                    if mode == "slow-cleanup":  # a clean-up that hangs: the 2nd signal must end it
                        report.write(f"{os.getpid()} cleaning\n")
                        time.sleep(60)
                    raise
    return chunks


def child(request):
    code = 70
    try:
        os.chdir(request["cwd"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        if request["mode"] != "no-pause":
            step.step_chunks = paused_chunks(request["mode"])
        sys.argv = ["blender_img3d", *request["args"]]
        runpy.run_module("blender_img3d", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


report.write("ready\n")
for line in sys.stdin:
    sys.stdout.flush()
    sys.stderr.flush()  # or the child would inherit and repeat what is buffered
    pid = os.fork()
    if pid == 0:
        child(json.loads(line))
    report.write(f"{pid} exit {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}\n")
"""


class Zygote:
    """The warm parent of the mid-export children (see the module docstring)."""

    def __init__(self, folder: Path, warm_input: Path) -> None:
        self.log = folder / "zygote.log"
        warm = {"in": str(warm_input), "out": [str(folder / "w.step"), str(folder / "w.glb")]}
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(self.log), json.dumps(warm)],
            env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            cwd=folder,
        )  # fmt: skip
        assert self.line(120) == "ready"

    def line(self, seconds: float = 60.0) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        text = self.process.stdout.readline() if ready else ""
        if not text:
            self.process.kill()
            raise AssertionError(f"the zygote went quiet; its log:\n{self.log.read_text()}")
        return text.strip()

    def start(self, folder: Path, mode: str, args: list[str]) -> Child:
        request = {"cwd": str(folder), "mode": mode, "args": args}
        request |= {"stdout": str(folder / "child.out"), "stderr": str(folder / "child.err")}
        self.process.stdin.write(json.dumps(request) + "\n")
        return Child(self, folder)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Child:
    """One forked ``python -m blender_img3d`` run: its events, then its exit code and output."""

    def __init__(self, zygote: Zygote, folder: Path) -> None:
        self.zygote, self.folder, self.pid = zygote, folder, 0

    def wait_for(self, event: str) -> None:
        pid, _, what = self.zygote.line().partition(" ")
        assert what == event, (what, (self.folder / "child.err").read_text())
        self.pid = int(pid)

    def signal(self, signum: int) -> None:
        assert self.pid > 0  # (0 would signal the whole process group)
        os.kill(self.pid, signum)

    def finish(self) -> tuple[int, str, str]:
        pid, _, code = self.zygote.line().partition(" exit ")
        assert int(pid) == self.pid or not self.pid
        out, err = ((self.folder / name).read_text() for name in ("child.out", "child.err"))
        return int(code), out, err


@pytest.fixture(scope="module")
def zygote(tmp_path_factory) -> Zygote:
    from blender_img3d.core.exporters import export_mesh
    from tests.fixtures.meshes import cube

    folder = tmp_path_factory.mktemp("zygote")
    parent = Zygote(folder, export_mesh(cube(colors=True), folder / "warm.glb"))
    yield parent
    parent.close()


def _start(zygote: Zygote, tmp_path: Path, mode: str, source: Path) -> tuple[Child, Path]:
    out = tmp_path / "out" / "part.step"
    out.parent.mkdir()
    out.write_bytes(OLD)
    args = ["export", "--quiet", "--in", str(source), "--out", str(out)]
    args += ["--out", str(out.with_suffix(".glb"))]
    return zygote.start(tmp_path, mode, args), out


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_export_removes_the_temporary_file_and_keeps_the_old_output(
    zygote, tmp_path, mesh_files, signum, code
):
    child, out = _start(zygote, tmp_path, "plain", mesh_files["glb"])
    child.wait_for("exporting")
    assert temporary_files(out.parent)  # the STEP is being written right now
    child.signal(signum)
    returncode, stdout, stderr = child.finish()
    assert returncode == code, stderr
    assert stderr.strip().splitlines() == [
        f"error: {'terminated' if code == 143 else 'interrupted'}; "
        "no output of this run was left half-written"
    ]
    assert "wrote" not in stdout
    assert temporary_files(out.parent) == []
    assert out.read_bytes() == OLD
    assert not out.with_suffix(".glb").exists()  # staged with the STEP: discarded with it


def test_a_second_signal_during_a_hung_cleanup_exits_at_once_without_temporaries(
    zygote, tmp_path, mesh_files
):
    child, out = _start(zygote, tmp_path, "slow-cleanup", mesh_files["glb"])
    child.wait_for("exporting")
    child.signal(signal.SIGTERM)
    child.wait_for("cleaning")
    child.signal(signal.SIGTERM)
    returncode, _, _ = child.finish()
    assert returncode == 143
    assert temporary_files(out.parent) == []
    assert out.read_bytes() == OLD


def test_a_forked_export_without_a_signal_writes_both_files(zygote, tmp_path, mesh_files):
    """The control case: the zygote's children really export when nobody stops them."""
    child, out = _start(zygote, tmp_path, "no-pause", mesh_files["glb"])
    returncode, stdout, stderr = child.finish()
    assert (returncode, stderr) == (0, "")
    assert stdout.splitlines()[:2] == [f"wrote {out}", f"wrote {out.with_suffix('.glb')}"]
    assert out.read_bytes().startswith(b"ISO-10303-21;")
    assert out.with_suffix(".glb").read_bytes()[:4] == b"glTF"
    assert temporary_files(out.parent) == []


def _catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _start_info(preexec=None) -> tuple[subprocess.Popen, float]:
    """``python -m blender_img3d info --no-devices``, returned once its handlers are in place."""
    process = subprocess.Popen(
        [sys.executable, "-m", "blender_img3d", "info", "--no-devices"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _catches_sigterm(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.0002)
    return process, time.monotonic()


@pytest.fixture(scope="module")
def info_run() -> tuple[float, str]:
    """How long ``info`` runs after its handlers are in place, and what it prints."""
    process, ready = _start_info()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and stderr == ""
    return time.monotonic() - ready, stdout


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


@needs_proc
@pytest.mark.parametrize("fraction", [0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.2])
def test_sigint_at_any_moment_after_the_first_line_exits_130(info_run, fraction):
    """Ctrl-C while the CLI imports, while argparse runs, while ``info`` prints, after it.

    Not earlier: while the interpreter itself starts, before our first line runs,
    CPython dies by the signal (see RELIABILITY.md).
    """
    span, complete = info_run
    process, ready = _start_info()
    time.sleep(max(0.0, ready + fraction * span - time.monotonic()))
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    # 0 only when "info" had finished before the signal, its output complete; never -2.
    assert process.returncode in (0, 130), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    if process.returncode == 130:
        assert stderr.splitlines() == [stopped_line(signal.SIGINT)]
    else:
        assert (stdout, stderr) == (complete, "")


@needs_proc
def test_a_sigint_the_process_inherited_as_ignored_stays_ignored(info_run):
    """A background job (``cmd &`` in a script) ignores Ctrl-C; the CLI must not undo that."""
    span, complete = info_run
    process, ready = _start_info(preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    for fraction in (0.0, 0.3, 0.6):
        time.sleep(max(0.0, ready + fraction * span - time.monotonic()))
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (0, complete, "")


def test_signal_handlers_are_restored_after_an_in_process_command(capsys):
    from blender_img3d.cli.main import main

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["info", "--no-devices"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
