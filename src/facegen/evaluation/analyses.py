"""The analyses evaluation runs for a family, each gated by a declared capability.

Every analysis writes its figure(s) under ``ctx.out_dir`` with the artifact names from DESIGN.md
and returns flat metrics. None looks at the family name: what runs is decided by
``model.capabilities`` (and ``edit_directions`` for how attribute vectors are found).
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from facegen.evaluation.context import EvalContext
from facegen.latent.attributes import edit, encode_split, mean_difference_vectors
from facegen.latent.interpolation import lerp, slerp
from facegen.latent.traversal import active_dimensions, dimension_activity, traversal_latents
from facegen.models.base import EDIT, ENCODE, LIKELIHOOD, RECONSTRUCT, TRAVERSE
from facegen.reporting.grids import save_grid, save_labelled_rows
from facegen.runtime import eval_mode
from facegen.training.loop import evaluate_losses

Analysis = Callable[[EvalContext], dict[str, float]]


def _batched(ctx: EvalContext, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with eval_mode(ctx.model), ctx.rt.autocast():
        return torch.cat([fn(x[i:i + ctx.cfg.batch_size]).float() for i in range(0, len(x), ctx.cfg.batch_size)])


def reconstruction(ctx: EvalContext) -> dict[str, float]:
    """Test-set reconstruction error and a grid (top: originals, bottom: reconstructions)."""
    n = len(ctx.test) if ctx.model.reconstruction_method == "encoder" else min(len(ctx.test), ctx.cfg.num_inversions)
    x = ctx.test_images(n)
    recon = _batched(ctx, ctx.model.reconstruct, x).clamp(0, 1)
    x = x.float()
    k = ctx.cfg.grid_size
    save_grid(torch.cat([x[:k], recon[:k]]), ctx.out_dir / "reconstructions.png", nrow=k)
    if ctx.model.reconstruction_method != "encoder":
        ctx.notes.append(f"Reconstructions are by {ctx.model.reconstruction_method} on {n} test images.")
    return {
        "recon_mse": float(torch.mean((recon - x) ** 2)),
        "recon_psnr": float(peak_signal_noise_ratio(recon, x, data_range=1.0)),
        "recon_ssim": float(structural_similarity_index_measure(recon, x, data_range=1.0)),
    }


def samples(ctx: EvalContext) -> dict[str, float]:
    """A sample grid and the sampling speed (images/s, batch of grid_size², after one warm-up)."""
    n = ctx.cfg.grid_size ** 2
    with eval_mode(ctx.model), ctx.rt.autocast():
        ctx.model.sample(2, ctx.generator(1))
        t0 = time.perf_counter()
        imgs = ctx.model.sample(n, ctx.generator(2)).float()
        seconds = time.perf_counter() - t0
    save_grid(imgs, ctx.out_dir / "samples.png", nrow=ctx.cfg.grid_size)
    return {"sample_img_per_s": n / seconds}


def interpolation(ctx: EvalContext) -> dict[str, float]:
    """Linear and spherical paths between the codes of two test faces, decoded."""
    x = ctx.test_images(2)
    with eval_mode(ctx.model), ctx.rt.autocast():
        z = ctx.model.encode(x).float()
        rows = [ctx.model.decode(path(z[0], z[1], ctx.cfg.interpolation_steps)).float() for path in (lerp, slerp)]
    save_labelled_rows(rows, ctx.out_dir / "interpolation.png", row_labels=["linear", "slerp"],
                       title=f"{ctx.family}: interpolation between two test faces")
    return {}


def attribute_edits(ctx: EvalContext) -> dict[str, float]:
    """One figure per configured attribute: faces moved along that attribute's latent direction."""
    names = ctx.test.attr_names
    if ctx.model.edit_directions == "classifier_boundary":
        if ctx.classifier is None:
            ctx.notes.append("Attribute edits skipped: no attribute classifier to find boundaries with.")
            return {}
        from facegen.latent.boundaries import classifier_boundaries

        directions = classifier_boundaries(ctx.model, ctx.classifier, names, ctx.cfg.num_samples,
                                           ctx.generator(3), ctx.cfg.batch_size)
        with eval_mode(ctx.model):
            base = ctx.model.latent_prior(4, ctx.generator(4)).float()
        scales, what = ctx.cfg.boundary_edit_scales, "samples moved along the classifier boundary normal"
    else:
        codes = encode_split(ctx.model, ctx.train, ctx.cfg.batch_size, ctx.rt)
        directions = mean_difference_vectors(codes, ctx.train.attrs, names)
        with eval_mode(ctx.model), ctx.rt.autocast():
            base = ctx.model.encode(ctx.test_images(4)).float()
        scales, what = ctx.cfg.edit_scales, "test faces plus scale × mean-difference vector"
    shape, base = base.shape[1:], base.flatten(1)
    for name, direction in directions.items():
        with eval_mode(ctx.model), ctx.rt.autocast():
            imgs = ctx.model.decode(edit(base, direction, scales).view(-1, *shape)).float()
        rows = [imgs[i::len(base)] for i in range(len(base))]
        save_labelled_rows(rows, ctx.out_dir / f"attribute_{name}.png", row_labels=[f"face {i + 1}" for i in range(len(base))],
                           col_labels=[f"{s:+g}" for s in scales], title=f"{ctx.family}: {name} ({what})")
    return {}


