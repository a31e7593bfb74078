"""The ``report`` stage: collect what the evaluate stages wrote → build the comparison → write → track.

Inputs are the stage outputs, never the family names: families come from ``params.models``, and a
family is in the report when its ``metrics/<family>.json`` exists (one missing is listed as such,
the rest still render). The page itself (what it says, section by section) is
``comparison.page``; the decisions are ``comparison.decision``'s, over the recorded runs of
``metrics_noise.json``. Outputs:

* ``reports/index.html``: self-contained (every image embedded as base64), opens from disk;
* ``reports/report.md``: the same page, images linked relative to ``reports/``;
* ``reports/comparison_reconstructions.png`` / ``comparison_samples.png``: the rows each evaluate
  stage wrote, stacked and labelled (the report loads no model);
* ``reports/rate_distortion.png``: rate against PSNR and sample KID, with every collected sweep;
* ``reports/sweep_<family>.png``: each collected sweep's metrics against the swept value;
* ``metrics/summary.json``: each headline row's decision, the tally, the known strengths.
"""

from __future__ import annotations

import json
from pathlib import Path

from facegen import artifacts
from facegen.comparison.expectations import judge_all
from facegen.comparison.noise import NOISE_FILE, load_noise
from facegen.comparison.page import FamilyResult, Report, SweepView, page, summary
from facegen.comparison.prose import answer
from facegen.comparison.rows import comparison_rows, wins
from facegen.comparison.specs import MetricSpecs, load_specs
from facegen.config import Params, params_hash
from facegen.errors import FacegenError
from facegen.comparison.document import to_html, to_markdown
from facegen.reporting.edit_curves import plot_edit_curves
from facegen.reporting.grids import load_strip, save_labelled_rows
from facegen.reporting.rate_distortion import plot_rate_distortion
from facegen.reporting.sweep import SWEEPS, baseline, load_sweeps, plot_sweep
from facegen.tracking import start_run

INDEX, MARKDOWN, SUMMARY = artifacts.INDEX, artifacts.MARKDOWN, artifacts.SUMMARY
# Per-family figures in reading order (glob patterns); any other PNG follows alphabetically.
FIGURE_ORDER = ("reconstructions.png", "samples.png", "interpolation.png", "attribute_*.png", "traversal.png",
                "training_curves.png")


def _figures(directory: Path) -> list[Path]:
    found = sorted(p for p in directory.glob("*.png") if not p.name.startswith("row_")) if directory.is_dir() else []
    ordered: list[Path] = []
    for pattern in FIGURE_ORDER:
        ordered += [p for p in found if p.match(pattern) and p not in ordered]
    return ordered + [p for p in found if p not in ordered]


def _read_json(path: Path, default: object) -> object:
    return json.loads(path.read_text()) if path.is_file() else default


def collect(families: list[str]) -> tuple[list[FamilyResult], list[str]]:
    """Results of the families that were evaluated, and the names of those that were not."""
    present, missing = [], []
    for family in families:
        if not artifacts.metrics_file(family).is_file():
            missing.append(family)
            continue
        out_dir = artifacts.report_dir(family)
        present.append(FamilyResult(family, _read_json(artifacts.metrics_file(family), {}),
                                    _read_json(artifacts.notes_file(family), []), _figures(out_dir)))
    return present, missing


def build(params: Params, specs: MetricSpecs, comparison: dict[str, Path], notes: list[str]) -> Report:
    """Every family's results decided over the recorded runs (stale where these params were not recorded)."""
    present, missing = collect(list(params.models))
    metrics = {r.family: r.metrics for r in present}
    documents = load_sweeps(SWEEPS)
    sweeps = [SweepView(s["family"], s["param"], len(s["points"]),
                        plot_sweep(s, artifacts.REPORTS / f"sweep_{s['family']}.png", baseline(s, metrics)))
              for s in documents]
    noise = load_noise(NOISE_FILE, params)
    reference = _read_json(artifacts.REFERENCE_METRICS, {})
    rows = comparison_rows(metrics, specs, noise)
    return Report(present, missing, rows, specs, noise, comparison, sweeps, notes,
                  tally=wins(rows, [r.family for r in present], specs),
                  classifier=_read_json(artifacts.CLASSIFIER_METRICS, {}), reference=reference,
                  classifier_samples=params.evaluate.num_samples, verdicts=judge_all(metrics, specs, noise),
                  answer=answer(metrics, specs, noise, reference),
                  rate_figure=plot_rate_distortion(metrics, documents, artifacts.RATE_DISTORTION,
                                                   reference.get("kid_inception")))


