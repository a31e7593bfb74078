"""The whole default pipeline: wall time and peak memory of ``dvc repro`` from scratch.

Runs in a throw-away copy of the repository (never in the working tree: a repro there would race
other work and overwrite its outputs): code, params and DVC config are copied, while data, models,
MLflow stores, resumable state and the DVC cache are not, so every stage runs. The stages import
the facegen installed in this venv (with ``pip install -e``: the working tree's ``src/``), so do
not edit ``src/`` while it runs. Memory is sampled
every 0.2 s over the whole process tree (dvc, each stage's python, prepare's worker pool):
``peak_rss_tree_mb`` is the largest *sum* seen, ``peak_rss_process_mb`` the largest single process
(getrusage of the waited children, exact). Stage durations come from timestamping dvc's
"Running stage" lines. Slow (~15 min on 2 cores): run via ``python -m benchmarks --pipeline``.

``--precision fp32`` sets ``runtime.precision`` in the copy's params.yaml, so a bf16-capable CPU also
measures the fp32 path an AVX2-only CPU takes (same kernels family, not the same clock: the JSON
records the CPU and its flags). Results go to ``pipeline_<precision>.json``. With oneDNN capped to
AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``) an AVX-512 CPU runs an AVX2-only CPU's
kernels, and ``auto`` resolves to fp32 as it would there: ``pipeline_auto_avx2.json``.

Run: ``python -m benchmarks.bench_pipeline [--precision auto|fp32|bf16] [--keep] [--timeout-min M]``
-> benchmarks/results/pipeline_<precision>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.timing import machine

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
# Paths relative to the repository root that are outputs, stores or environments, not source.
NOT_COPIED = {".venv", "data", "models", "mlartifacts", ".facegen_state", ".dvc/cache", ".dvc/tmp", "reports",
              "metrics", "benchmarks/results", "benchmarks/results.json"}
NOT_COPIED_ANYWHERE = ("__pycache__", ".pytest_cache", "*.egg-info", "mlruns*")
STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def copy_repo(dest: Path) -> None:
    """The repository's tracked *and* untracked source (git included, so dvc works), minus outputs."""
    anywhere = shutil.ignore_patterns(*NOT_COPIED_ANYWHERE)

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(REPO)
        return set(anywhere(directory, names)) | {n for n in names if (rel / n).as_posix() in NOT_COPIED}

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True, dirs_exist_ok=True)


def set_precision(params: Path, precision: str) -> None:
    """Rewrite ``runtime.precision`` in a params.yaml copy, keeping its comments (one-line edit)."""
    text = params.read_text()
    new, count = re.subn(r"(?m)^(\s+precision:\s*)\S+", rf"\g<1>{precision}", text, count=1)
    if count != 1:
        raise SystemExit(f"{params}: no runtime.precision line to set")
    params.write_text(new)


def tree_rss_bytes(root_pid: int) -> int:
    """Sum of resident memory of a process and all its descendants (Linux /proc)."""
    total, stack, seen = 0, [root_pid], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):  # exited meanwhile, or a kernel thread
            continue
    return total


class PeakSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self.done = pid, every_s, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.done.wait(self.every_s)


def run_repro(workdir: Path, timeout_min: float | None) -> dict[str, object]:
    env = dict(os.environ)
    env.update({"FACEGEN_REPO_ROOT": str(workdir), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns.db'}",
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"})  # stages' `python` = this venv
    env.pop("RANK", None)
    dvc = shutil.which("dvc", path=env["PATH"]) or "dvc"
    start = time.perf_counter()
    proc = subprocess.Popen([dvc, "repro"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, start_new_session=True)  # its own group: killable as a whole
    sampler = PeakSampler(proc.pid)
    sampler.start()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout_min * 60, stop) if timeout_min else None
    if timer:
        timer.start()
    stages: dict[str, float] = {}
    current, since = None, start
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if match := STAGE_LINE.search(line):
            now = time.perf_counter()
            if current:
                stages[current] = round(now - since, 1)
            current, since = match.group(1), now
    code = proc.wait()
    seconds = time.perf_counter() - start
    if timer:
        timer.cancel()
    sampler.done.set()
    sampler.join()
    if current:
        stages[current] = round(time.perf_counter() - since, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, object] = {
        "returncode": code, "timed_out": timed_out.is_set(), "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 2),
        "peak_rss_tree_mb": round(sampler.peak / 2**20, 1),
        "peak_rss_process_mb": round(children.ru_maxrss / 1024, 1),  # Linux: KiB
        "stage_seconds": stages,
    }
    if code:
        result["output_tail"] = tail
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the temp copy (its path is printed)")
    ap.add_argument("--timeout-min", type=float, default=None,
                    help="kill the repro after this many minutes (stage times so far are still recorded)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="runtime.precision for the run (fp32: the path AVX2-only CPUs take)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="facegen-pipeline-"))
    try:
        copy_repo(workdir)
        set_precision(workdir / "params.yaml", args.precision)
        before = machine()
        result = {"machine": before, "precision": args.precision, **run_repro(workdir, args.timeout_min),
                  "machine_after": machine(), "workdir": str(workdir)}
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    # Under an ISA cap (ONEDNN_MAX_CPU_ISA=AVX2: an AVX2-only CPU's kernels) the run is a different
    # measurement, kept beside the uncapped one: pipeline_auto_avx2.json.
    cap = before["onednn_max_cpu_isa"]
    results = RESULTS_DIR / f"pipeline_{args.precision}{'_' + cap.lower() if cap else ''}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["returncode"] else 0)


if __name__ == "__main__":
    main()
