"""Would a faster sampler do as "Draft"? The check issue #13 asks for, on an analytic denoiser.

The candidate is DPM-Solver++(2M) (Lu et al., 2022: the multistep second-order
solver of the probability-flow ODE in log-sigma, data prediction) on the same
Karras sigmas as our default, with one prior call per step. The denoiser is
exact: latents drawn from a Gaussian mixture, whose clean-sample prediction
``E[x0 | x_sigma]`` has a closed form, so no weights are needed and every
solver integrates the same ODE. Each solver starts from the same noise
(``sigma_max`` times a standard normal, as the reference does); its endpoint
is compared with a 1000-step Heun solution of the same ODE. The bar: the
candidate, at no more than 20 prior calls, must land no further from that
solution than our default (64 Heun steps, 127 calls). The table also gives the
steps the candidate needs to meet the bar. Float64 throughout, so rounding
plays no part. Run by hand (about a minute on 2 cores; ``--full`` adds the
1024-wide, 16-component cases, several minutes):

    .venv/bin/python benchmarks/bench_samplers.py [--full]

The candidate is not offered in the product: see the results in RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from blender_img3d.core import settings  # noqa: E402
from blender_img3d.core.shap_e.schedules import heun, karras_sigmas  # noqa: E402

REFERENCE_STEPS = 1000
CANDIDATE_STEPS = (10, 12, 16, 20)
MATCH_SEARCH = (24, 32, 40, 48, 56, 64, 80, 96, 127)


def mixture_denoiser(means, stds, weights):
    """``x0(x, sigma)`` of a mixture of isotropic Gaussians N(mean_k, std_k^2 I), weights w_k.

    Under x = x0 + sigma * noise, component k is seen as N(mean_k, (std_k^2 + sigma^2) I);
    its posterior mean is mean_k + std_k^2 / (std_k^2 + sigma^2) (x - mean_k), and the
    prediction is those means weighted by each component's posterior probability.
    """
    import torch

    log_weights = torch.log(weights)
    width = means.shape[1]

    def denoise(x, sigma: float):
        variance = stds**2 + sigma**2
        distance = ((x[:, None, :] - means[None]) ** 2).sum(-1)
        log_p = log_weights - 0.5 * distance / variance - 0.5 * width * torch.log(variance)
        responsibility = torch.softmax(log_p, dim=1)
        shrink = (stds**2 / variance)[None, :, None]
        posterior = means[None] + shrink * (x[:, None, :] - means[None])
        return (responsibility[..., None] * posterior).sum(1)

    return denoise


def dpm_solver_pp_2m(denoise, x, sigmas, progress=None, cancel=None):
    """DPM-Solver++(2M), our integrators' signature: one ``denoise`` call per sigma but the last 0.

    In lambda = -log(sigma) the ODE's linear part is solved exactly; the data
    prediction is extrapolated linearly from the last two calls (the first step
    and the step to sigma 0 use the current one alone).
    """
    previous, previous_h = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, i)
        if sigma_next == 0:
            return x0
        h = math.log(sigma / sigma_next)
        blended = x0
        if previous is not None:
            ratio = previous_h / h
            blended = (1 + 1 / (2 * ratio)) * x0 - (1 / (2 * ratio)) * previous
        x = (sigma_next / sigma) * x + (1 - sigma_next / sigma) * blended
        previous, previous_h = x0, h
    return x


def solve(integrate, denoise, noise, steps: int):
    """The endpoint of ``integrate`` over ``steps`` Karras sigmas and its number of calls."""
    import torch

    sigmas = torch.from_numpy(
        karras_sigmas(steps, settings.DEFAULT_SIGMA_MIN, settings.DEFAULT_SIGMA_MAX)
    ).double()
    calls = 0

    def counted(x, index):
        nonlocal calls
        calls += 1
        return denoise(x, float(sigmas[index]))

    return integrate(counted, noise * float(sigmas[0]), sigmas, None, None), calls


def case(width: int, components: int, std: float, samples: int = 16, seed: int = 0) -> dict:
    """Endpoint errors (RMS per element, worst sample) of each solver against the reference."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    # Means inside the range the prior's x0 is clipped to ([-1, 1]).
    means = (torch.rand(components, width, generator=generator, dtype=torch.float64) * 2 - 1) * 0.8
    stds = torch.full((components,), std, dtype=torch.float64)
    weights = torch.softmax(torch.randn(components, generator=generator, dtype=torch.float64), 0)
    denoise = mixture_denoiser(means, stds, weights)
    noise = torch.randn(samples, width, generator=generator, dtype=torch.float64)
    reference, _ = solve(heun, denoise, noise, REFERENCE_STEPS)

    def error(steps: int, integrate) -> tuple[float, int]:
        x, calls = solve(integrate, denoise, noise, steps)
        return float(((x - reference).norm(dim=1) / math.sqrt(width)).max()), calls

    bar, bar_calls = error(settings.DEFAULT_STEPS, heun)
    candidate = {steps: error(steps, dpm_solver_pp_2m) for steps in CANDIDATE_STEPS}
    needed = next((s for s in MATCH_SEARCH if error(s, dpm_solver_pp_2m)[0] <= bar), None)
    return {"bar": (bar, bar_calls), "candidate": candidate, "steps_to_match": needed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also 1024 wide and 16 components")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    shapes = [(64, 4), (1024, 4)] + ([(64, 16), (1024, 16)] if args.full else [])
    head = " | ".join(f"DPM++(2M) {s} calls" for s in CANDIDATE_STEPS)
    print(
        f"| width, components, std | Heun {settings.DEFAULT_STEPS} steps | {head} | "
        "DPM++(2M) steps to match | passes |"
    )
    print("|---" * (4 + len(CANDIDATE_STEPS)) + "|")
    passed = cases = 0
    for width, components in shapes:
        for std in (0.02, 0.1, 0.3):
            result = case(width, components, std)
            bar, bar_calls = result["bar"]
            ok = any(e <= bar for e, calls in result["candidate"].values() if calls <= 20)
            passed += ok
            cases += 1
            cells = " | ".join(f"{e:.2e}" for e, _ in result["candidate"].values())
            print(
                f"| {width}, {components}, {std} | {bar:.2e} ({bar_calls} calls) | {cells} | "
                f"{result['steps_to_match'] or '> 127'} | {'yes' if ok else 'no'} |",
                flush=True,
            )
    print(f"DPM++(2M) in at most 20 calls meets the bar in {passed} of {cases} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
