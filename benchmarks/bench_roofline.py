"""How close is one fp32 prior call to what this CPU's matrix multiply can do?

The prior is diffusers' ``PriorTransformer`` on both sides, so ours and
diffusers' calls do the same FLOPs and parity in fp32 is expected; the
question is whether any fp32 trick could still give a large factor. This
counts the FLOPs of one guided call of the full-size image prior (random
weights, batch 2 for CFG): every ``nn.Linear`` through forward hooks, and the
attention products from the token count. It then times, interleaved, median of
``--runs``: the call as it is (aten, MKL), the call with every linear's weight
pre-packed for oneDNN (``torch.ops.mkldnn._linear_pointwise``, what inductor's
freezing uses), and a plain matrix multiply at each linear shape of the call.
The achieved GFLOPS of the call against those of the bare multiplies is the
headroom. Run by hand on a quiet machine; quote the load average:

    .venv/bin/python benchmarks/bench_roofline.py [--runs 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CONDITION_TOKENS = 256  # CLIP ViT-L/14 patch tokens at 224 px (the image prior's condition)


def count_flops(prior, inputs) -> tuple[float, dict[tuple[int, int, int], int]]:
    """FLOPs of one call and the (rows, in, out) shapes of its linears with their counts."""
    import torch

    shapes: dict[tuple[int, int, int], int] = {}
    flops = 0.0

    def hook(module, args, _output) -> None:
        nonlocal flops
        rows = args[0].numel() // module.in_features
        shape = (rows, module.in_features, module.out_features)
        shapes[shape] = shapes.get(shape, 0) + 1
        flops += 2.0 * rows * module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook) for m in prior.modules() if isinstance(m, torch.nn.Linear)
    ]
    with torch.inference_mode():
        prior(**inputs)
    for handle in handles:
        handle.remove()
    batch, latent_tokens, width = inputs["hidden_states"].shape
    tokens = latent_tokens + CONDITION_TOKENS + 1  # + the timestep token
    layers = len(prior.transformer_blocks)
    flops += layers * 4.0 * batch * tokens**2 * width  # Q K^T and A V
    return flops, shapes


def packed_copy(prior, rows: int):
    """A copy of ``prior`` whose linears run on weights oneDNN reordered once, for ``rows``."""
    import torch

    packed = copy.deepcopy(prior)
    for module in packed.modules():
        if isinstance(module, torch.nn.Linear):
            weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)
            bias = None if module.bias is None else module.bias.detach()
            module.forward = lambda x, w=weight, b=bias: torch.ops.mkldnn._linear_pointwise(
                x, w, b, "none", [], ""
            )
    return packed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch
    from diffusers import PriorTransformer

    from benchmarks.bench_sampling import IMAGE_PRIOR_CONFIG

    torch.manual_seed(0)
    prior = PriorTransformer(**IMAGE_PRIOR_CONFIG).eval().requires_grad_(False)
    tokens, width = IMAGE_PRIOR_CONFIG["num_embeddings"], IMAGE_PRIOR_CONFIG["embedding_dim"]
    inputs = {
        "hidden_states": torch.randn(2, tokens, width),
        "timestep": torch.tensor(500),
        "proj_embedding": torch.randn(
            2, CONDITION_TOKENS, IMAGE_PRIOR_CONFIG["embedding_proj_dim"]
        ),
    }
    flops, shapes = count_flops(prior, inputs)
    rows = max(shape[0] for shape in shapes)
    packed = packed_copy(prior, rows)

    def call(model) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model(**inputs)
        return time.perf_counter() - started

    with torch.inference_mode():
        difference = float(
            (prior(**inputs).predicted_image_embedding - packed(**inputs).predicted_image_embedding)
            .abs()
            .max()
        )
    plain, prepacked = [], []
    for _ in range(args.runs):
        plain.append(call(prior))
        prepacked.append(call(packed))

    matmuls = {}
    for (m, k, n), count in sorted(
        shapes.items(), key=lambda item: -item[0][0] * item[0][1] * item[0][2] * item[1]
    ):
        if m * k * n * count < 0.01 * flops / 2:
            continue  # a small share of the call: not worth the time
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            torch.mm(a, b)
            seconds.append(time.perf_counter() - started)
        matmuls[f"{m}x{k}x{n} (x{count})"] = 2.0 * m * k * n / statistics.median(seconds) / 1e9

    call_s = statistics.median(plain)
    record = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
        "call_tflop": flops / 1e12,
        "call_s": plain,
        "call_gflops": flops / call_s / 1e9,
        "prepacked_call_s": prepacked,
        "prepacked_gain": call_s / statistics.median(prepacked),
        "prepacked_max_abs_difference": difference,
        "matmul_gflops": matmuls,
        "share_of_best_matmul": flops / call_s / 1e9 / max(matmuls.values()),
    }
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
