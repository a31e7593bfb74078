"""The ``report`` stage: one page comparing every evaluated family, as HTML and Markdown.

Inputs are the stage outputs, never the family names: families come from ``params.models``, and a
family is in the report when its ``metrics/<family>.json`` exists (one missing is listed as such,
the rest still render). Outputs:

* ``reports/index.html``: self-contained (every image embedded as base64), opens from disk;
* ``reports/report.md``: the same content, images linked relative to ``reports/``;
* ``reports/comparison_reconstructions.png`` / ``comparison_samples.png``: the rows each evaluate
  stage wrote, stacked and labelled (the report loads no model);
* ``reports/rate_distortion.png``: rate against PSNR and sample KID, with every collected sweep;
* ``reports/sweep_<family>.png``: each collected sweep's metrics against the swept value.

The first screen is the answer: the rate–distortion–realism figure, a few sentences computed from the
metrics (which family to use for what, at what rate and cost: ``comparison.answer``) and the
side-by-side grids; the per-question tables follow.
* ``metrics/summary.json``: every family's metrics, the best family per metric, what was missing.
"""
from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from facegen import artifacts
from facegen.config import Params, params_hash
from facegen.errors import FacegenError
from facegen.evaluation.comparison import SECTIONS, Row, Section, analysis, answer, comparison_rows, fmt, headline, \
    rate_sentence, sentence, wins, with_interval
from facegen.evaluation.expectations import Verdict, judge_all
from facegen.evaluation.metric_specs import MetricSpecs, load_specs
from facegen.evaluation.noise import NOISE_FILE, Noise, load_noise
from facegen.reporting.edit_curves import plot_edit_curves
from facegen.reporting.grids import load_strip, save_labelled_rows
from facegen.reporting.rate_distortion import plot_rate_distortion
from facegen.reporting.sweep import SWEEPS, baseline, load_sweeps, plot_sweep
from facegen.tracking import start_run

INDEX, MARKDOWN, SUMMARY = artifacts.INDEX, artifacts.MARKDOWN, artifacts.SUMMARY
# Per-family figures in reading order (glob patterns); any other PNG follows alphabetically.
FIGURE_ORDER = ("reconstructions.png", "samples.png", "interpolation.png", "attribute_*.png", "traversal.png",
                "training_curves.png")


@dataclass
class FamilyResult:
    family: str
    metrics: dict[str, float]
    notes: list[str]
    figures: list[Path]


@dataclass
class Report:
    families: list[FamilyResult]
    missing: list[str]
    rows: list[Row]
    analysis: list[str]
    classifier: dict[str, float]
    comparison: dict[str, Path]
    sweeps: list[SweepView]
    notes: list[str] = field(default_factory=list)
    tally: dict[str, list[str]] = field(default_factory=dict)  # compare.wins: headline rows won beyond noise
    noise: Noise | None = None                                 # measured run-to-run spread: the intervals
    reference: dict[str, float] = field(default_factory=dict)  # real-vs-real floors (metrics/reference.json)
    specs: MetricSpecs | None = None
    classifier_samples: int | None = None  # evaluate.num_samples: the classifier-feature metrics' sample count
    verdicts: list[Verdict] = field(default_factory=list)  # the families' known strengths, judged (expectations.py)
    answer: list[str] = field(default_factory=list)        # the first screen's sentences (comparison.answer)
    rate_figure: Path | None = None                        # reports/rate_distortion.png; None: no family has a rate
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # {family: metrics/<family>.json}


@dataclass(frozen=True)
class SweepView:
    """One ``sweeps/<family>.json``: its figure, or None when fewer than two values were collected."""

    family: str
    param: str
    points: int
    figure: Path | None

    def caption(self) -> str:
        if self.figure is not None:
            return f"{self.family}: {self.points} runs of {self.param}"
        return (f"{self.family} sweep of {self.param}: not collected ({self.points} point(s) in "
                f"sweeps/{self.family}.json; recipe in docs/evaluation.md)")


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


