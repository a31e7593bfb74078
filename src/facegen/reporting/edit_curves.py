"""The report's edit figure: success vs preservation of attribute edits, every family on one set of axes.

Reads only the JSON curves that evaluation writes (``SweepResult.curves`` of
facegen.evaluation.editing, one dict per family): no torch, no models, so the report stage draws
it from files alone. One panel per attribute; per family a solid line through the strength sweep
(alpha 0 at preservation 1, success 0) and a dashed line of the same colour for random directions of
the same steps (chance). A dotted vertical line marks the headline's preservation budget; the
headline (``edit_success_at_pres90_*``) is where each solid line's best point left of it lies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # headless: stages and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from facegen.artifacts import write_figure  # noqa: E402
from facegen.config import MODEL_CONFIGS  # noqa: E402  (plain dataclasses: no torch)


def family_colours(families: Iterable[str]) -> dict[str, str]:
    """A fixed colour per family: the pipeline's families in params order take C0, C1, ... of the
    default cycle whatever subset is drawn, so a family looks the same in every figure; others follow."""
    known = list(MODEL_CONFIGS)
    extra = sorted(f for f in set(families) if f not in known)
    order = known + extra
    return {f: f"C{order.index(f) % 10}" for f in families}


def _save(fig: plt.Figure, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1), dpi: int = 80) -> Path:
    """reporting.grids.save_figure (plus a layout ``rect`` that leaves room for a figure legend),
    without importing grids, which imports torch for its image grids."""
    try:
        fig.tight_layout(rect=rect)
        return write_figure(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def plot_edit_curves(curves_by_family: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per attribute: success (y) vs preservation of the other attributes (x, 1 at the left),
    a solid line per family over its strength sweep and a dashed one for its random directions.

    ``curves_by_family``: family -> ``SweepResult.curves`` (as written to JSON); families with empty
    curves are left out. Raises ValueError when no family has a curve.
    """
    curves_by_family = {f: c for f, c in curves_by_family.items() if c and c.get("attributes")}
    attrs: list[str] = []
    for c in curves_by_family.values():
        attrs += [a for a in c["attributes"] if a not in attrs]
    if not attrs:
        raise ValueError("no edit curves to plot")
    colours = family_colours(curves_by_family)
    cols = min(4, len(attrs))
    rows = -(-len(attrs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows + 0.4), squeeze=False)
    lowest = min(min(line["preservation"]) for c in curves_by_family.values()
                 for part in ("attributes", "chance") for line in c.get(part, {}).values())
    targets = {c.get("preservation_target") for c in curves_by_family.values()} - {None}
    right = min(lowest, min(targets, default=1.0))
    pad = 0.04 * (1.0 - right) + 0.005
    for ax, attr in zip(axes.flat, attrs):
        for fam, c in curves_by_family.items():
            line = c["attributes"].get(attr)
            if line is None:
                continue
            ax.plot(line["preservation"], line["success"], marker="o", ms=3, color=colours[fam], label=fam)
            chance = c.get("chance", {}).get(attr)
            if chance is not None:
                ax.plot(chance["preservation"], chance["success"], ls="--", lw=1, color=colours[fam], alpha=0.8,
                        label=f"{fam} random")
        for t in targets:
            ax.axvline(t, color="grey", ls=":", lw=1)
        ax.set_title(attr, fontsize=9)
        ax.set_xlim(1.0 + pad, right - pad)  # inverted: moving right = losing more of the other attributes
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(attrs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in list(axes.flat)[1:len(attrs)]:  # families missing from the first panel
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=min(4, len(seen)), fontsize=7, frameon=False)
    alphas = sorted({a for c in curves_by_family.values() for a in c.get("alphas", [])} - {0.0})
    fig.suptitle("Attribute edits: success vs preservation (dashed: random directions)\n"
                 f"steps α = {', '.join(f'{a:g}' for a in alphas)} × the distance between two faces", fontsize=9)
    legend_in = 0.1 + 0.17 * -(-len(seen) // min(4, len(seen)))  # inches under the panels for the legend
    height = fig.get_figheight()
    fig.supxlabel("preservation (other attributes kept)", fontsize=8,
                  y=legend_in / height, va="bottom")
    fig.supylabel("success (attribute flipped)", fontsize=8)
    return _save(fig, path, rect=(0, legend_in / height, 1, 1))  # tight_layout makes room for supxlabel
