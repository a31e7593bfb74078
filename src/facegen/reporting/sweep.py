"""Parameter sweeps (the β sweep) from DVC experiments, and the report's sweep figure.

Recipe (documented in docs and tested on a synthetic ``dvc exp show --json`` document)::

    for b in 1 2 4 8 16; do dvc exp run --queue -S models.beta_vae.beta=$b; done
    dvc exp run --run-all                     # trains + evaluates beta_vae once per β
    dvc exp show                              # the table, one row per experiment
    python -m facegen.reporting.sweep         # -> sweeps/beta_vae.json (commit it)
    dvc repro report                          # the report now has the rate–distortion / MIG-vs-β plot
    python -m facegen.pipeline.sweep          # the grids of every β into one MLflow run, step = β

``sweeps/<family>.json`` is a small committed file (``points`` is empty until a sweep is
collected) and a dependency of the ``report`` stage, so collecting a sweep re-renders the report.
Reading experiments from ``dvc exp show --json`` rather than MLflow keeps the sweep tied to what DVC
actually ran (params and metrics of the same commit), and works without a tracking server.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

from facegen.artifacts import write_text
from facegen.errors import FacegenError
from facegen.reporting.grids import plt, save_figure

SWEEPS = Path("sweeps")
RATE, DISTORTION = "test_kl", "recon_mse"
DISENTANGLEMENT = ("mig", "dci_disentanglement", "sap")


def _states(node: Any) -> Iterator[dict[str, Any]]:
    """Every experiment state in ``dvc exp show --json`` output (baselines and their experiments)."""
    if isinstance(node, list):
        for item in node:
            yield from _states(item)
    elif isinstance(node, dict):
        if isinstance(node.get("data"), dict) and "rev" in node:
            yield node
        for exp_range in node.get("experiments") or []:
            yield from _states(exp_range.get("revs", []))


def _lookup(tree: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def sweep_points(exp_show: Any, family: str, param: str) -> list[dict[str, Any]]:
    """``[{"value": β, "name": exp, "rev": commit, "metrics": {...}}]`` sorted by value; the newest run per
    value wins. ``rev`` is the experiment's commit (``workspace`` for the workspace), where its outputs,
    e.g. the grids ``python -m facegen.pipeline.sweep`` logs to MLflow, are read from."""
    latest: dict[float, tuple[str, dict[str, Any]]] = {}
    metrics_file = f"metrics/{family}.json"
    for state in _states(exp_show):
        data = state["data"]
        value = _lookup((data.get("params") or {}).get("params.yaml", {}).get("data"), param)
        metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
        if not isinstance(value, (int, float)) or not isinstance(metrics, dict) or not metrics:
            continue
        stamp = str(data.get("timestamp") or "")
        if value not in latest or stamp >= latest[value][0]:
            numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            latest[float(value)] = (stamp, {"value": float(value), "name": state.get("name") or state["rev"][:7],
                                            "rev": state["rev"], "metrics": numeric})
    return [latest[v][1] for v in sorted(latest)]


def load_sweeps(directory: Path = SWEEPS) -> list[dict[str, Any]]:
    """Every ``sweeps/*.json`` document (family, param, points), in name order."""
    if not directory.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def plot_sweep(sweep: dict[str, Any], path: Path) -> Path | None:
    """Rate–distortion (KL vs MSE, labelled by value) and disentanglement vs the swept value.

    None when fewer than two values were run: one point is not a sweep.
    """
    points = sweep["points"]
    if len(points) < 2:
        return None
    name = sweep["param"].rsplit(".", 1)[-1]
    values = [p["value"] for p in points]
    panels = []
    if all(RATE in p["metrics"] and DISTORTION in p["metrics"] for p in points):
        panels.append("rd")
    shown = [m for m in DISENTANGLEMENT if all(m in p["metrics"] for p in points)]
    if shown:
        panels.append("dis")
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "rd":
            rate = [p["metrics"][RATE] for p in points]
            dist = [p["metrics"][DISTORTION] for p in points]
            ax.plot(rate, dist, marker="o")
            for r, d, v in zip(rate, dist, values):
                ax.annotate(f"{name}={v:g}", (r, d), textcoords="offset points", xytext=(4, 4), fontsize=7)
            ax.set_xlabel("rate: test KL (nats)")
            ax.set_ylabel("distortion: reconstruction MSE")
            ax.set_title("rate–distortion")
        else:
            for metric in shown:
                ax.plot(values, [p["metrics"][metric] for p in points], marker="o", label=metric)
            if min(values) > 0 and max(values) / min(values) > 8:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(name)
            ax.set_title(f"disentanglement vs {name}")
            ax.legend(fontsize=7)
    fig.suptitle(f"{sweep['family']}: sweep of {sweep['param']} ({len(points)} runs)")
    return save_figure(fig, path)


def _exp_show_json() -> Any:
    try:
        out = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise FacegenError("dvc not found on PATH: activate the project's environment") from None
    except subprocess.CalledProcessError as err:
        raise FacegenError(f"`dvc exp show --json` failed: {err.stderr.strip()[-300:]}") from None
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Collect a parameter sweep from DVC experiments into sweeps/<family>.json")
    parser.add_argument("--family", default="beta_vae")
    parser.add_argument("--param", default=None, help="dotted params.yaml key (default: models.<family>.beta)")
    parser.add_argument("--exp-show", type=Path, help="saved `dvc exp show --json` output (default: run it)")
    args = parser.parse_args(argv)
    param = args.param or f"models.{args.family}.beta"
    doc = json.loads(args.exp_show.read_text()) if args.exp_show else _exp_show_json()
    points = sweep_points(doc, args.family, param)
    out = write_text(SWEEPS / f"{args.family}.json",
                     json.dumps({"family": args.family, "param": param, "points": points}, indent=2) + "\n")
    values = ", ".join(f"{p['value']:g}" for p in points) or "none"
    print(f"{out}: {len(points)} value(s) of {param}: {values}")
    if len(points) < 2:
        print("fewer than two values: the report shows a sweep plot once two or more were run")


if __name__ == "__main__":
    try:
        main()
    except FacegenError as err:
        raise SystemExit(f"error: {err}") from None
