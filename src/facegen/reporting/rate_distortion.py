"""The rate–distortion–realism figure: what each family's latent carries, and what that buys.

Left panel: rate (bits per test image the latent carries, log scale) against reconstruction PSNR,
one point per family that has an encoder rate, every collected sweep of ``sweeps/*.json`` drawn in
its family's colour (the β sweep as a curve labelled β=…, the codebook sizes as points labelled
K=…), and the VQ-VAE's raw rate (positions·log₂K, what its codes would cost without the prior) as
an open marker with an arrow to the coded rate. Right panel: sample KID (Inception) against the same
rate, the families without an encoder rate (the DCGAN) as dashed horizontal lines labelled
"no encoder", and the real-vs-real KID floor at the same sample sizes as a grey line.

The rate–distortion view follows Alemi et al., "Fixing a Broken ELBO" (ICML 2018): a VAE's rate is
E[KL(q(z|x) || p(z))], a VQ-VAE's is -log₂ P(codes) under its prior; β moves a VAE along the curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from facegen.reporting.grids import plt, save_figure

RATE, RAW_RATE, DISTORTION, REALISM = "rate_bits", "rate_raw_bits", "recon_psnr", "kid_inception"
# How a swept parameter is written beside its points, and whether its values form a curve
# (a continuous weight) or separate points (a codebook size changes the architecture).
SWEPT = {"beta": ("β", "-"), "num_embeddings": ("K", "none")}


def _swept(param: str) -> tuple[str, str]:
    short = param.rsplit(".", 1)[-1]
    return SWEPT.get(short, (short, "-"))


def _sweep_points(sweep: dict[str, Any], *metrics: str) -> list[tuple[float, list[float]]]:
    """(value, [metric values]) of the sweep's points that have every metric and a positive rate."""
    return [(p["value"], [p["metrics"][m] for m in metrics]) for p in sweep.get("points", [])
            if all(m in p["metrics"] for m in metrics) and p["metrics"][metrics[0]] > 0]


def has_rate(metrics: dict[str, dict[str, float]], sweeps: list[dict[str, Any]]) -> bool:
    """Whether anything can be drawn on the rate axis: a family or a sweep point with a positive rate."""
    return (any(m.get(RATE, 0) > 0 for m in metrics.values())
            or any(_sweep_points(s, RATE) for s in sweeps))


def plot_rate_distortion(metrics: dict[str, dict[str, float]], sweeps: list[dict[str, Any]], path: Path,
                         kid_floor: float | None = None) -> Path | None:
    """Draw the two panels described in the module docstring into ``path`` (PNG); return it.

    ``metrics``: ``{family: metrics/<family>.json}``; a family without ``rate_bits`` is left off the
    left panel and drawn as "no encoder" on the right. ``sweeps``: ``sweeps/*.json`` documents
    (``{"family", "param", "points": [{"value", "metrics"}]}``); empty ones are skipped.
    ``kid_floor``: real-vs-real KID (``metrics/reference.json``). None when nothing has a rate.
    """
    if not has_rate(metrics, sweeps):
        return None
    colour = {fam: f"C{i}" for i, fam in enumerate(metrics)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for sweep in sweeps:
        fam = sweep["family"]
        symbol, line = _swept(sweep["param"])
        c = colour.setdefault(fam, f"C{len(colour)}")
        for ax, metric in ((left, DISTORTION), (right, REALISM)):
            pts = _sweep_points(sweep, RATE, metric)
            if not pts:
                continue
            xs, ys = [p[1][0] for p in pts], [p[1][1] for p in pts]
            ax.plot(xs, ys, linestyle=line, marker=".", color=c, alpha=0.6, markersize=8)
            for value, (x, y) in pts:
                ax.annotate(f"{symbol}={value:g}", (x, y), textcoords="offset points", xytext=(0, -11),
                            ha="center", fontsize=7, color=c)
    for fam, m in metrics.items():
        c = colour[fam]
        if m.get(RATE, 0) > 0:
            rate = m[RATE]
            if DISTORTION in m:
                left.plot([rate], [m[DISTORTION]], "o", color=c, markersize=9)
                left.annotate(f"{fam}\n{rate:,.0f} bits, {m[DISTORTION]:.1f} dB", (rate, m[DISTORTION]),
                              textcoords="offset points", xytext=(8, 4), fontsize=8, color=c)
                if m.get(RAW_RATE, 0) > rate:
                    raw = m[RAW_RATE]
                    left.plot([raw], [m[DISTORTION]], "o", mfc="none", color=c, markersize=9)
                    left.annotate("", (rate, m[DISTORTION]), (raw, m[DISTORTION]),
                                  arrowprops={"arrowstyle": "->", "color": c, "lw": 1})
                    left.annotate(f"raw codes\n{raw:,.0f} bits", (raw, m[DISTORTION]), textcoords="offset points",
                                  xytext=(0, -24), ha="center", fontsize=7, color=c)
            if REALISM in m:
                right.plot([rate], [m[REALISM]], "o", color=c, markersize=9)
                right.annotate(fam, (rate, m[REALISM]), textcoords="offset points", xytext=(8, 4),
                               fontsize=8, color=c)
        elif REALISM in m:  # no encoder: its samples still have a realism, at no rate
            right.axhline(m[REALISM], color=c, linestyle="--", lw=1.2)
            right.annotate(f"{fam}: no encoder", (0.01, m[REALISM]), xycoords=("axes fraction", "data"),
                           textcoords="offset points", xytext=(0, 3), fontsize=8, color=c)
    unrated = [fam for fam, m in metrics.items() if not m.get(RATE, 0) > 0]
    if unrated:
        left.text(0.01, 0.99, f"no encoder rate, not drawn: {', '.join(unrated)}", transform=left.transAxes,
                  va="top", fontsize=8, color="0.4")
    if kid_floor is not None:
        right.axhline(kid_floor, color="0.5", lw=1)
        right.annotate("real vs real (floor)", (0.99, kid_floor), xycoords=("axes fraction", "data"),
                       textcoords="offset points", xytext=(0, 3), ha="right", fontsize=8, color="0.4")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("rate: bits per test image the latent carries (log)")
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.15, y=0.12)
    left.set_ylabel("reconstruction PSNR (dB, higher is sharper)")
    left.set_title("rate → distortion")
    right.set_ylabel("sample KID, Inception (lower is more realistic)")
    right.set_title("rate → realism")
    return save_figure(fig, path, dpi=90)
