"""Parameter sweeps (the β sweep) from DVC experiments, and the report's sweep figure.

Recipe (documented in docs and tested on a synthetic ``dvc exp show --json`` document)::

    for b in 1 2 4 8 16; do dvc exp run --queue -S models.beta_vae.beta=$b; done
    for k in 32 512; do dvc exp run --queue -S models.vqvae.num_embeddings=$k; done
    dvc exp run --run-all                     # trains + evaluates the family once per value
    dvc exp show                              # the table, one row per experiment
    python -m facegen.reporting.sweep         # -> sweeps/beta_vae.json and sweeps/vqvae.json (commit them)
    dvc repro report                          # the report draws them: rate–distortion figure, metrics vs β
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
import sys
from pathlib import Path
from typing import Any, Iterator

from matplotlib.ticker import FuncFormatter

from facegen.artifacts import write_text
from facegen.errors import FacegenError
from facegen.reporting.grids import plt, save_figure

SWEEPS = Path("sweeps")
# The parameter each family is swept over by default (`python -m facegen.reporting.sweep` collects all).
DEFAULT_PARAMS = {"beta_vae": "models.beta_vae.beta", "vqvae": "models.vqvae.num_embeddings"}
# A committed family that is one point of another family's sweep: the VAE is the β-VAE at β = 1.
BASELINES = {"models.beta_vae.beta": ("vae", 1.0)}
# What the sweep figure draws against the swept value, one panel each (those at least two points have).
PANELS = (("rate_bits", "rate (bits/image)"), ("recon_psnr", "reconstruction PSNR (dB)"), ("mig", "MIG"),
          ("dci_disentanglement", "DCI disentanglement"), ("edit_success_at_pres90_mean", "edit success at 90% pres."),
          ("kid_inception", "sample KID (Inception)"))


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


def baseline(sweep: dict[str, Any], metrics: dict[str, dict[str, float]]) -> tuple[str, float, dict[str, float]] | None:
    """The committed family that sits on ``sweep`` (:data:`BASELINES`) as (family, value, its metrics), if evaluated."""
    family, value = BASELINES.get(sweep["param"], ("", 0.0))
    return (family, value, metrics[family]) if family in metrics else None


def plot_sweep(sweep: dict[str, Any], path: Path,
               base: tuple[str, float, dict[str, float]] | None = None) -> Path | None:
    """Rate, PSNR, MIG, DCI, edit success and KID against the swept value (log x), one panel each, with
    ``base`` (e.g. the VAE at β = 1, from :func:`baseline`) marked as a star.

    None when fewer than two values were run (one point is not a sweep) or no panel metric was recorded.
    """
    points = sweep["points"]
    if len(points) < 2:
        return None
    name = sweep["param"].rsplit(".", 1)[-1]
    shown = [(m, label) for m, label in PANELS if sum(m in p["metrics"] for p in points) >= 2]
    if not shown:
        return None
    cols = min(3, len(shown))
    fig, axes = plt.subplots(-(-len(shown) // cols), cols, figsize=(4 * cols, 3 * -(-len(shown) // cols)),
                             squeeze=False)
    for ax, (metric, label) in zip(axes.flat, shown):
        have = [p for p in points if metric in p["metrics"]]
        ax.plot([p["value"] for p in have], [p["metrics"][metric] for p in have], marker="o")
        if base is not None and metric in base[2]:
            ax.plot([base[1]], [base[2][metric]], "*", markersize=13, color="C3", label=f"{base[0]} ({name} = {base[1]:g})")
            ax.legend(fontsize=7)
        if min(p["value"] for p in points) > 0:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # β = 0.25, not 2^-2
        ax.set_xlabel(name)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
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
    parser = argparse.ArgumentParser(description="Collect parameter sweeps from DVC experiments into sweeps/<family>.json")
    parser.add_argument("--family", nargs="+", default=list(DEFAULT_PARAMS),
                        help=f"families to collect (default: {' '.join(DEFAULT_PARAMS)})")
    parser.add_argument("--param", nargs="+", default=None,
                        help="dotted params.yaml key per family, in --family order (default: "
                             + ", ".join(f"{f}: {p}" for f, p in DEFAULT_PARAMS.items()) + ")")
    parser.add_argument("--exp-show", type=Path, help="saved `dvc exp show --json` output (default: run it)")
    args = parser.parse_args(argv)
    if args.param is not None and len(args.param) != len(args.family):
        raise FacegenError(f"--param: {len(args.param)} key(s) for {len(args.family)} famil(ies); give one per --family")
    unknown = [f for f in args.family if f not in DEFAULT_PARAMS]
    if args.param is None and unknown:
        raise FacegenError(f"--family {' '.join(unknown)}: no default swept parameter; pass --param models.<family>.<key>")
    params = args.param or [DEFAULT_PARAMS[f] for f in args.family]
    doc = json.loads(args.exp_show.read_text()) if args.exp_show else _exp_show_json()
    for family, param in zip(args.family, params):
        points = sweep_points(doc, family, param)
        out = write_text(SWEEPS / f"{family}.json",
                         json.dumps({"family": family, "param": param, "points": points}, indent=2) + "\n")
        values = ", ".join(f"{p['value']:g}" for p in points) or "none"
        print(f"{out}: {len(points)} value(s) of {param}: {values}")
        if len(points) < 2:
            print("  fewer than two values: the report shows a sweep plot once two or more were run")


if __name__ == "__main__":
    try:
        main()
    except FacegenError as err:  # one line, exit 2, like every facegen user error (docs/errors.md)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
