#!/usr/bin/env bash
# One prepared run for a fresh GPU machine (no network but the package registries):
# installs what it needs, runs the GPU tests and the GPU benchmark cases, writes
# everything into one folder, and finishes in < 8 minutes on an H100/H200.
#
# Prepare once, here, in the repo root (the diffusers wheel travels with the tree):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1
# then run it through the device tool with carry [".whl"] and timeout_s ~ 540:
#   bash benchmarks/gpu.sh            # results in $OUT (or ./gpu-results)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
started=$(date +%s)

if ! python3 -c "import diffusers" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl/*.whl || { echo "no diffusers wheel in .whl/" >&2; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
# scikit-image and trimesh come from the registry if the image lacks them.
python3 -c "import skimage, trimesh" 2>/dev/null \
    || python3 -m pip install -q --target /tmp/site scikit-image trimesh 2>&1 | tail -2

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$out/gpu.txt"

# Correctness on the GPU: seeds as on the CPU, fp16/autocast close to fp32, no host
# sync inside the sampling loop, decode agrees (dense and adaptive), release frees.
timeout 120 python3 -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.txt"

# Speed, ours vs diffusers in the same run: fast mode (fp16 cast) and faithful mode
# (fp32 weights under autocast), 64 steps, decode 64/128/192, end to end, cold start.
# (The memory case, host RSS of a CLI run with the model written to disk, is left to the CPU
# runs: VRAM peaks come with every row here.)
timeout 240 python3 -m benchmarks --device cuda --dtype float16 --steps 64 --repeats 3 \
    --cases prior sample decode process e2e cold --out "$out/float16" 2>&1 | tail -20 | tee "$out/bench_float16.txt"
timeout 120 python3 -m benchmarks --device cuda --dtype autocast --steps 64 --repeats 3 \
    --cases prior sample --out "$out/autocast" 2>&1 | tail -12 | tee "$out/bench_autocast.txt"
echo "wall $(( $(date +%s) - started )) s" | tee -a "$out/gpu.txt"