def traversal(ctx: EvalContext) -> dict[str, float]:
    """Active dimensions of the posterior mean and a traversal of the most active ones."""
    codes = encode_split(ctx.model, ctx.test, ctx.cfg.batch_size, ctx.rt)
    active = active_dimensions(codes, ctx.cfg.active_dim_threshold)
    dims = torch.argsort(dimension_activity(codes), descending=True)[:ctx.cfg.traversal_dims]
    values = torch.linspace(-ctx.cfg.traversal_range, ctx.cfg.traversal_range, 10)
    z = traversal_latents(codes[0], dims, values).to(ctx.rt.device)
    with eval_mode(ctx.model), ctx.rt.autocast():
        imgs = ctx.model.decode(z).float()
    rows = [imgs[i * len(values):(i + 1) * len(values)] for i in range(len(dims))]
    save_labelled_rows(rows, ctx.out_dir / "traversal.png", row_labels=[f"dim {int(d)}" for d in dims],
                       col_labels=[f"{v:.1f}" for v in values],
                       title=f"{ctx.family}: traversal of the {len(dims)} most active dimensions "
                             f"({len(active)} active of {codes.shape[1]})")
    return {"active_dims": float(len(active))}


def test_losses(ctx: EvalContext) -> dict[str, float]:
    """The family's own validation losses on the test split (ELBO and KL for VAEs, VQ terms...)."""
    return {f"test_{k.split('/', 1)[1]}": v for k, v in evaluate_losses(ctx.model, ctx.test, ctx.cfg.batch_size, ctx.rt).items()}


def likelihood(ctx: EvalContext) -> dict[str, float]:
    """Importance-weighted NLL estimate in bits/dim on the test split."""
    x = ctx.test_images(len(ctx.test))
    gen = ctx.generator(5)
    nll = _batched(ctx, lambda b: ctx.model.nll_bits_per_dim(b, ctx.cfg.nll_importance_samples, gen), x)
    return {"nll_bits_per_dim": float(nll.mean())}


# (capability required, analysis). Order matters only for the order of figures in the report.
ANALYSES: list[tuple[str | None, Analysis]] = [
    (RECONSTRUCT, reconstruction),
    (None, samples),
    (ENCODE, interpolation),
    (EDIT, attribute_edits),
    (TRAVERSE, traversal),
    (None, test_losses),
    (LIKELIHOOD, likelihood),
]
