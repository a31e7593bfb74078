"""The report's model: what the comparison page says, section by section, built once.

:func:`page` turns a :class:`Report` (every family's metrics, the recorded runs, the figures the
report stage drew) into a ``reporting.document.Document``, which renders to Markdown and to HTML;
:func:`summary` is the same decisions for machines (``metrics/summary.json``, MLflow).

The first screen is the answer: the rate–distortion–realism figure, a few computed sentences
(``prose.answer``: which family to use for what, decided over the recorded runs) and the
side-by-side grids; the known strengths and the per-question tables follow, the win tally and every
metric last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facegen.comparison.expectations import Verdict
from facegen.comparison.noise import Noise
from facegen.comparison.prose import analysis, pairs_text, rate_sentence, sentence
from facegen.comparison.rows import Row, cell, fmt, headline
from facegen.comparison.sections import SECTIONS, Section
from facegen.comparison.specs import MetricSpecs
from facegen.comparison.document import Bullets, Cell, Document, Figure, Heading, Item, Nav, Para, Table, bullets


@dataclass
class FamilyResult:
    family: str
    metrics: dict[str, float]
    notes: list[str]
    figures: list[Path]


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


@dataclass
class Report:
    families: list[FamilyResult]
    missing: list[str]
    rows: list[Row]
    specs: MetricSpecs
    noise: Noise | None
    comparison: dict[str, Path] = field(default_factory=dict)  # the stacked figures (report stage)
    sweeps: list[SweepView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tally: dict[str, list[str]] = field(default_factory=dict)  # rows.wins: headline rows won (paired test)
    classifier: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)  # real-vs-real floors (metrics/reference.json)
    classifier_samples: int | None = None  # evaluate.num_samples: the classifier-feature metrics' sample count
    verdicts: list[Verdict] = field(default_factory=list)  # the families' known strengths (expectations.py)
    answer: list[str] = field(default_factory=list)        # the first screen's sentences (prose.answer)
    rate_figure: Path | None = None                        # reports/rate_distortion.png; None: no family has a rate

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {r.family: r.metrics for r in self.families}


FIRST_SCREEN = ("reconstructions", "samples")  # comparison figures shown under the answer, not again per section
NO_RATE = "No family reports `rate_bits` yet (re-run the evaluate stages): the rate–distortion figure is not drawn."
MARK = {"met": "✓ met", "not met": "✗ not met", "not judged": "? not judged"}
STRENGTHS_INTRO = ("What each family is known for in the literature, judged over the recorded runs with the same "
                   "paired rule as the tables (src/facegen/comparison/expectations.py).")
CODEC_NAMES = {"codec_png_bits_per_dim": "PNG", "codec_webp_bits_per_dim": "lossless WebP"}


def interval_note(report: Report) -> str:
    """What a cell means and how a row is decided, with the runs it rests on."""
    runs = report.noise.runs if report.noise is not None else []
    recorded = ", ".join(f"{r.get('seed')} {r.get('precision')}" for r in runs) or "none"
    alpha = report.specs.alpha
    return (f"Each cell is the mean over the {len(runs)} recorded runs (seed precision: {recorded}; "
            f"metrics_noise.json) ± the two-sided {100 * (1 - alpha):.0f}% Student-t interval of that mean, then this "
            "run's value as a point. ★ marks a family only where the paired t-test over those runs (each run's "
            f"difference between two families) separates it from every other family at α = {alpha:g}, Holm-adjusted "
            "over the row's pairs; otherwise the row is not separated (or not ranked, where runs are missing).")


@dataclass
class SectionView:
    """What one question's part of the report shows."""

    section: Section
    rows: list[Row]
    sentences: list[str]
    figure: Path | None


def section_views(report: Report) -> list[SectionView]:
    by_metric = {row.metric: row for row in report.rows}
    views = []
    for section in SECTIONS:
        rows = [by_metric[m] for m in section.metrics(report.specs) if m in by_metric]
        if not rows:
            continue
        rows.sort(key=lambda r: bool(r.detail))  # detail rows (e.g. FID at small n) under the others
        leads = [r for r in rows if headline(r, report.specs)]
        said = [text for r in leads for text in (sentence(r, report.noise), pairs_text(r)) if text]
        if section.names_rate and leads and (rate := rate_sentence(leads[0], report.metrics)):
            said.append(rate)
        said += [f"**{r.label}** is a detail row here: {r.detail}." for r in rows if r.detail]
        if any(r.metric.endswith("_inception") for r in rows):
            said.append(_sample_counts(report))
        if nll := next((r for r in rows if r.metric == "nll_bits_per_dim"), None):
            said.append(_likelihood_baselines(report, nll))
        figure = None if section.figure in FIRST_SCREEN else report.comparison.get(section.figure or "")
        views.append(SectionView(section, rows, said, figure))
    return views


