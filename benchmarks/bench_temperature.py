"""The VQ-VAE prior's sampling temperature, chosen on validation faces: Inception KID per temperature, JSON out.

``prior.temperature`` divides the PixelCNN's logits before each code is drawn; below 1 it trades
diversity for typical codes. Tuned against the *test* faces that evaluate@vqvae scores it on, it
would flatter the VQ-VAE's realism, so this picks it on the validation split instead, on the
screening seeds (``bench_defaults.SCREEN_SEEDS``), never on the evaluation seeds.

Per seed, in a throw-away copy of the repository (``bench_noise``'s runner: the stages' own commands,
the copy's ``src/``): ``prepare`` (once), ``train.py --family vqvae``, ``extract_codes``, ``fit_prior``
with the default ``params.yaml`` but that seed. Then, in this process: the first
``evaluate.inception_real`` validation faces' Inception features against ``evaluate.inception_samples``
prior samples at each temperature (the same uniforms and attribute rows at every temperature: one
generator seed), FID and KID as ``evaluate`` computes them. Writes
``benchmarks/results/temperature.json`` (rows and, per temperature, the mean KID over the seeds and
how many seeds it was the lowest on).

Run: ``python -m benchmarks.bench_temperature [--seeds 1234 1] [--temperatures 0.3 0.4 ... 1.0]``
(~10 min a seed on 2 idle Zen 4 cores).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_defaults import SCREEN_SEEDS, val_inception_features
from benchmarks.bench_noise import RUN_OUTPUTS, run_stage, set_params
from benchmarks.bench_pipeline import REPO, copy_repo
from benchmarks.timing import machine
from facegen import artifacts
from facegen.config import load_params
from facegen.data.dataset import load_split
from facegen.evaluation.inception import inception_features, inception_scores
from facegen.models.checkpoint import load_trained
from facegen.models.vqvae import VQVAE
from facegen.runtime import Runtime, eval_mode, setup_runtime

RESULTS = REPO / "benchmarks" / "results" / "temperature.json"
STAGES = (["train.py", "--family", "vqvae"], ["extract_codes.py"], ["fit_prior.py"])
SAMPLE_SEED = 6  # the offset sample_quality draws its samples with (EvalContext.generator(6))


def prior_samples(model: VQVAE, rt: Runtime, n: int, batch: int, temperature: float, seed: int) -> torch.Tensor:
    """``n`` VQ-VAE samples (N, 3, H, W) in [0, 1] at ``temperature``, from one generator seed, drawn as
    ``evaluate`` draws them (``sample_batch_size`` at a time, under the runtime's autocast)."""
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(model), rt.autocast(), torch.inference_mode():
        return torch.cat([model.decode_codes(model.prior.sample_codes(min(batch, n - i), generator,
                                                                       temperature=temperature)).float()
                          for i in range(0, n, batch)]).clamp(0, 1)


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per temperature: mean KID over the seeds and the number of seeds it had the lowest KID on."""
    temps = sorted({r["temperature"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    kid = {(r["seed"], r["temperature"]): r["kid_inception"] for r in rows}
    best = {s: min(temps, key=lambda t: kid[(s, t)]) for s in seeds}
    return {str(t): {"kid_inception_mean": float(np.mean([kid[(s, t)] for s in seeds])),
                     "lowest_on_seeds": sum(best[s] == t for s in seeds)} for t in temps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SCREEN_SEEDS), choices=SCREEN_SEEDS,
                    help="screening seeds (default: %(default)s)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    cfg = params.evaluate
    rt = setup_runtime(params.runtime)
    rows: list[dict[str, float]] = []
    workdir = Path(tempfile.mkdtemp(prefix="facegen-temperature-"))
    try:
        copy_repo(workdir)
        with open(REPO / "benchmarks" / "results" / "temperature.log", "a") as log:
            set_params(workdir, params.seed, "auto")
            run_stage(workdir, ["prepare.py"], log)  # the committed data, as bench_noise
            val = load_split(workdir / artifacts.PREPARED, "val", params.data.attributes)
            real = val_inception_features(val, cfg.inception_real, rt.device)
            for seed in args.seeds:
                for name in RUN_OUTPUTS:
                    shutil.rmtree(workdir / name, ignore_errors=True)
                set_params(workdir, seed, "auto")
                start = time.perf_counter()
                for argv in STAGES:
                    run_stage(workdir, list(argv), log)
                fit_seconds = time.perf_counter() - start
                model = load_trained("vqvae", rt.device, models_dir=workdir / "models")
                for temperature in args.temperatures:
                    fake = prior_samples(model, rt, cfg.inception_samples, cfg.sample_batch_size, temperature,
                                         seed + SAMPLE_SEED)
                    scores = inception_scores(real, inception_features(fake, device=rt.device),
                                              kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size,
                                              seed=seed)
                    rows.append({"seed": seed, "temperature": temperature, "fit_seconds": round(fit_seconds, 1),
                                 **scores})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {"command": "python -m benchmarks.bench_temperature " + " ".join(
               [f"--seeds {' '.join(map(str, args.seeds))}", f"--temperatures {' '.join(map(str, args.temperatures))}"]),
           "machine": machine(), "precision": rt.precision, "against": "validation faces",
           "committed_temperature": params.prior.temperature,
           "rows": rows, "by_temperature": summary(rows)}
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["by_temperature"], indent=1))


if __name__ == "__main__":
    main()
