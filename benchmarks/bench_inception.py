"""Inception feature extraction speed (standard FID/KID) on 64 px faces: TorchScript vs folded, fp32 vs bf16.

Contenders, all the same weights (facegen.evaluation.inception) on the same batch of procedural
64x64 faces, each image quantised, resized to 299x299 and embedded to 2048-d:

* ``fp32``: the pinned TorchScript as loaded, contiguous NCHW float32 (the baseline);
* ``fp32_channels_last``: the TorchScript on channels-last input (what facegen shipped before the
  folded network: its blocks' ``.contiguous()`` calls turn the activations back into NCHW);
* ``folded_fp32_channels_last`` = ``inception_features`` as shipped: the eager network with the batch
  norms folded into the convolutions (``inception_net.py``), channels-last;
* ``folded_bf16_channels_last``: the same under CPU bf16 autocast, only when the CPU has bf16 flags.

Besides img/s (timed by the shared ``benchmarks.timing.interleaved``: rounds in shuffled order,
medians, CPU-time rates, per-round ratios to ``fp32``) it records how far each variant's features
move from fp32 (relative Frobenius error): bf16 is only worth using if it is both faster and within
~1e-2, which it is not (see ``feature_rel_error``), so inception_features stays fp32.

Run: ``python -m benchmarks.bench_inception [--batch 16] [--rounds 3]`` -> prints and writes
benchmarks/results/inception.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import interleaved, machine
from facegen.config import RuntimeConfig
from facegen.data.synthetic import render, sample_params
from facegen.evaluation.inception import PACKAGE, _forward, inception_features, load_network, network, weights_path
from facegen.runtime import BF16_CPU_FLAGS, cpu_flags, setup_runtime

RESULTS = Path(__file__).resolve().parent / "results" / "inception.json"


def faces(n: int) -> torch.Tensor:
    """(n, 3, 64, 64) procedural faces in [0, 1] (centre square of the half-resolution renders)."""
    x = torch.from_numpy(render(sample_params(0, n)).copy()).permute(0, 3, 1, 2).float() / 255
    return F.interpolate(x[:, :, 10:99, :], size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="images per forward pass")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1, help="batches per round and contender")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all available cores")
    args = ap.parse_args()
    setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=args.threads))
    script = load_network(weights_path())
    batch = faces(args.batch)
    flags = cpu_flags()
    bf16_ok = bool(flags & BF16_CPU_FLAGS)

    def variant(net: torch.nn.Module, channels_last: bool, bf16: bool = False):
        def step() -> torch.Tensor:
            with torch.inference_mode():
                return _forward(net, batch, channels_last=channels_last, bf16=bf16)
        return step

    contenders = {"fp32": variant(script, False), "fp32_channels_last": variant(script, True),
                  "folded_fp32_channels_last": lambda: inception_features(batch, batch_size=args.batch)}
    if bf16_ok:
        contenders["folded_bf16_channels_last"] = variant(network("cpu"), True, bf16=True)
    reference = variant(script, False)()
    rel_error = {name: float((step() - reference).norm() / reference.norm()) for name, step in contenders.items()}
    timing = interleaved(contenders, args.batch, warmup=1, rounds=args.rounds, steps=args.steps, baseline="fp32")
    result = {
        "what": "Inception-v3 pool3 features of 64x64 faces (quantise, resize to 299, forward)",
        "weights": PACKAGE, "batch": args.batch, "rounds": args.rounds, "steps_per_round": args.steps,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": machine(), "cpu_bf16_flags": sorted(flags & (BF16_CPU_FLAGS | {"amx_tile", "avx512f"})),
        "shipped": "folded_fp32_channels_last",
        "feature_rel_error_vs_fp32": {k: float(f"{v:.3g}") for k, v in rel_error.items()},
        "contenders": {name: {k: round(v, 3) for k, v in stats.items()} for name, stats in timing.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