def _intro(report: Report) -> list[str]:
    lines = [f"Families compared: {', '.join(r.family for r in report.families)}."]
    if report.missing:
        lines.append(f"Not evaluated (no metrics file; run `dvc repro`): {', '.join(report.missing)}.")
    if "test_acc_mean" in report.classifier:
        per = ", ".join(f"{k.removeprefix('test_acc_')} {100 * v:.1f}%" for k, v in report.classifier.items()
                        if k != "test_acc_mean")
        lines.append("Attribute classifier (scores edits; its features define fid_facegen, kid_facegen and "
                     "precision/recall/density/coverage, which are not Inception metrics): mean test accuracy "
                     f"{100 * report.classifier['test_acc_mean']:.1f}% ({per}).")
    return lines


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
        text += (f" This run's best bound, {fam}'s {fmt(nll.values[fam])}, is {fmt(abs(gap))} bits/dim "
                 f"{'above' if gap > 0 else 'below'} {name}.")
    gaps = {r.family: r.metrics["iwae_gap_at_nll_k_bits_per_dim"] for r in report.families
            if "iwae_gap_at_nll_k_bits_per_dim" in r.metrics}
    if gaps:
        text += (" With more importance samples the bound still falls by "
                 + ", ".join(f"{fmt(g)} ({fam})" for fam, g in gaps.items())
                 + " bits/dim on the IWAE curve's faces (each family's iwae_curve.png).")
    return text


def _label(row: Row) -> str:
    return f"{row.label} (detail)" if row.detail else row.label


def _table(report: Report, rows: list[Row], with_reference: bool) -> Table:
    fams = [r.family for r in report.families]
    header = ("metric", *fams, *(("real vs real (same n)",) if with_reference else ()))
    body = []
    for row in rows:
        cells = [Cell(_label(row), css="", title=row.metric + (f": {row.detail}" if row.detail else ""))]
        cells += [Cell(cell(row, fam), best=row.best == fam) for fam in fams]
        if with_reference:
            value = report.reference.get(row.metric)
            cells.append(Cell("" if value is None else fmt(value), css="ref"))
        body.append(tuple(cells))
    return Table(header, tuple(body))


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def page(report: Report) -> Document:
    """The whole comparison page, in reading order."""
    views = section_views(report)
    doc = Document("facegen: model comparison")
    doc.add(Nav(((("known-strengths", "Known strengths"),) if report.verdicts else ())
                + tuple((_anchor(v.section.title), v.section.title) for v in views) + (("appendix", "Appendix"),)))
    doc.add(Figure(report.rate_figure, "Rate (bits per test image the latent carries) against reconstruction PSNR "
                                       "and sample KID") if report.rate_figure is not None else Para(NO_RATE))
    doc.add(bullets(report.answer, css="answer"))
    doc.add(*(Figure(report.comparison[key], report.comparison[key].stem.replace("_", " "))
              for key in FIRST_SCREEN if key in report.comparison))
    doc.add(*(Para(line) for line in _intro(report)), Para(interval_note(report)))
    if report.verdicts:
        doc.add(Heading("Known strengths", anchor="known-strengths"), Para(STRENGTHS_INTRO),
                Bullets(tuple(Item(f"**{MARK[v.status]}**: {v.claim}", tuple(v.shown())) for v in report.verdicts)))
    for view in views:
        with_reference = any(row.metric in report.reference for row in view.rows)
        doc.add(Heading(view.section.title, anchor=_anchor(view.section.title)),
                Para(view.section.question, css="question"), _table(report, view.rows, with_reference),
                bullets(view.sentences + ([view.section.reference] if view.section.reference else [])))
        if view.figure is not None:
            doc.add(Figure(view.figure, view.section.title))
    for sweep in report.sweeps:
        doc.add(Heading(f"Sweep: {sweep.family}", anchor=f"sweep-{sweep.family}"),
                Figure(sweep.figure, sweep.caption()) if sweep.figure is not None else Para(sweep.caption() + "."))
    if report.notes:
        doc.add(Heading("Notes"), bullets(report.notes))
    # every headline decision in one list, then the tally (the first screen answers; this is the ledger)
    doc.add(Heading("Appendix: every metric", anchor="appendix"),
            bullets(analysis(report.metrics, report.specs, report.noise)), _table(report, report.rows, False))
    for r in report.families:
        doc.add(Heading(r.family, level=3, anchor=r.family))
        if r.notes:
            doc.add(bullets(r.notes))
        doc.add(*(Figure(p, p.stem) for p in r.figures))
    return doc


def summary(report: Report) -> dict:
    """The comparison's outcome for machines: each headline row's decision (best, and the leading pair's
    paired count and Holm-adjusted p), the tally and the known strengths. The metrics themselves stay in
    metrics/<family>.json (repeating them here would list every number twice in `dvc metrics show`)."""
    decisions = {}
    for row in report.rows:
        if not headline(row, report.specs) or len(row.values) < 2:
            continue
        lead = row.decision.lead()
        decisions[row.metric] = {
            "best": row.best, "runs": max((e.n for e in row.decision.estimates.values()), default=0),
            "unranked": list(row.decision.unranked),
            **({"lead": lead.count(), "p_holm": lead.p_adjusted} if lead is not None else {})}
    return {
        "best": {m: d["best"] for m, d in decisions.items() if d["best"] is not None},
        "decisions": decisions,
        "wins": {family: len(rows) for family, rows in report.tally.items()},
        "wins_rows": report.tally,
        "expectations": {v.claim: v.status for v in report.verdicts},
        "evaluated": [r.family for r in report.families],
        "missing_families": report.missing,
    }
