"""Hardware detection → torch build → pip commands, per (OS, GPU), probes faked at their output.

Each case feeds :func:`hardware.probe_machine` what the machine's tools would
print (``nvidia-smi``, ``sysctl``, the sysfs vendor id) and checks the plan's
pip commands: the index URL, the order of the runs and the target folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_img3d.core.system import hardware, vendor
from blender_img3d.core.system.requirements import LIBRARY_PINS, TORCH_REQUIREMENT

SMI_QUERY_4070 = "NVIDIA GeForce RTX 4070, 12282, 572.16\n"
SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 572.16                 Driver Version: 572.16         CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""


def fake_tools(outputs: dict[str, str]):
    """A ``run`` probe answering from ``outputs`` keyed by the command's joined words."""
    calls = []

    def run(command):
        calls.append(command)
        for key, text in outputs.items():
            if " ".join(command).startswith(key):
                return text
        return None  # not installed

    run.calls = calls
    return run


def probe(system, machine, outputs=(), amd=False, nvml=None):
    return hardware.probe_machine(
        system=system,
        machine=machine,
        run=fake_tools(dict(outputs)),
        nvml=lambda: nvml,
        amd_probe=lambda: amd,
    )


def nvidia(cuda: str) -> dict[str, str]:
    return {
        "nvidia-smi --query-gpu": SMI_QUERY_4070,
        "nvidia-smi": SMI_HEADER.format(cuda=cuda),
    }


def commands_for(build: hardware.TorchBuild, tmp_path: Path) -> list[list[str]]:
    plan = vendor.make_plan(
        tmp_path / "vendor" / "cp311-x",
        build=build,
        numpy_version="1.26.4",
        python_version=(3, 11),
    )
    return plan.pip_commands("/blender/python", tmp_path / "c.txt")


def index_of(command: list[str]) -> str:
    return command[command.index("--index-url") + 1]


@pytest.mark.parametrize(
    ("system", "driver_cuda", "index"),
    [
        ("Windows", "12.8", "https://download.pytorch.org/whl/cu128"),
        ("Windows", "12.7", "https://download.pytorch.org/whl/cu126"),
        ("Linux", "13.0", "https://download.pytorch.org/whl/cu130"),
        ("Linux", "12.9", "https://download.pytorch.org/whl/cu128"),
    ],
)
def test_nvidia_driver_picks_the_newest_cuda_build_it_runs(system, driver_cuda, index, tmp_path):
    machine = probe(system, "AMD64" if system == "Windows" else "x86_64", nvidia(driver_cuda))
    assert machine.nvidia_gpus[0].name == "NVIDIA GeForce RTX 4070"
    assert machine.nvidia_gpus[0].memory_bytes == 12282 * 1024**2
    assert machine.driver_cuda == tuple(map(int, driver_cuda.split(".")))
    build = hardware.choose_build(machine)
    assert (build.name, build.index_url, build.detected) == ("cuda", index, True)
    assert "RTX 4070" in build.reason and "572.16" in build.reason
    torch_run, libraries = commands_for(build, tmp_path)
    # torch first, alone, from the CUDA index; then the libraries from PyPI without deps.
    assert torch_run[-1] == TORCH_REQUIREMENT and index_of(torch_run) == index
    assert "--no-deps" not in torch_run
    assert index_of(libraries) == hardware.PYPI_INDEX_URL and "--no-deps" in libraries
    assert not any(arg.startswith("torch") for arg in libraries[libraries.index("--no-deps") :])
    for command in (torch_run, libraries):
        assert command[command.index("--target") + 1] == str(
            (tmp_path / "vendor/cp311-x").resolve()
        )
        assert "--only-binary=:all:" in command
    # torch's pinned dependencies may come from PyPI; torch's +cu build sorts first anyway.
    assert torch_run[torch_run.index("--extra-index-url") + 1] == hardware.PYPI_INDEX_URL
    assert "--extra-index-url" not in libraries


def test_a_driver_too_old_for_every_cuda_build_falls_back_to_cpu_with_the_reason():
    build = hardware.choose_build(probe("Windows", "AMD64", nvidia("11.8")))
    assert build.name == "cpu" and build.index_url.endswith("/whl/cpu")
    assert "CUDA 11.8 only" in build.reason and "12.6" in build.reason
    assert any("Update the NVIDIA driver" in note for note in build.notes)


def test_nvml_answers_when_nvidia_smi_is_missing():
    found = {"driver": "580.82", "cuda": (13, 0), "gpus": [hardware.GPU("NVIDIA RTX A6000")]}
    machine = probe("Linux", "x86_64", {}, nvml=found)
    assert machine.nvidia_driver == "580.82"
    assert hardware.choose_build(machine).index_url.endswith("/cu130")


def test_apple_silicon_gets_pypis_wheel_and_no_gpu_probe(tmp_path):
    run = fake_tools({})
    machine = hardware.probe_machine(system="Darwin", machine="arm64", run=run)
    assert not any(call[0] == "nvidia-smi" for call in run.calls)
    build = hardware.choose_build(machine)
    assert (build.name, build.index_url) == ("mps", hardware.PYPI_INDEX_URL)
    assert index_of(commands_for(build, tmp_path)[0]) == hardware.PYPI_INDEX_URL
    assert vendor.make_plan(tmp_path, build=build, numpy_version="1.26.4").check_device == "mps"


