"""Run-to-run spread of every metric of the default pipeline: seeds x precision -> ``metrics_noise.json``.

The CI metric gate and the report's tie rule need to know how far a metric moves when nothing but
the arithmetic changes: a rerun on another CPU kind (fp32 on AVX2-only CPUs, bf16 autocast on
AVX-512 BF16 / AMX ones) drifts like a new seed, and an adversarial game does so most. So this
script trains and evaluates every family of the default ``params.yaml``

- once per seed in ``--seeds`` (default: the committed ``seed`` and the next three) at
  ``runtime.precision: auto`` (what a plain ``dvc repro`` picks on this machine), and
- once per seed in ``--other-seeds`` (default: the committed seed and the next two) in the *other*
  precision (fp32 where ``auto`` is bf16, forced bf16 autocast where ``auto`` is fp32: it runs on
  any CPU, only slower),

The seeds are evaluation seeds: the defaults were screened on others (``bench_defaults`` uses
``SCREEN_SEEDS``; docs/defaults.md), so the recorded runs do not flatter the defaults.

on one prepared dataset (``prepare`` runs once with the committed seed: the data is an input of
the comparison, not part of its noise), then writes per ``<file>:<metric>`` every run's value and
their mean, standard deviation (n-1), min, max and n, with the command, the machine, the committed
run's seed, precision and machine kind, and the params fingerprint in the header
(``facegen.comparison.noise``). It runs in a throw-away copy of the repository (like ``bench_pipeline``), the
stages one after another with the same commands ``dvc.yaml`` uses, importing the copy's ``src/``.
Seven runs: ~2 h on 2 idle cores (a Xeon with AMX: 13–19 min per bf16 run, 20–25 min for fp32); partial
results are kept after each run in ``benchmarks/results/noise_runs.json``, and ``--resume``
continues from them.

Run: ``python -m benchmarks.bench_noise [--seeds 101 102 103 104] [--other-seeds 101 102 103] [--workspace-run]``
or ``python -m benchmarks.bench_noise --families vqvae [--resume]``
(seven runs: the gate's band narrows with every run, ``facegen.comparison.bands``)

``--workspace-run`` records the committed-seed auto run from this checkout's own ``dvc repro``
outputs (``metrics/*.json``, which ``dvc.lock`` pins) instead of repeating it in the copy: the
same stages, params and machine, so the same numbers (runs are deterministic), one run less.

``--families F [F ...]`` re-records only those families' metric files in every recorded run, after a
change that only their stages read (e.g. ``prior.temperature``: fit_prior, and evaluate@vqvae after
it). It refuses unless every param changed since the recording (``metrics_noise.json``'s ``params``
against params.yaml, ``comparison.noise.changed_params``) is read only by the families' own stages in
dvc.yaml (``train@F``, ``evaluate@F`` and what lies between, e.g. extract_codes and fit_prior; the
report aside), and per run it reruns the stages evaluate@F needs (the classifier and the Inception
reference too: they are per seed) with the run's seed and precision. A run whose shared metric files
(``classifier.json``, ``reference.json``) do not come out byte for byte as recorded stops it: this
machine would not reproduce the other families' runs, so the record would mix machines. The
committed run is taken from the workspace's ``dvc repro`` (``dvc repro`` it first). About a quarter
of a full record per family (vqvae: 42 min for the 7 runs on 2 Zen 5 cores).

``--summarise`` (no training) rewrites ``metrics_noise.json`` from the runs recorded so far (e.g. those
copied from another checkout's bench). ``--check`` (no training) replays what CI on another machine does, from the recorded runs: it
gates every recorded run against the committed metrics with bands from the *other* runs
(leave-one-out: the run under test does not widen its own bands; ``ci.metric_gate.leave_one_out``),
and exits non-zero if any of them fails.
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
from facegen.comparison.noise import NOISE_FILE, changed_params, fingerprint, recorded_params, summarise
from facegen.config import load_params
from facegen.errors import FacegenError
from facegen.runtime import BF16_CPU_FLAGS, cpu_flags, machine_kind

# The stages run in this venv: a run's bytes can depend on the torch build (kernels), so each records it.
TORCH = torch.__version__

RUNS_FILE = REPO / "benchmarks" / "results" / "noise_runs.json"
FAMILIES = ("vae", "beta_vae", "vqvae", "dcgan")
# dvc.yaml's stages after prepare, in an order that respects its DAG (report only reads metrics).
STAGES = (["train_classifier.py"], ["reference.py"], *(["train.py", "--family", f] for f in FAMILIES), ["extract_codes.py"],
          ["fit_prior.py"], *(["evaluate.py", "--family", f] for f in FAMILIES))
# A run's metric files that every family's evaluate stage needs: a re-record must reproduce them exactly.
SHARED_FILES = ("classifier.json", "reference.json")
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


def one_run(workdir: Path, seed: int, precision: str, resolved: str, log,  # noqa: ANN001
            stages: tuple[list[str], ...] = STAGES) -> dict[str, object]:
    for name in RUN_OUTPUTS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    set_params(workdir, seed, precision)
    start = time.perf_counter()
    # Stage times make each run a pipeline timing too (every stage but prepare, without dvc's own overhead).
    stage_seconds = {" ".join(argv): round(run_stage(workdir, list(argv), log), 1) for argv in stages}
    metrics = {}
    for family_file in sorted((workdir / "metrics").glob("*.json")):
        metrics[family_file.name] = json.loads(family_file.read_text())
    return {"seed": seed, "precision": resolved, "torch": TORCH, "seconds": round(time.perf_counter() - start, 1),
            "stage_seconds": stage_seconds,
            # the largest stage process so far in this bench (Linux ru_maxrss: KiB; never decreases)
            "peak_rss_process_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "metrics": metrics}


def stage_name(argv: list[str]) -> str:
    """dvc.yaml's name of the stage ``argv`` runs: ``["train.py", "--family", "vqvae"]`` -> ``train@vqvae``."""
    return argv[0].removesuffix(".py") + (f"@{argv[2]}" if len(argv) > 2 else "")


