"""Run-to-run spread of every metric of the default pipeline: seeds x precision -> ``metrics_noise.json``.

The CI metric gate and the report's tie rule need to know how far a metric moves when nothing but
the arithmetic changes: a rerun on another CPU kind (fp32 on AVX2-only CPUs, bf16 autocast on
AVX-512 BF16 / AMX ones) drifts like a new seed, and an adversarial game does so most. So this
script trains and evaluates every family of the default ``params.yaml``

- once per seed in ``--seeds`` (default: the committed ``seed``, 1, 2 and 3) at ``runtime.precision: auto``
  (what a plain ``dvc repro`` picks on this machine), and
- once per seed in ``--other-seeds`` (default: the committed seed, 1 and 2) in the *other* precision (fp32
  where ``auto`` is bf16, forced bf16 autocast where ``auto`` is fp32: it runs on any CPU, only
  slower),

on one prepared dataset (``prepare`` runs once with the committed seed: the data is an input of
the comparison, not part of its noise), then writes per ``<file>:<metric>`` the mean, standard
deviation (n-1), min, max and n over all runs, with the per-run values and the command and machine
in the header. It runs in a throw-away copy of the repository (like ``bench_pipeline``), the
stages one after another with the same commands ``dvc.yaml`` uses, importing the copy's ``src/``.
Seven runs: ~2 h on 2 idle cores (a Xeon with AMX: 13–19 min per bf16 run, 20–25 min for fp32); partial
results are kept after each run in ``benchmarks/results/noise_runs.json``, and ``--resume``
continues from them.

Run: ``python -m benchmarks.bench_noise [--seeds 1234 1 2 3] [--other-seeds 1234 1 2] [--workspace-run]``
(seven runs: the gate's band narrows with every run, ``facegen.evaluation.noise``)

``--workspace-run`` records the committed-seed auto run from this checkout's own ``dvc repro``
outputs (``metrics/*.json``, which ``dvc.lock`` pins) instead of repeating it in the copy: the
same stages, params and machine, so the same numbers (runs are deterministic), one run less.

``--check-other-precision`` (no training) replays what CI on the other CPU kind does, from the
recorded runs: it gates each other-precision run's metrics against the committed-seed auto run,
with bands measured from all the other runs (leave-one-out: the run under test does not widen its
own bands), and exits non-zero if any of them fails.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.bench_pipeline import REPO, copy_repo
from benchmarks.timing import machine
from facegen.evaluation.noise import NOISE_FILE, summarise
from facegen.runtime import BF16_CPU_FLAGS, cpu_flags

# The stages run in this venv: a run's bytes can depend on the torch build (kernels), so each records it.
TORCH = torch.__version__

RUNS_FILE = REPO / "benchmarks" / "results" / "noise_runs.json"
FAMILIES = ("vae", "beta_vae", "vqvae", "dcgan")
# dvc.yaml's stages after prepare, in an order that respects its DAG (report only reads metrics).
STAGES = (["train_classifier.py"], ["reference.py"], *(["train.py", "--family", f] for f in FAMILIES), ["extract_codes.py"],
          ["fit_prior.py"], *(["evaluate.py", "--family", f] for f in FAMILIES))
# What a run writes and the next run must not see (resumable state would resume the previous run).
RUN_OUTPUTS = ("models", "metrics", "reports", "data/codes", ".facegen_state")


def set_params(workdir: Path, seed: int, precision: str) -> None:
    path = workdir / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["seed"] = seed
    params["runtime"]["precision"] = precision
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # PYTHONPATH: the copy's own src/ shadows the editable install (the working tree, which may change
    # during the ~45 min this runs).
    env.update({"FACEGEN_REPO_ROOT": str(workdir), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns.db'}",
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}", "PYTHONPATH": str(workdir / "src")})
    env.pop("RANK", None)
    return env


def run_stage(workdir: Path, argv: list[str], log) -> float:  # noqa: ANN001 - an open text file
    """Run one stage script; return its wall seconds (Python start-up and MLflow included)."""
    cmd = [sys.executable, f"stages/{argv[0]}", *argv[1:]]
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, env=stage_env(workdir), stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"stage {shlex.join(argv)} failed (exit {done.returncode}); see {log.name}")
    return time.perf_counter() - start


def one_run(workdir: Path, seed: int, precision: str, resolved: str, log) -> dict[str, object]:  # noqa: ANN001
    for name in RUN_OUTPUTS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    set_params(workdir, seed, precision)
    start = time.perf_counter()
    # Stage times make each run a pipeline timing too (every stage but prepare, without dvc's own overhead).
    stage_seconds = {" ".join(argv): round(run_stage(workdir, list(argv), log), 1) for argv in STAGES}
    metrics = {}
    for family_file in sorted((workdir / "metrics").glob("*.json")):
        metrics[family_file.name] = json.loads(family_file.read_text())
    return {"seed": seed, "precision": resolved, "torch": TORCH, "seconds": round(time.perf_counter() - start, 1),
            "stage_seconds": stage_seconds,
            # the largest stage process so far in this bench (Linux ru_maxrss: KiB; never decreases)
            "peak_rss_process_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "metrics": metrics}


def check_other_precision(committed_seed: int) -> int:
    """Gate each other-precision run against the committed-seed auto run; bands from the remaining runs."""
    from facegen.ci.metric_gate import main as gate_main

    doc = json.loads(RUNS_FILE.read_text())
    auto = doc["machine"]["auto_precision"]
    base = next(r for r in doc["runs"] if r["precision"] == auto and r["seed"] == committed_seed)
    failed = 0
    for other in (r for r in doc["runs"] if r["precision"] != auto):
        rest = [r for r in doc["runs"] if r is not other]
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {}
            for name, run in (("committed", base), ("other", other)):
                dirs[name] = Path(tmp) / name
                dirs[name].mkdir()
                for file, metrics in run["metrics"].items():
                    (dirs[name] / file).write_text(json.dumps(metrics))
            noise = Path(tmp) / "noise.json"
            noise.write_text(json.dumps({"metrics": summarise([r["metrics"] for r in rest])}))
            print(f"gate: seed {other['seed']} {other['precision']} vs seed {base['seed']} {base['precision']}, "
                  f"bands from the other {len(rest)} runs")
            failed |= gate_main(["--metrics-dir", str(dirs["other"]), "--baseline-dir", str(dirs["committed"]),
                                 "--noise", str(noise), "--specs", str(REPO / "metrics_tolerances.yaml")])
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds at precision auto (default: "
                    "params.yaml's seed, then 1, 2 and 3)")
    ap.add_argument("--other-seeds", type=int, nargs="+", default=None, help="seeds of the other-precision runs "
                    "(default: params.yaml's seed, then 1 and 2)")
    ap.add_argument("--resume", action="store_true", help=f"keep the runs already in {RUNS_FILE.name}")
    ap.add_argument("--workspace-run", action="store_true",
                    help="take the committed-seed auto run from this checkout's dvc repro outputs (metrics/*.json)")
    ap.add_argument("--check-other-precision", action="store_true",
                    help="no training: gate each recorded other-precision run (leave-one-out bands)")
    args = ap.parse_args()
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    if args.check_other_precision:
        sys.exit(check_other_precision(committed["seed"]))
    seeds = args.seeds or [committed["seed"], 1, 2, 3]
    auto = "bf16" if cpu_flags() & BF16_CPU_FLAGS else "fp32"
    other = "fp32" if auto == "bf16" else "bf16"
    plan = [(s, "auto") for s in seeds] + [(s, other) for s in args.other_seeds or [committed["seed"], 1, 2]]
    runs: list[dict[str, object]] = json.loads(RUNS_FILE.read_text())["runs"] if args.resume and \
        RUNS_FILE.is_file() else []
    if args.workspace_run and not any(r["seed"] == committed["seed"] and r["precision"] == auto for r in runs):
        runs.append({"seed": committed["seed"], "precision": auto, "torch": TORCH, "seconds": None,
                     "source": "workspace dvc repro",
                     "metrics": {f.name: json.loads(f.read_text()) for f in sorted((REPO / "metrics").glob("*.json"))
                                 if f.name != "summary.json"}})
    header = {"command": shlex.join(["python", "-m", "benchmarks.bench_noise", *sys.argv[1:]]),
              "machine": {**machine(), "bf16_flags": sorted(cpu_flags() & BF16_CPU_FLAGS), "auto_precision": auto},
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    workdir = Path(tempfile.mkdtemp(prefix="facegen-noise-"))
    log_path = REPO / "benchmarks" / "results" / "noise.log"
    try:
        copy_repo(workdir)
        with open(log_path, "a") as log:
            set_params(workdir, committed["seed"], "auto")
            run_stage(workdir, ["prepare.py"], log)  # the committed data, once
            for seed, precision in plan:
                resolved = auto if precision == "auto" else precision
                if any(r["seed"] == seed and r["precision"] == resolved for r in runs):
                    continue
                print(f"run: seed {seed}, precision {resolved}", flush=True)
                runs.append(one_run(workdir, seed, precision, resolved, log))
                RUNS_FILE.write_text(json.dumps({**header, "runs": runs}, indent=1) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {**header, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "runs": [{k: r[k] for k in ("seed", "precision", "torch", "seconds", "stage_seconds", "peak_rss_process_mb",
                                       "source")
                     if k in r} for r in runs],
           "metrics": summarise([r["metrics"] for r in runs])}
    (REPO / NOISE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {NOISE_FILE} ({len(doc['metrics'])} metrics, {len(runs)} runs)")


if __name__ == "__main__":
    main()