def build(families: list[str], specs: MetricSpecs, comparison: dict[str, Path], notes: list[str]) -> Report:
    present, missing = collect(families)
    metrics = {r.family: r.metrics for r in present}
    documents = load_sweeps(SWEEPS)
    sweeps = [SweepView(s["family"], s["param"], len(s["points"]),
                        plot_sweep(s, artifacts.REPORTS / f"sweep_{s['family']}.png", baseline(s, metrics)))
              for s in documents]
    noise = load_noise(NOISE_FILE)
    reference = _read_json(artifacts.REFERENCE_METRICS, {})
    rows = comparison_rows(metrics, specs, noise)
    return Report(present, missing, rows, analysis(metrics, specs, noise), _read_json(artifacts.CLASSIFIER_METRICS, {}),
                  comparison, sweeps, notes, tally=wins(rows, [r.family for r in present], specs), noise=noise,
                  reference=reference, specs=specs, verdicts=judge_all(metrics, specs, noise),
                  answer=answer(metrics, specs, noise, reference),
                  rate_figure=plot_rate_distortion(metrics, documents, artifacts.RATE_DISTORTION,
                                                   reference.get("kid_inception")),
                  metrics=metrics)


FIRST_SCREEN = ("reconstructions", "samples")  # comparison figures shown under the answer, not again per section
NO_RATE = "No family reports `rate_bits` yet (re-run the evaluate stages): the rate–distortion figure is not drawn."
MARK = {"met": "✓ met", "not met": "✗ not met", "not judged": "? not judged"}
STRENGTHS_INTRO = ("What each family is known for in the literature, checked on this run's numbers with the same "
                   "tie rule as the tables (src/facegen/evaluation/expectations.py).")


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


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
def _intro(report: Report) -> list[str]:
    names = ", ".join(r.family for r in report.families)
    lines = [f"Families compared: {names}."]
    if report.missing:
        lines.append(f"Not evaluated (no metrics file; run `dvc repro`): {', '.join(report.missing)}.")
    if "test_acc_mean" in report.classifier:
        per = ", ".join(f"{k.removeprefix('test_acc_')} {100 * v:.1f}%" for k, v in report.classifier.items()
                        if k != "test_acc_mean")
        lines.append("Attribute classifier (scores edits; its features define fid_facegen, kid_facegen and "
                     "precision/recall/density/coverage, which are not Inception metrics): mean test accuracy "
                     f"{100 * report.classifier['test_acc_mean']:.1f}% ({per}).")
    return lines


def _cell(row: Row, family: str, noise: Noise | None = None) -> tuple[str, bool]:
    """The value (± its interval where one was measured) and whether it is the row's best."""
    if family not in row.values:
        return "–", False
    return with_interval(row.values[family], noise, family, row.metric), row.best == family


@dataclass
class SectionView:
    """What one question's part of the report shows, computed once for both renderings."""

    section: Section
    rows: list[Row]
    sentences: list[str]
    figure: Path | None


def section_views(report: Report) -> list[SectionView]:
    by_metric = {row.metric: row for row in report.rows}
    views = []
    for section in SECTIONS:
        rows = [by_metric[m] for m in section.metrics if m in by_metric]
        if not rows:
            continue
        rows.sort(key=lambda r: bool(r.detail))  # detail rows (e.g. FID at small n) under the headlines
        leads = [r for r in rows if report.specs is not None and headline(r, report.specs)]
        said = [sentence(r, report.specs, report.noise) for r in leads]
        if section.names_rate and leads and (rate := rate_sentence(leads[0], report.metrics, report.specs)):
            said.append(rate)
        said += [f"**{r.label}** is a detail row here: {r.detail}." for r in rows if r.detail]
        if any(r.metric.endswith("_inception") for r in rows):
            said.append(_sample_counts(report))
        if nll := next((r for r in rows if r.metric == "nll_bits_per_dim"), None):
            said.append(_likelihood_baselines(report, nll))
        figure = None if section.figure in FIRST_SCREEN else report.comparison.get(section.figure or "")
        views.append(SectionView(section, rows, said, figure))
    return views