def _closure(graph, start, step) -> set:  # noqa: ANN001 - dvc's networkx graph and its nodes
    """Every node reachable from ``start`` by repeating ``step`` (``graph.successors``: what it depends on)."""
    seen, todo = set(), [start]
    while todo:
        for node in step(todo.pop()):
            if node not in seen:
                seen.add(node)
                todo.append(node)
    return seen


def family_stages(families: list[str], repo: Path = REPO) -> tuple[set[str], set[str], dict[str, list[str]]]:
    """From dvc.yaml: the stages only ``families``' metrics depend on (``train@F``, ``evaluate@F`` and
    every stage between them), the stages their evaluate stages need (prepare aside: the runs share the
    data) and every stage's params (``{"fit_prior": ["seed", "runtime", "prior", ...]}``)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        graph = dvc.index.graph  # an edge points from a stage to a stage it depends on
        by_name = {stage.addressing: stage for stage in graph}
        own: set[str] = set()
        needed: set[str] = set()
        for family in families:
            train, evaluate = by_name[f"train@{family}"], by_name[f"evaluate@{family}"]
            upstream = _closure(graph, evaluate, graph.successors)
            between = upstream & _closure(graph, train, graph.predecessors)
            own |= {s.addressing for s in between} | {train.addressing, evaluate.addressing}
            needed |= {s.addressing for s in upstream} | {evaluate.addressing}
        params = {name: [p for dep in stage.deps for p in getattr(dep, "params", None) or []]
                  for name, stage in by_name.items()}
    return own, needed - {"prepare"}, params


def workspace_behind(families: list[str], repo: Path = REPO) -> list[str]:
    """The stages evaluate@F (for F in ``families``) depends on that ``dvc repro`` would rerun in ``repo``."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        return sorted(dvc.status(targets=[f"evaluate@{f}" for f in families], with_deps=True))


def readers(key: str, params: dict[str, list[str]]) -> set[str]:
    """The stages whose dvc.yaml params cover the dotted ``key`` (a section, the key, or a key inside it)."""
    return {stage for stage, keys in params.items()
            if any(key == p or key.startswith(p + ".") or p.startswith(key + ".") for p in keys)}


