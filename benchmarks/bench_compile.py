"""Does ``torch.compile`` pay for the prior on this machine? Compile time and per-call gain.

One guided call of the full-size image prior (random weights, batch 2 for CFG,
float32 unless ``--dtype``), eager vs ``torch.compile`` (inductor, default
mode): the first compiled call's wall time (compilation included), then the
median of ``--runs`` calls of each, interleaved. A run of 64 Heun steps makes
127 calls, so compilation pays when ``compile_s < 127 * (eager - compiled)``.
The same latents come out up to rounding (the largest difference is printed).
Run by hand; quote the load average with the numbers:

    .venv/bin/python benchmarks/bench_compile.py [--runs 3] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PRIOR_CALLS_PER_RUN = 127  # 64 Heun steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import torch
    from diffusers import PriorTransformer

    from benchmarks.bench_sampling import IMAGE_PRIOR_CONFIG

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    prior = PriorTransformer(**IMAGE_PRIOR_CONFIG).to(dtype=dtype).eval()
    tokens, width = IMAGE_PRIOR_CONFIG["num_embeddings"], IMAGE_PRIOR_CONFIG["embedding_dim"]
    x = torch.randn(2, tokens, width, dtype=dtype)
    # CLIP ViT-L/14 at 224 px: 256 patch tokens (what the image prior is conditioned on).
    embeds = torch.randn(2, 256, IMAGE_PRIOR_CONFIG["embedding_proj_dim"], dtype=dtype)
    timestep = torch.tensor(500)

    def call(model) -> tuple[float, object]:
        started = time.perf_counter()
        with torch.inference_mode():
            out = model(x, timestep=timestep, proj_embedding=embeds).predicted_image_embedding
        return time.perf_counter() - started, out

    eager_first, reference = call(prior)
    compiled = torch.compile(prior)
    compile_s, out = call(compiled)
    difference = float((out - reference).abs().max())
    eager, fast = [], []
    for _ in range(args.runs):
        eager.append(call(prior)[0])
        fast.append(call(compiled)[0])
    gain = statistics.median(eager) - statistics.median(fast)
    record = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": args.dtype,
        "load_average": os.getloadavg(),
        "eager_first_s": eager_first,
        "first_compiled_call_s": compile_s,
        "eager_s": eager,
        "compiled_s": fast,
        "gain_per_call_s": gain,
        "break_even_calls": (compile_s - statistics.median(fast)) / gain if gain > 0 else None,
        "max_abs_difference": difference,
    }
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