def _sample_counts(report: Report) -> str:
    """The sample counts behind the realism numbers (FID's bias depends on them)."""
    counts = next((r.metrics for r in report.families if "inception_n_fake" in r.metrics), {})
    text = (f"Inception scores: {fmt(counts['inception_n_fake'])} samples per family against the first "
            f"{fmt(counts['inception_n_real'])} test faces (KID over subsets of "
            f"{fmt(counts['inception_kid_subset_size'])})." if counts else "")
    if report.classifier_samples:
        text += (f" Classifier-feature scores: {report.classifier_samples} samples against as many test faces "
                 "(or the whole test split if smaller).")
    return text.strip()


def _label(row: Row) -> str:
    return f"{row.label} (detail)" if row.detail else row.label


def _tally(report: Report) -> str:
    """The win count over headline rows: kept below the tables (the answer is the first screen)."""
    ranked = ", ".join(f"{fam} {len(rows)}" for fam, rows in sorted(report.tally.items(), key=lambda kv: -len(kv[1])))
    return f"Headline rows won beyond noise, per family: {ranked or 'none'}."


CODEC_NAMES = {"codec_png_bits_per_dim": "PNG", "codec_webp_bits_per_dim": "lossless WebP"}


def _likelihood_baselines(report: Report, nll: Row) -> str:
    """The NLL row beside its baselines on the same test faces: uniform (8 bits/dim) and the lossless
    codecs the reference stage measured (``evaluation/codec.py``), and how far each family's bound
    still falls from the NLL row's k to the IWAE curve's largest k (``iwae_curve.png``)."""
    codecs = {name: report.reference[key] for key, name in CODEC_NAMES.items() if key in report.reference}
    text = ("Baselines on the same test faces (bits/dim): uniform 8"
            + "".join(f", {name} {fmt(v)}" for name, v in codecs.items()) + ".")
    if codecs and nll.values:
        fam = min(nll.values, key=nll.values.__getitem__)
        name = min(codecs, key=codecs.__getitem__)
        gap = nll.values[fam] - codecs[name]
        text += (f" The best bound, {fam}'s {fmt(nll.values[fam])}, is {fmt(abs(gap))} bits/dim "
                 f"{'above' if gap > 0 else 'below'} {name}.")
    gaps = {r.family: r.metrics["iwae_gap_at_nll_k_bits_per_dim"] for r in report.families
            if "iwae_gap_at_nll_k_bits_per_dim" in r.metrics}
    if gaps:
        text += (" With more importance samples the bound still falls by "
                 + ", ".join(f"{fmt(g)} ({fam})" for fam, g in gaps.items())
                 + " bits/dim on the IWAE curve's faces (each family's iwae_curve.png).")
    return text


def _reference_cell(report: Report, row: Row) -> str:
    value = report.reference.get(row.metric)
    return "" if value is None else fmt(value)


INTERVAL_NOTE = ("Values are this run's; ± is twice the standard deviation measured over reruns (the seeds and "
                 "precisions listed in metrics_noise.json), which covers training and evaluation noise. ★ marks the "
                 "best family only where the gap to the runner-up exceeds 2·√(sd₁²+sd₂²); otherwise the row is a tie.")