def test_linux_with_an_amd_gpu_gets_the_rocm_index(tmp_path):
    build = hardware.choose_build(probe("Linux", "x86_64", amd=True))
    assert build.name == "rocm" and build.index_url == f"{hardware.PYTORCH_INDEX_ROOT}/rocm6.4"
    assert index_of(commands_for(build, tmp_path)[0]) == build.index_url
    plan = vendor.make_plan(tmp_path, build=build, numpy_version="1.26.4")
    assert plan.check_device == "cuda"  # ROCm builds answer through torch.cuda


@pytest.mark.parametrize("system", ["Linux", "Windows"])
def test_no_gpu_gets_the_cpu_index_on_linux_too(system, tmp_path):
    build = hardware.choose_build(probe(system, "x86_64"))
    assert build.name == "cpu" and build.index_url == "https://download.pytorch.org/whl/cpu"
    assert build.download_bytes < 200 * 1024**2  # no NVIDIA libraries by accident
    assert index_of(commands_for(build, tmp_path)[0]).endswith("/whl/cpu")


def test_windows_amd_gpu_is_not_probed_as_rocm():
    machine = probe("Windows", "AMD64", amd=True)
    assert machine.amd_gpu is False and hardware.choose_build(machine).name == "cpu"


def test_intel_mac_is_refused_before_anything_downloads(tmp_path):
    machine = probe("Darwin", "x86_64")
    with pytest.raises(hardware.UnsupportedPlatformError, match="not supported by PyTorch 2.13"):
        hardware.choose_build(machine)
    with pytest.raises(hardware.UnsupportedPlatformError, match="not supported by PyTorch 2.13"):
        hardware.choose_build(machine, "cpu")  # an explicit choice can't make a wheel appear


def test_intel_blender_under_rosetta_is_told_to_get_the_arm_build():
    machine = probe("Darwin", "x86_64", {"sysctl -n sysctl.proc_translated": "1\n"})
    assert machine.rosetta
    with pytest.raises(hardware.UnsupportedPlatformError, match="Apple Silicon .arm64. build"):
        hardware.choose_build(machine)


def test_explicit_choice_overrides_detection():
    gpu_machine = probe("Linux", "x86_64", nvidia("12.8"))
    cpu = hardware.choose_build(gpu_machine, "cpu")
    assert (cpu.name, cpu.detected) == ("cpu", False) and cpu.index_url.endswith("/whl/cpu")
    cuda = hardware.choose_build(probe("Windows", "AMD64"), "CUDA")
    assert cuda.name == "cuda" and cuda.index_url.endswith("/cu128") and cuda.notes
    custom = hardware.with_index_url(cpu, "https://mirror.example/torch-cpu/")
    assert custom.index_url == "https://mirror.example/torch-cpu"


@pytest.mark.parametrize(
    ("system", "choice", "words"),
    [
        ("Windows", "rocm", "only for Linux"),
        ("Linux", "mps", "only on macOS"),
        ("Darwin", "cuda", "no CUDA build"),
        ("Linux", "vulkan", "Unknown PyTorch build"),
    ],
)
def test_impossible_choices_are_refused_with_what_to_pick(system, choice, words):
    machine = probe(system, "arm64" if system == "Darwin" else "x86_64")
    with pytest.raises(vendor.DependencyError, match=words):
        hardware.choose_build(machine, choice)


def test_the_plan_says_what_from_where_how_big_and_where_before_starting(tmp_path):
    build = hardware.choose_build(probe("Windows", "AMD64", nvidia("12.8")))
    plan = vendor.make_plan(tmp_path / "v", build=build, numpy_version="1.26.4")
    text = "\n".join(plan.describe())
    assert "CUDA 12.8" in text and "https://download.pytorch.org/whl/cu128" in text
    assert "about 3.1 GB" in text and str(plan.vendor_dir) in text
    assert f"{len(LIBRARY_PINS['cp311'])} pinned libraries" in text and "pypi.org" in text
    assert plan.required_free_bytes == hardware.REQUIRED_FREE_BYTES["cuda"]


def test_a_wheelhouse_replaces_every_index_and_needs_no_network(tmp_path, monkeypatch):
    (tmp_path / "wheels").mkdir()
    build = hardware.choose_build(probe("Linux", "x86_64"))
    plan = vendor.make_plan(
        tmp_path / "v", build=build, numpy_version="1.26.4", wheelhouse=tmp_path / "wheels"
    )
    for command in plan.pip_commands("py", tmp_path / "c.txt"):
        assert "--no-index" in command and "--index-url" not in command
        assert command[command.index("--find-links") + 1] == str((tmp_path / "wheels").resolve())
    assert plan.download_bytes == 0 and "the wheelhouse" in "\n".join(plan.describe())
    vendor.preflight(plan, online=False)  # offline is fine: nothing is contacted
    with pytest.raises(vendor.InstallError, match="wheelhouse folder .* doesn't exist"):
        vendor.make_plan(tmp_path / "v", build=build, wheelhouse=tmp_path / "nope")


def test_nvidia_smi_query_parsing_handles_several_gpus_and_junk():
    gpus, driver = hardware.parse_nvidia_smi_query(
        "NVIDIA A100-SXM4-80GB, 81920, 550.54.15\nNVIDIA A100-SXM4-80GB, 81920, 550.54.15\n\n"
    )
    assert len(gpus) == 2 and driver == "550.54.15" and gpus[0].memory_bytes == 80 * 1024**3
    assert hardware.parse_driver_cuda("no header here") is None