def check() -> int:
    """Gate every recorded run against the committed metrics, bands from the other runs (leave-one-out)."""
    from facegen.ci.metric_gate import leave_one_out
    from facegen.comparison.noise import load_noise
    from facegen.comparison.specs import load_specs

    try:
        checked = leave_one_out(load_noise(REPO / NOISE_FILE), load_specs(REPO / "metrics_tolerances.yaml"))
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for run, verdict in checked:
        bad = [c.key for c in verdict.regressions + verdict.unmeasured]
        print(f"seed {run['seed']} {run['precision']}: {'FAILED ' + ', '.join(bad) if bad else 'passes'} "
              f"({len(verdict.passed)} gated metrics within bands from the other runs)")
        failed |= bool(bad)
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds at precision auto (default: "
                    "params.yaml's seed and the next three)")
    ap.add_argument("--other-seeds", type=int, nargs="+", default=None, help="seeds of the other-precision runs "
                    "(default: params.yaml's seed and the next two)")
    ap.add_argument("--resume", action="store_true", help=f"keep the runs already in {RUNS_FILE.name}")
    ap.add_argument("--workspace-run", action="store_true",
                    help="take the committed-seed auto run from this checkout's dvc repro outputs (metrics/*.json)")
    ap.add_argument("--check", action="store_true",
                    help="no training: gate every recorded run against the committed metrics (leave-one-out bands)")
    ap.add_argument("--summarise", action="store_true",
                    help=f"no training: rewrite {NOISE_FILE} from the runs recorded in {RUNS_FILE.name}")
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=None,
                    help="re-record only these families' metric files in every recorded run (module docstring)")
    args = ap.parse_args()
    if args.check:
        sys.exit(check())
    if args.families:
        rerecord(args.families, args.resume)
        return
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    committed_seed = committed["seed"]
    seeds = args.seeds or [committed_seed + i for i in range(4)]
    kind = machine_kind("auto")
    auto = kind["precision"]  # what precision auto resolves to here (machine_kind resolved it)
    other = "fp32" if auto == "bf16" else "bf16"
    plan = [(s, "auto") for s in seeds] + [(s, other) for s in args.other_seeds or [committed_seed + i for i in range(3)]]
    resumed = json.loads(RUNS_FILE.read_text()) if (args.resume or args.summarise) and RUNS_FILE.is_file() else {}
    runs: list[dict[str, object]] = resumed.get("runs", [])
    if args.workspace_run and not any(r["seed"] == committed["seed"] and r["precision"] == auto for r in runs):
        runs.append({"seed": committed["seed"], "precision": auto, "torch": TORCH, "seconds": None,
                     "source": "workspace dvc repro",
                     "metrics": {f.name: json.loads(f.read_text()) for f in sorted((REPO / "metrics").glob("*.json"))
                                 if f.name != "summary.json"}})
    # a resumed bench keeps the header of the bench it continues (its command and start)
    header = {k: resumed[k] for k in ("command", "machine", "started") if k in resumed} or {
        "command": shlex.join(["python", "-m", "benchmarks.bench_noise", *sys.argv[1:]]),
        "machine": {**machine(), "bf16_flags": sorted(cpu_flags() & BF16_CPU_FLAGS), "auto_precision": auto,
                    "kind": kind},
        "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    todo = [(seed, precision, auto if precision == "auto" else precision) for seed, precision in plan]
    todo = [] if args.summarise else [t for t in todo if not any(r["seed"] == t[0] and r["precision"] == t[2]
                                                                 for r in runs)]
    workdir = Path(tempfile.mkdtemp(prefix="facegen-noise-"))
    log_path = REPO / "benchmarks" / "results" / "noise.log"
    try:
        if todo:
            copy_repo(workdir)
        with open(log_path, "a") as log:
            if todo:
                set_params(workdir, committed["seed"], "auto")
                run_stage(workdir, ["prepare.py"], log)  # the committed data, once
            for seed, precision, resolved in todo:
                print(f"run: seed {seed}, precision {resolved}", flush=True)
                runs.append(one_run(workdir, seed, precision, resolved, log))
                RUNS_FILE.write_text(json.dumps({**header, "runs": runs}, indent=1) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # the kind of the machine the runs were measured on (this one, for a bench recorded before kinds were)
    write_noise(header, runs, {"seed": committed_seed, "precision": auto,
                               "kind": header["machine"].get("kind") or machine_kind("auto")})


def write_noise(header: dict[str, object], runs: list[dict[str, object]], committed: dict[str, object]) -> None:
    """``metrics_noise.json`` from ``runs`` (each with its metrics) for the params in params.yaml now."""
    params = load_params(REPO / "params.yaml")
    doc = {**header, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "params_fingerprint": fingerprint(params),
           "params": recorded_params(params),  # what --families compares params.yaml with
           "committed": committed,
           "stale": {},
           "runs": [{k: r[k] for k in ("seed", "precision", "torch", "seconds", "stage_seconds", "peak_rss_process_mb",
                                       "source", "rerecorded")
                     if k in r} for r in runs],
           "metrics": summarise([r["metrics"] for r in runs])}
    (REPO / NOISE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {NOISE_FILE} ({len(doc['metrics'])} metrics, {len(runs)} runs)")


def rerecord(families: list[str], resume: bool) -> None:
    """Replace ``families``' metric files in every recorded run (``--families``; module docstring)."""
    noise = json.loads((REPO / NOISE_FILE).read_text())
    if "params" not in noise:
        raise SystemExit(f"{NOISE_FILE} records no params to compare with: rerun every family (bench_noise)")
    params = load_params(REPO / "params.yaml")
    changed = changed_params(noise["params"], recorded_params(params))
    own, needed, stage_params = family_stages(families)
    for key in changed:
        if others := readers(key, stage_params) - own - {"report"}:
            raise SystemExit(f"{key} changed since the runs were recorded and stages of other families read it "
                             f"({', '.join(sorted(others))}): rerun every family (python -m benchmarks.bench_noise)")
    recorded = json.loads(RUNS_FILE.read_text())
    runs: list[dict[str, object]] = recorded["runs"]
    if any(r.get("source") == "workspace dvc repro" for r in runs) and (behind := workspace_behind(families)):
        raise SystemExit(f"the committed run comes from this checkout's outputs, and dvc repro would rerun "
                         f"{', '.join(behind)}: run dvc repro first")
    stages = tuple(argv for argv in STAGES if stage_name(list(argv)) in needed)
    files = [f"{family}.json" for family in families]
    mark = {"families": sorted(families), "params_fingerprint": fingerprint(params), "changed": changed,
            "kind": machine_kind("auto")}
    auto = mark["kind"]["precision"]  # what precision auto resolves to here (machine_kind resolved it)
    print(f"re-recording {', '.join(files)} in {len(runs)} runs (changed: {', '.join(changed) or 'no params'}; "
          f"stages: {', '.join(stage_name(list(a)) for a in stages)})", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="facegen-noise-"))
    try:
        copy_repo(workdir)
        with open(REPO / "benchmarks" / "results" / "noise.log", "a") as log:
            set_params(workdir, noise["committed"]["seed"], "auto")
            run_stage(workdir, ["prepare.py"], log)  # the committed data, once
            for run in runs:
                if resume and {k: v for k, v in run.get("rerecorded", {}).items() if k != "at"} == mark:
                    continue
                print(f"run: seed {run['seed']}, precision {run['precision']}", flush=True)
                if run.get("source") == "workspace dvc repro":  # the committed run: this checkout's own outputs
                    new = {f.name: json.loads(f.read_text()) for f in (REPO / "metrics").glob("*.json")}
                else:
                    precision = "auto" if run["precision"] == auto else str(run["precision"])
                    new = one_run(workdir, int(run["seed"]), precision, str(run["precision"]), log, stages)["metrics"]
                for shared in SHARED_FILES:
                    if new[shared] != run["metrics"][shared]:
                        raise SystemExit(f"seed {run['seed']} {run['precision']}: {shared} differs from the recorded "
                                         "run's; this machine does not reproduce the recorded runs: rerun every family")
                for f in files:  # what moved, so a re-record that should touch a few metrics shows it did
                    moved = sorted(k for k in new[f].keys() | run["metrics"][f].keys()
                                   if new[f].get(k) != run["metrics"][f].get(k))
                    print(f"  {f}: {len(moved)} metrics changed ({', '.join(moved)})", flush=True)
                run["metrics"].update({f: new[f] for f in files})
                run["rerecorded"] = {**mark, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
                RUNS_FILE.write_text(json.dumps(recorded, indent=1) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = {k: noise[k] for k in ("command", "machine", "started")}
    header["rerecords"] = [*noise.get("rerecords", []), {
        "command": shlex.join(["python", "-m", "benchmarks.bench_noise", *sys.argv[1:]]), "machine": machine(),
        **{k: mark[k] for k in ("families", "changed", "kind")}, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}]
    write_noise(header, runs, noise["committed"])


if __name__ == "__main__":
    main()