def render_markdown(report: Report) -> str:
    fams = [r.family for r in report.families]
    out = ["# facegen: model comparison", ""]
    out += [f"![rate, distortion and realism]({report.rate_figure.relative_to(artifacts.REPORTS).as_posix()})"
            if report.rate_figure is not None else NO_RATE, ""]
    out += [*(f"- {line}" for line in report.answer), ""]
    out += [f"![{key}]({report.comparison[key].relative_to(artifacts.REPORTS).as_posix()})"
            for key in FIRST_SCREEN if key in report.comparison]
    out += ["", *(f"{line}  " for line in _intro(report)), "", INTERVAL_NOTE, ""]
    if report.verdicts:
        out += ["## Known strengths", "", STRENGTHS_INTRO, ""]
        for v in report.verdicts:
            out += [f"- **{MARK[v.status]}**: {v.claim}", *(f"  - {line}" for line in v.shown())]
        out.append("")
    for view in section_views(report):
        ref = any(_reference_cell(report, r) for r in view.rows)
        out += [f"## {view.section.title}", "", f"*{view.section.question}*", "",
                "| metric | " + " | ".join(fams) + (" | real vs real (same n) |" if ref else " |"),
                "|---|" + "---:|" * (len(fams) + ref)]
        for row in view.rows:
            cells = []
            for fam in fams:
                text, best = _cell(row, fam, report.noise)
                cells.append(f"**{text}** ★" if best else text)
            extra = f" | {_reference_cell(report, row)}" if ref else ""
            out.append(f"| {_label(row)} | " + " | ".join(cells) + extra + " |")
        out += ["", *(f"- {line}" for line in view.sentences)]
        if view.section.reference:
            out += [f"- {view.section.reference}"]
        if view.figure is not None:
            out += ["", f"![{view.section.title}]({view.figure.relative_to(artifacts.REPORTS).as_posix()})"]
        out.append("")
    for sweep in report.sweeps:
        out += [f"## Sweep: {sweep.family}", ""]
        out += [f"![{sweep.caption()}]({sweep.figure.relative_to(artifacts.REPORTS).as_posix()})" if sweep.figure
                else sweep.caption() + ".", ""]
    if report.notes:
        out += ["## Notes", "", *(f"- {n}" for n in report.notes), ""]
    out += ["## Appendix: every metric", "", _tally(report), "", "| metric | " + " | ".join(fams) + " |", "|---|" + "---:|" * len(fams)]
    for row in report.rows:
        cells = []
        for fam in fams:
            text, best = _cell(row, fam, report.noise)
            cells.append(f"**{text}** ★" if best else text)
        out.append(f"| {_label(row)} | " + " | ".join(cells) + " |")
    for r in report.families:
        out += ["", f"### {r.family}", ""]
        out += [f"- {n}" for n in r.notes]
        out += [f"![{p.stem}]({p.relative_to(artifacts.REPORTS).as_posix()})" for p in r.figures]
    return "\n".join(out) + "\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _inline(text: str) -> str:
    """Escape, then the two Markdown inline forms the analysis uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{background:#dff5df;font-weight:bold}
td.ref{color:#666;font-style:italic}th{background:#f3f3f3}figure{display:inline-block;margin:.5rem;vertical-align:top}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}figcaption{font-size:.8rem;color:#555}
p.question{font-style:italic;color:#444}nav a{margin-right:1rem}ul.answer li{margin:.3rem 0}
"""


