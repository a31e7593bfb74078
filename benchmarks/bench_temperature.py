"""The VQ-VAE prior's sampling temperature, chosen on validation faces: realism and recall per temperature, JSON out.

``prior.temperature`` divides the PixelCNN's logits before each code is drawn; below 1 it trades
diversity for typical codes. Tuned against the *test* faces that evaluate@vqvae scores it on, it
would flatter the VQ-VAE's realism, so this picks it on the validation split instead, on the
screening seeds (``bench_defaults.SCREEN_SEEDS``), never on the evaluation seeds.

Per seed, in a throw-away copy of the repository (``bench_noise``'s runner: the stages' own commands,
the copy's ``src/``): ``prepare`` (once), ``train_classifier``, ``train.py --family vqvae``,
``extract_codes``, ``fit_prior`` with the default ``params.yaml`` but that seed. Then, in this
process, evaluate's own ``sample_quality`` analysis at each temperature with the validation split in
place of the test split (the first ``evaluate.inception_real`` validation faces' Inception features
as the reference): Inception FID/KID, and the attribute classifier's FID/KID with precision, recall,
density and coverage (Naeem et al. 2020), from the same uniforms at every temperature (one generator
seed, as evaluate draws them).

The choice (``choose``, fixed before the bench was run with recall): the temperature with the lowest
mean Inception KID among those that keep at least ``RECALL_KEPT`` of the as-trained prior's (T = 1)
mean classifier-feature recall. KID alone rewards ever colder sampling (typical codes) and cannot see
the diversity it costs at 256 samples; recall measures that diversity.

Writes ``benchmarks/results/temperature.json`` (rows, per temperature the means over the seeds and
the number of seeds it had the lowest KID on, and the choice).

Run: ``python -m benchmarks.bench_temperature [--seeds 1234 1] [--temperatures 0.1 0.2 ... 1.0]``
(~12 min a seed on 2 idle AMD Zen 4 or Zen 5 cores).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_defaults import SCREEN_SEEDS, val_inception_features
from benchmarks.bench_noise import RUN_OUTPUTS, run_stage, set_params
from benchmarks.bench_pipeline import REPO, copy_repo
from benchmarks.timing import machine
from facegen import artifacts
from facegen.config import load_params
from facegen.data.dataset import load_split
from facegen.evaluation.analyses import sample_quality
from facegen.models.checkpoint import load_trained
from facegen.models.vqvae import VQVAE
from facegen.pipeline.evaluate import eval_context
from facegen.runtime import setup_runtime

RESULTS = REPO / "benchmarks" / "results" / "temperature.json"
STAGES = (["train_classifier.py"], ["train.py", "--family", "vqvae"], ["extract_codes.py"], ["fit_prior.py"])
RECALL_KEPT = 0.9  # the share of the as-trained prior's recall a chosen temperature must keep
MEANS = ("kid_inception", "fid_inception", "kid_facegen", "fid_facegen", "precision", "recall", "density", "coverage")


def at_temperature(model: VQVAE, temperature: float) -> None:
    """Make ``model``'s prior sample at ``temperature`` (in place: the config is swapped, no weights move)."""
    model.prior.cfg = dataclasses.replace(model.prior.cfg, temperature=temperature)


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per temperature: each metric of ``MEANS`` the rows have, averaged over the seeds, and the number of
    seeds it had the lowest Inception KID on."""
    temps = sorted({r["temperature"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    row = {(r["seed"], r["temperature"]): r for r in rows}
    best = {s: min(temps, key=lambda t: row[(s, t)]["kid_inception"]) for s in seeds}
    return {str(t): {**{f"{m}_mean": float(np.mean([row[(s, t)][m] for s in seeds])) for m in MEANS if m in rows[0]},
                     "lowest_on_seeds": sum(best[s] == t for s in seeds)} for t in temps}


def choose(by_temperature: dict[str, dict[str, float]]) -> float:
    """The lowest mean Inception KID among the temperatures keeping ``RECALL_KEPT`` of T = 1's mean recall.

    Raises KeyError when the grid lacks T = 1 (the as-trained prior is the yardstick)."""
    floor = RECALL_KEPT * by_temperature["1.0"]["recall_mean"]
    kept = {t: s for t, s in by_temperature.items() if s["recall_mean"] >= floor}
    return float(min(kept, key=lambda t: kept[t]["kid_inception_mean"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SCREEN_SEEDS), choices=SCREEN_SEEDS,
                    help="screening seeds (default: %(default)s)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    args = ap.parse_args()
    if 1.0 not in args.temperatures:
        ap.error("--temperatures must include 1.0: the choice keeps a share of the as-trained prior's recall")
    params = load_params(REPO / "params.yaml")
    rt = setup_runtime(params.runtime)
    rows: list[dict[str, float]] = []
    workdir = Path(tempfile.mkdtemp(prefix="facegen-temperature-"))
    try:
        copy_repo(workdir)
        with open(REPO / "benchmarks" / "results" / "temperature.log", "a") as log, contextlib.chdir(workdir):
            set_params(workdir, params.seed, "auto")
            run_stage(workdir, ["prepare.py"], log)  # the committed data, as bench_noise
            splits = tuple(load_split(artifacts.PREPARED, s, params.data.attributes) for s in ("train", "val", "test"))
            real = val_inception_features(splits[1], params.evaluate.inception_real, rt.device)
            for seed in args.seeds:
                for name in RUN_OUTPUTS:
                    shutil.rmtree(workdir / name, ignore_errors=True)
                set_params(workdir, seed, "auto")
                start = time.perf_counter()
                for argv in STAGES:
                    run_stage(workdir, list(argv), log)
                fit_seconds = time.perf_counter() - start
                model = load_trained("vqvae", rt.device)
                # the validation split where evaluate sees the test split; reports go to the throw-away copy
                ctx = eval_context(dataclasses.replace(params, seed=seed), "vqvae", model, rt,
                                   workdir / "reports" / "temperature", splits=(splits[0], splits[1], splits[1]))
                ctx.inception_reference = real
                for temperature in args.temperatures:
                    at_temperature(model, temperature)
                    scores = sample_quality(ctx)
                    rows.append({"seed": seed, "temperature": temperature, "fit_seconds": round(fit_seconds, 1),
                                 **{k: v for k, v in scores.items() if k != "sampling_temperature"}})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_temperature = summary(rows)
    doc = {"command": "python -m benchmarks.bench_temperature " + " ".join(
               [f"--seeds {' '.join(map(str, args.seeds))}", f"--temperatures {' '.join(map(str, args.temperatures))}"]),
           "machine": machine(), "precision": rt.precision, "against": "validation faces",
           "committed_temperature": params.prior.temperature, "recall_kept": RECALL_KEPT,
           "rows": rows, "by_temperature": by_temperature, "chosen": choose(by_temperature)}
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["by_temperature"], indent=1), f"\nchosen: {doc['chosen']}")


if __name__ == "__main__":
    main()
