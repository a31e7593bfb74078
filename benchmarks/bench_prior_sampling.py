"""PixelCNN prior sampling speed: facegen's incremental sampler vs the notebook's sampling loop.

The reference is the notebook's ``generate_samples`` (Part C) re-implemented faithfully: a code map
of zeros, then for every position a full forward pass of the prior over the whole map under
``torch.no_grad``, softmax of that position's logits and ``torch.multinomial``. Both samplers run
the same weights: the default-trained prior (``models/pixelcnn/model.pt``) when it exists, else a
freshly initialised prior of the default size (the result says which); speed does not depend on
the weight values. Decoding to images is excluded from both (it is the same VQ-VAE decoder call).

Rounds are interleaved so load from other jobs hits both alike; besides wall-clock rates we record
samples per CPU-second of this process, which does not drop when other processes compete for the
cores. The ratio is computed from the median wall-clock rates.

Run: ``python benchmarks/bench_prior_sampling.py [--batch 64] [--rounds 3]`` -> prints and writes
benchmarks/results/prior_sampling.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from facegen.config import load_params
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import seed_everything, setup_runtime
from facegen.artifacts import PRIOR_DIR
from facegen.models.checkpoint import load_prior

RESULTS = Path(__file__).resolve().parent / "results" / "prior_sampling.json"


def notebook_sampling(prior: PixelCNNPrior, num: int, attrs: torch.Tensor | None) -> torch.Tensor:
    """The notebook's loop: one full forward pass per position, multinomial draw."""
    prior.eval()
    h, w = prior.grid
    samples = torch.zeros((num, h, w), dtype=torch.long, device=prior.attr_rows.device)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                output = prior.logits(samples, attrs)
                logits = output[:, :, i, j]
                probs = F.softmax(logits, dim=1)
                samples[:, i, j] = torch.multinomial(probs, 1).squeeze(1)
    return samples


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="samples per call (evaluation draws 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    rt = setup_runtime(params.runtime)
    generator = seed_everything(params.seed)
    checkpoint = PRIOR_DIR / "model.pt"
    if checkpoint.is_file():
        prior, weights = load_prior(checkpoint, rt.device), f"trained ({checkpoint})"
    else:
        grid = params.data.image_size // 4
        prior = PixelCNNPrior(params.prior, params.model("vqvae").num_embeddings, (grid, grid),
                              params.data.attributes).to(rt.device).eval()
        weights = "freshly initialised, default size (no trained prior found)"
    attrs = prior.attr_rows[torch.randint(len(prior.attr_rows), (args.batch,), generator=generator)] \
        if prior.attr_names else None

    prior.sample_codes(2, generator)  # warm-up (allocations, kernel selection)
    reference, fast = [], []
    for _ in range(args.rounds):
        reference.append(timed(lambda: notebook_sampling(prior, args.batch, attrs)))
        fast.append(timed(lambda: prior.sample_codes(args.batch, generator, attrs)))
    ref_rate = args.batch / statistics.median(t for t, _ in reference)
    fast_rate = args.batch / statistics.median(t for t, _ in fast)
    result = {
        "weights": weights,
        "arch": prior.cfg.arch, "hidden": prior.cfg.hidden, "layers": prior.cfg.layers,
        "kernel_size": prior.cfg.kernel_size, "conditional": bool(prior.attr_names),
        "grid": list(prior.grid), "num_codes": prior.num_codes, "batch": args.batch, "rounds": args.rounds,
        "reference_samples_per_s": round(ref_rate, 3),
        "facegen_samples_per_s": round(fast_rate, 2),
        "ratio": round(fast_rate / ref_rate, 1),
        "reference_samples_per_cpu_s": round(args.batch / statistics.median(c for _, c in reference), 3),
        "facegen_samples_per_cpu_s": round(args.batch / statistics.median(c for _, c in fast), 2),
        "device": str(rt.device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