def _html_table(report: Report, rows: list[Row], fams: list[str], with_reference: bool) -> str:
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fams) + ("<th>real vs real (same n)</th>" if with_reference else "")
    body = []
    for row in rows:
        cells = []
        for fam in fams:
            text, best = _cell(row, fam, report.noise)
            cells.append(f"<td class='num{' best' if best else ''}'>{html.escape(text)}{' ★' if best else ''}</td>")
        if with_reference:
            cells.append(f"<td class='num ref'>{html.escape(_reference_cell(report, row))}</td>")
        title = html.escape(row.metric + (f": {row.detail}" if row.detail else ""))
        body.append(f"<tr><td title='{title}'>{html.escape(_label(row))}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def render_html(report: Report) -> str:
    fams = [r.family for r in report.families]
    views = section_views(report)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>facegen report</title><style>{STYLE}</style>"
             "</head><body><h1>facegen: model comparison</h1>"]
    parts.append("<nav>" + ("<a href='#known-strengths'>Known strengths</a>" if report.verdicts else "") + "".join(f"<a href='#{html.escape(v.section.title.lower().replace(' ', '-'))}'>"
                                   f"{html.escape(v.section.title)}</a>" for v in views)
                 + "<a href='#appendix'>Appendix</a></nav>")
    parts.append("<section id='answer'>")
    if report.rate_figure is not None:
        parts.append(_img(report.rate_figure, "Rate (bits per test image the latent carries) against reconstruction "
                                              "PSNR and sample KID"))
    else:
        parts.append(f"<p>{_inline(NO_RATE)}</p>")
    parts.append("<ul class='answer'>" + "".join(f"<li>{_inline(line)}</li>" for line in report.answer) + "</ul>")
    parts += [_img(report.comparison[key], report.comparison[key].stem.replace("_", " "))
              for key in FIRST_SCREEN if key in report.comparison]
    parts.append("</section>")
    parts += [f"<p>{_inline(line)}</p>" for line in _intro(report)]
    parts.append(f"<p>{_inline(INTERVAL_NOTE)}</p>")
    if report.verdicts:
        parts.append(f"<h2 id='known-strengths'>Known strengths</h2><p>{_inline(STRENGTHS_INTRO)}</p><ul>"
                     + "".join(f"<li><strong>{MARK[v.status]}</strong>: {_inline(v.claim)}<ul>"
                               + "".join(f"<li>{_inline(line)}</li>" for line in v.shown()) + "</ul></li>"
                               for v in report.verdicts) + "</ul>")
    for view in views:
        anchor = html.escape(view.section.title.lower().replace(" ", "-"))
        ref = any(_reference_cell(report, r) for r in view.rows)
        parts.append(f"<h2 id='{anchor}'>{html.escape(view.section.title)}</h2>"
                     f"<p class='question'>{html.escape(view.section.question)}</p>"
                     + _html_table(report, view.rows, fams, ref))
        items = view.sentences + ([view.section.reference] if view.section.reference else [])
        parts.append("<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in items) + "</ul>")
        if view.figure is not None:
            parts.append(_img(view.figure, view.section.title))
    for sweep in report.sweeps:
        parts.append(f"<h2 id='sweep-{html.escape(sweep.family)}'>Sweep: {html.escape(sweep.family)}</h2>"
                     + (_img(sweep.figure, sweep.caption()) if sweep.figure else f"<p>{_inline(sweep.caption())}.</p>"))
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_inline(n)}</li>" for n in report.notes) + "</ul>")
    parts.append(f"<h2 id='appendix'>Appendix: every metric</h2><p>{_inline(_tally(report))}</p>"
                 + _html_table(report, report.rows, fams, False))
    for r in report.families:
        parts.append(f"<h3 id='{html.escape(r.family)}'>{html.escape(r.family)}</h3>")
        if r.notes:
            parts.append("<ul>" + "".join(f"<li>{_inline(n)}</li>" for n in r.notes) + "</ul>")
        parts += [_img(p, p.stem) for p in r.figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def summary(report: Report) -> dict:
    """The comparison's outcome for machines. The metrics themselves stay in metrics/<family>.json
    (repeating them here would list every number twice in `dvc metrics show`)."""
    return {
        "best": {row.metric: row.best for row in report.rows
                 if row.best is not None and report.specs is not None and headline(row, report.specs)},
        "wins": {family: len(rows) for family, rows in report.tally.items()},
        "wins_rows": report.tally,
        "expectations": {v.claim: v.status for v in report.verdicts},
        "evaluated": [r.family for r in report.families],
        "missing_families": report.missing,
    }


def write_report(report: Report) -> dict:
    """Write index.html, report.md and metrics/summary.json; return the summary."""
    artifacts.REPORTS.mkdir(parents=True, exist_ok=True)
    artifacts.write_text(INDEX, render_html(report))
    artifacts.write_text(MARKDOWN, render_markdown(report))
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
        report = build(families, load_specs(), comparison, notes)
        report.classifier_samples = params.evaluate.num_samples
        outcome = write_report(report)
        # The comparison is browsable in the UI too: wins per family as metrics, the pages as artifacts.
        tracker.log_metrics({f"wins_{family}": float(n) for family, n in outcome["wins"].items()})
        tracker.log_metrics({"expectations_met": float(sum(v.status == "met" for v in report.verdicts))})
        figures = [report.rate_figure, *(s.figure for s in report.sweeps)]
        for path in (INDEX, MARKDOWN, SUMMARY, *comparison.values(), *(f for f in figures if f is not None)):
            tracker.log_artifact(path)
    return report