def comparison_figures(families: list[str], notes: list[str]) -> dict[str, Path]:
    """Stack the rows evaluate@<family> wrote into the two side-by-side figures; returns their artifacts.

    Every family's reconstruction row shows the same first test faces, so the originals row is taken
    from the first family that has one.
    """
    recon_rows, recon_labels, sample_rows, sample_labels = [], [], [], []
    for family in families:
        out_dir = artifacts.report_dir(family)
        if (out_dir / artifacts.ROW_RECONSTRUCTIONS).is_file():
            if not recon_rows:
                recon_rows, recon_labels = [load_strip(out_dir / artifacts.ROW_ORIGINALS)], ["original"]
            method = _read_json(out_dir / artifacts.ROW_LABELS, {}).get("reconstruction", "encoder")
            recon_rows.append(load_strip(out_dir / artifacts.ROW_RECONSTRUCTIONS))
            recon_labels.append(family if method == "encoder" else f"{family}\n({method})")
        else:
            notes.append(f"{family}: no reconstructions in the comparison figure (declares no 'reconstruct' "
                         "capability, or evaluate ran before this report existed).")
        if (out_dir / artifacts.ROW_SAMPLES).is_file():
            sample_rows.append(load_strip(out_dir / artifacts.ROW_SAMPLES))
            sample_labels.append(family)
    out = {}
    curves = {f: c for f in families if (c := _read_json(artifacts.report_dir(f) / artifacts.EDIT_CURVES, {}))}
    if curves:
        out["edit_curves"] = plot_edit_curves(curves, artifacts.COMPARISON_EDIT_CURVES)
    if recon_rows:
        out["reconstructions"] = save_labelled_rows(
            recon_rows, artifacts.COMPARISON_RECONSTRUCTIONS, row_labels=recon_labels,
            title="The same test faces: original (top) and each family's reconstruction")
    if sample_rows:
        out["samples"] = save_labelled_rows(sample_rows, artifacts.COMPARISON_SAMPLES, row_labels=sample_labels,
                                            title="Random samples of each family (same seed)")
    return out



def write_report(report: Report) -> dict:
    """Write index.html, report.md and metrics/summary.json; return the summary."""
    artifacts.REPORTS.mkdir(parents=True, exist_ok=True)
    doc = page(report)
    artifacts.write_text(INDEX, to_html(doc))
    artifacts.write_text(MARKDOWN, to_markdown(doc, artifacts.REPORTS))
    outcome = summary(report)
    artifacts.write_json(outcome, SUMMARY)
    return outcome


def report_stage(params: Params) -> Report:
    """Load what the evaluate stages wrote, draw the comparison figures, render everything."""
    families = list(params.models)
    evaluated = [f for f in families if artifacts.metrics_file(f).is_file()]
    if not evaluated:
        raise FacegenError(f"no evaluated family (none of {', '.join(f'metrics/{f}.json' for f in families)} "
                           "exists): run `dvc repro` first")
    notes: list[str] = []
    logged = {"seed": params.seed, "families": families, "evaluated": evaluated}
    with start_run("report", "all", logged, params_hash(params.seed, params.evaluate),
                   params.tracking.experiment) as tracker:
        comparison = comparison_figures(evaluated, notes)
        report = build(params, load_specs(), comparison, notes)
        outcome = write_report(report)
        # The comparison is browsable in the UI too: the decisions as metrics (wins per family, and per
        # headline row the leading pair's Holm-adjusted p), the pages as artifacts.
        tracker.log_metrics({f"wins_{family}": float(n) for family, n in outcome["wins"].items()})
        tracker.log_metrics({f"p_holm_{metric}": d["p_holm"] for metric, d in outcome["decisions"].items()
                             if "p_holm" in d})
        tracker.log_metrics({"expectations_met": float(sum(v.status == "met" for v in report.verdicts))})
        figures = [report.rate_figure, *(s.figure for s in report.sweeps)]
        for path in (INDEX, MARKDOWN, SUMMARY, *comparison.values(), *(f for f in figures if f is not None)):
            tracker.log_artifact(path)
    return report
