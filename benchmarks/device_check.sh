#!/usr/bin/env bash
# GPU checks and benchmarks in one run, for a task that is lent a GPU machine.
#
# The machine has python3 with torch, transformers and scikit-image but no
# diffusers and no network. Prepare here, once, in the repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1
# then run this script through the device tool with carry [".whl"] and a
# timeout of about 540 s. Results land in $OUT (or ./device-out without it).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device-out}"
mkdir -p "$out"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$out/gpu.txt"

# Correctness on the GPU: same seed as the CPU, fp16 close to fp32, decode agrees, release frees.
timeout 120 python3 -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.txt"

# Speed: ours vs diffusers' pipeline on the same full-size random models.
timeout 200 python3 benchmarks/bench_sampling.py --device cuda --dtype float16 --steps 16 \
    --mode both --repeats 2 2>&1 | tee "$out/bench_sampling.txt"
timeout 150 python3 benchmarks/bench_decode.py --device cuda --grid 128 --repeat 2 2>&1 \
    | tee "$out/bench_decode.txt"
