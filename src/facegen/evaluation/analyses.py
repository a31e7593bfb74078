"""The analyses evaluation runs for a family, each gated by a declared capability.

Every analysis writes its figure(s) under ``ctx.out_dir`` with the artifact names from DESIGN.md
and returns flat metrics. None looks at the family name: what runs is decided by
``model.capabilities`` (and ``edit_directions`` for how attribute vectors are found).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from facegen import artifacts
from facegen.evaluation.codebook import split_codes, usage_stats
from facegen.evaluation.codec import codec_baselines
from facegen.evaluation.context import EvalContext
from facegen.evaluation.disentanglement import disentanglement_scores
from facegen.evaluation.diversity import pairwise_distances
from facegen.evaluation.distribution import frechet_distance, kernel_distance, precision_recall_density_coverage
from facegen.evaluation.editing import edit_sweep, judge_readability, latent_scale, opposite_edit, unit
from facegen.evaluation.identity import identity_scores, identity_unavailable
from facegen.evaluation.inception import inception_features, inception_scores
from facegen.evaluation.likelihood import IWAE_FLAT_TOLERANCE, conditional_code_nll_bits_per_dim, iwae_curve, \
    likelihood_metrics
from facegen.faces.align import Template
from facegen.faces.template import faces_template
from facegen.latent.attributes import attribute_directions, edit, encode_split
from facegen.latent.interpolation import lerp, slerp
from facegen.latent.traversal import active_dimensions, dimension_activity, traversal_latents
from facegen.models.base import ADVERSARIAL, EDIT, ENCODE, LIKELIHOOD, QUANTIZE, RECONSTRUCT, TRAVERSE
from facegen.reporting.grids import save_grid, save_labelled_rows, save_strip
from facegen.reporting.plots import plot_code_usage, plot_diversity, plot_iwae_curve
from facegen.runtime import eval_mode
from facegen.training.loop import evaluate_losses

Analysis = Callable[[EvalContext], dict[str, float]]
DIVERSITY_SAMPLES = 500  # images per side in the diversity analysis (pairwise distances: O(n^2))


def _batched(ctx: EvalContext, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with eval_mode(ctx.model), ctx.rt.autocast():
        return torch.cat([fn(x[i:i + ctx.cfg.batch_size]).float() for i in range(0, len(x), ctx.cfg.batch_size)])


def _ssim(a: torch.Tensor, b: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mean per-image SSIM, computed ``chunk`` images at a time.

    torchmetrics filters five stacked copies of the whole input at once: ~3 GB for 1200 test
    faces at 64x64, which alone set the pipeline's peak memory. Per-image values are independent,
    so the chunked mean is the same number.
    """
    per_image = [structural_similarity_index_measure(a[i:i + chunk], b[i:i + chunk], data_range=1.0, reduction="none")
                 for i in range(0, len(a), chunk)]
    return torch.cat(per_image).mean()


def _test_reconstructions(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The test faces ``reconstruction`` scores and the family's reconstructions of them, both
    (N, 3, H, W) float in [0, 1] on the device: the whole split for an encoder, the first
    ``num_inversions`` for latent optimisation. Computed once per context (``reconstruction`` and
    ``judge_accuracy`` both read them; a GAN inversion is among the stage's costliest steps). Only the
    reconstructions are kept: the faces are re-read, which costs next to nothing."""
    if "reconstructions" not in ctx.shared:
        n = len(ctx.test) if ctx.model.reconstruction_method == "encoder" else min(len(ctx.test), ctx.cfg.num_inversions)
        ctx.shared["reconstructions"] = _batched(ctx, ctx.model.reconstruct, ctx.test_images(n)).clamp(0, 1)
    recon = ctx.shared["reconstructions"]
    return ctx.test_images(len(recon)).float(), recon


def reconstruction(ctx: EvalContext) -> dict[str, float]:
    """Test-set reconstruction error and a grid (top: originals, bottom: reconstructions)."""
    x, recon = _test_reconstructions(ctx)
    n = len(x)
    k = ctx.cfg.grid_size
    save_grid(torch.cat([x[:k], recon[:k]]), ctx.out_dir / "reconstructions.png", nrow=k)
    if ctx.model.reconstruction_method != "encoder":
        ctx.notes.append(f"Reconstructions are by {ctx.model.reconstruction_method} on {n} test images.")
    # PSNR per image, then the mean (as papers report it): the pooled form is just -10 log10(recon_mse)
    per_image_mse = ((recon - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return {
        "recon_mse": float(per_image_mse.mean()),
        "recon_psnr": float((-10 * torch.log10(per_image_mse)).mean()),
        "recon_ssim": float(_ssim(recon, x, ctx.cfg.batch_size)),
    }


def judge_accuracy(ctx: EvalContext) -> dict[str, float]:
    """The attribute classifier's accuracy against the true labels on the test faces ``reconstruction``
    scores and on this family's reconstructions of them (``editing.judge_readability``): whether the
    judge of the edit scores can read this family's decodes; a note when it cannot."""
    if ctx.classifier is None:
        ctx.notes.append("Judge accuracy on reconstructions skipped: no attribute classifier (run train_classifier).")
        return {}
    x, recon = _test_reconstructions(ctx)
    result = judge_readability(ctx.classifier, x, recon, ctx.test.attrs[:len(x)], ctx.test.attr_names, ctx.family)
    ctx.notes.extend(result.notes)
    return result.metrics


def samples(ctx: EvalContext) -> dict[str, float]:
    """A sample grid; the sampling speed (images/s, batch of grid_size², after one warm-up) goes to ``ctx.timings``."""
    n = ctx.cfg.grid_size ** 2
    with eval_mode(ctx.model), ctx.rt.autocast():
        ctx.model.sample(2, ctx.generator(1))
        t0 = time.perf_counter()
        imgs = ctx.model.sample(n, ctx.generator(2)).float()
        seconds = time.perf_counter() - t0
    save_grid(imgs, ctx.out_dir / "samples.png", nrow=ctx.cfg.grid_size)
    ctx.timings["sample_img_per_s"] = n / seconds
    return {}


def interpolation(ctx: EvalContext) -> dict[str, float]:
    """Linear and spherical paths between the codes of two test faces, decoded."""
    x = ctx.test_images(2)
    with eval_mode(ctx.model), ctx.rt.autocast():
        z = ctx.model.encode(x).float()
        rows = [ctx.model.decode(path(z[0], z[1], ctx.cfg.interpolation_steps)).float() for path in (lerp, slerp)]
    save_labelled_rows(rows, ctx.out_dir / "interpolation.png", row_labels=["linear", "slerp"],
                       title=f"{ctx.family}: interpolation between two test faces")
    return {}


def _draw_samples(ctx: EvalContext, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` samples (N, 3, H, W) in [0, 1] on the device, drawn ``evaluate.sample_batch_size`` at a time."""
    step = ctx.cfg.sample_batch_size
    with eval_mode(ctx.model), ctx.rt.autocast():
        return torch.cat([ctx.model.sample(min(step, n - i), generator).float()
                          for i in range(0, n, step)]).clamp(0, 1)


def sample_quality(ctx: EvalContext) -> dict[str, float]:
    """Sample realism in two feature spaces, each against real test faces, and the temperature sampled at.

    * Standard Inception-v3 (``fid_inception``, ``kid_inception``): the first ``inception_samples``
      samples against the ``inception_real`` test faces whose features the reference stage cached
      (same protocol, ``evaluation/inception.py``); the counts are returned with the scores.
    * The attribute classifier's features (``fid_facegen``, ``kid_facegen``, precision / recall /
      density / coverage): the first ``num_samples`` samples against as many test faces.

    One draw serves both (the larger of the two counts): at the GPU profile's 10,000 each, a second
    draw would double the prior's sampling time for samples from the same distribution.
    """
    out: dict[str, float] = {"sampling_temperature": ctx.model.sampling_temperature}
    n = min(ctx.cfg.num_samples, len(ctx.test)) if ctx.classifier is not None else 0
    n_inception = ctx.cfg.inception_samples if ctx.inception_reference is not None else 0
    fake = _draw_samples(ctx, max(n, n_inception), ctx.generator(6)) if max(n, n_inception) else None
    if ctx.inception_reference is None:
        ctx.notes.append("Inception FID/KID skipped: no cached test-face features (run the reference stage).")
    else:
        f_fake = inception_features(fake[:n_inception], device=ctx.rt.device)
        out.update(inception_scores(ctx.inception_reference, f_fake, kid_subsets=ctx.cfg.kid_subsets,
                                    kid_subset_size=ctx.cfg.kid_subset_size, seed=ctx.seed))
    if ctx.classifier is None:
        ctx.notes.append("Classifier-feature sample metrics skipped: no attribute classifier (run train_classifier).")
        return out
    real = ctx.test_images(n)
    f_real, f_fake = ctx.classifier.features(real).cpu(), ctx.classifier.features(fake[:n]).cpu()
    kid, kid_std = kernel_distance(f_real, f_fake, ctx.cfg.kid_subsets, ctx.cfg.kid_subset_size, ctx.seed)
    out.update({"fid_facegen": frechet_distance(f_real, f_fake), "kid_facegen": kid, "kid_facegen_std": kid_std,
                **precision_recall_density_coverage(f_real, f_fake, ctx.cfg.prdc_k)})
    return out


@dataclass
class EditSetup:
    """How a family edits: attribute directions, where edits start, and the figure caption."""

    directions: dict[str, torch.Tensor]
    starts: Callable[[int], torch.Tensor]  # n -> (n, *latent shape) start latents on the device
    what: str                              # figure caption


def edit_setup(ctx: EvalContext) -> EditSetup | None:
    """Directions by the family's ``edit_directions`` method; None (with a note) when impossible.

    Computed once per context (``attribute_edits`` and ``identity_edits`` both use it).
    """
    if "edit_setup" not in ctx.shared:
        ctx.shared["edit_setup"] = _edit_setup(ctx)
    return ctx.shared["edit_setup"]


def _edit_setup(ctx: EvalContext) -> EditSetup | None:
    boundary = ctx.model.edit_directions == "classifier_boundary"
    if boundary and ctx.classifier is None:
        ctx.notes.append("Attribute edits skipped: no attribute classifier to find boundaries with.")
        return None
    directions = attribute_directions(ctx.model, ctx.test.attr_names, ctx.train, ctx.cfg.batch_size, ctx.rt,
                                      classifier=ctx.classifier, num_samples=ctx.cfg.num_samples,
                                      generator=ctx.generator(3))
    if boundary:
        def starts(n: int) -> torch.Tensor:
            with eval_mode(ctx.model):
                return ctx.model.latent_prior(n, ctx.generator(4)).float()

        return EditSetup(directions, starts, "samples moved along the classifier boundary normal (InterFaceGAN)")

    def starts(n: int) -> torch.Tensor:
        with eval_mode(ctx.model), ctx.rt.autocast():
            return ctx.model.encode(ctx.test_images(n)).float()

    return EditSetup(directions, starts, "test faces moved along the mean-difference vector")


def _latent_decoder(ctx: EvalContext, shape: torch.Size) -> Callable[[torch.Tensor], torch.Tensor]:
    """Flat latents (N, D) -> images (N, 3, H, W) in [0, 1], decoded in batches as latents of ``shape``."""
    def decode(z: torch.Tensor) -> torch.Tensor:
        with eval_mode(ctx.model), ctx.rt.autocast():
            return torch.cat([ctx.model.decode(c.view(-1, *shape)).float().clamp(0, 1)
                              for c in z.split(ctx.cfg.batch_size)])

    return decode


def attribute_edits(ctx: EvalContext) -> dict[str, float]:
    """One figure per attribute and the classifier-scored strength sweep (``editing.edit_sweep``).

    Figures and metrics share units: a unit direction stepped by alpha x the family's mean distance
    between two start latents, so every family is compared at matched strength.
    """
    setup = edit_setup(ctx)
    if setup is None:
        return {}
    starts = setup.starts(ctx.cfg.edit_faces)
    shape, z = starts.shape[1:], starts.flatten(1)
    decode = _latent_decoder(ctx, shape)
    base, scale = z[:4], latent_scale(z)
    steps = tuple(a * scale for a in ctx.cfg.edit_figure_alphas)
    for name, direction in setup.directions.items():
        imgs = decode(edit(base, unit(direction), steps))
        rows = [imgs[i::len(base)] for i in range(len(base))]
        save_labelled_rows(rows, ctx.out_dir / f"attribute_{name}.png", row_labels=[f"face {i + 1}" for i in range(len(base))],
                           col_labels=[f"α {a:+g}" for a in ctx.cfg.edit_figure_alphas],
                           title=f"{ctx.family}: {name} ({setup.what}; α × distance between two faces)")
    if ctx.classifier is None:
        ctx.notes.append("Edit success/preservation skipped: no attribute classifier (run train_classifier).")
        return {}
    unknown = [n for n in setup.directions if n not in ctx.classifier.attributes]
    if unknown:
        ctx.notes.append(f"Edits of {unknown} not scored: the classifier was trained without them.")
    sweep = edit_sweep(decode, ctx.classifier, z, setup.directions, ctx.generator(7), ctx.cfg.edit_alphas,
                       ctx.cfg.edit_chance_directions, exclusive_groups=ctx.cfg.edit_exclusive_groups)
    ctx.notes.extend(sweep.notes)
    if sweep.curves:
        artifacts.write_json(sweep.curves, ctx.out_dir / artifacts.EDIT_CURVES)
    return sweep.metrics


def codebook_usage(ctx: EvalContext) -> dict[str, float]:
    """Test-split code usage of a quantised family (perplexity, codes used) and its histogram, and
    ``rate_raw_bits``: positions × log2 K, what the code maps cost without a prior (the likelihood
    analysis's ``rate_bits`` is their cost under the prior)."""
    num_codes = ctx.model.cfg.num_embeddings
    codes = split_codes(ctx.model, ctx.test, ctx.rt, ctx.cfg.batch_size)
    counts, stats = usage_stats(codes, num_codes)
    stats["rate_raw_bits"] = codes[0].numel() * math.log2(num_codes)
    plot_code_usage(counts, ctx.out_dir / "codebook_usage.png",
                    f"{ctx.family} test code usage: {stats['codes_used']:.0f}/{num_codes} codes, "
                    f"perplexity {stats['perplexity']:.1f}")
    return stats


def conditional_samples(ctx: EvalContext) -> dict[str, float]:
    """A row with every attribute off, then one row per attribute switched on alone, for families
    whose ``sample`` conditions on attributes; every row draws from the same generator state.

    Sharing the noise couples the draws, so a column changes where the attribute changes the
    model's conditionals and stays alike elsewhere. Speed goes to ``ctx.timings`` (MLflow only).
    """
    names, cols = ctx.model.sample_attributes, ctx.cfg.grid_size
    if not names:
        return {}
    rows, seconds = [], 0.0
    with eval_mode(ctx.model), ctx.rt.autocast():
        for on in [None, *range(len(names))]:
            attrs = torch.zeros(cols, len(names))
            if on is not None:
                attrs[:, on] = 1
            t0 = time.perf_counter()
            rows.append(ctx.model.sample(cols, ctx.generator(11), attrs).float())
            seconds += time.perf_counter() - t0
    save_labelled_rows(rows, ctx.out_dir / "conditional_samples.png",
                       row_labels=["all off", *(f"{n} on" for n in names)],
                       title=f"{ctx.family}: samples with one attribute on (same noise per column)")
    ctx.timings["conditional_samples_per_s"] = cols * len(rows) / seconds
    return {}


def sample_diversity(ctx: EvalContext) -> dict[str, float]:
    """Mode-collapse check (diversity.png) and where the adversarial game ended (mean D(x), D(G(z)))."""
    n = min(ctx.cfg.num_samples, DIVERSITY_SAMPLES, len(ctx.test))
    real, rng = ctx.test_images(n), ctx.generator(1)
    with eval_mode(ctx.model):
        fake = torch.cat([ctx.model.sample(len(idx), rng) for idx in torch.arange(n).split(ctx.cfg.batch_size)])
        metrics = {"d_real_test": float(ctx.model.critic(real).mean()),
                   "d_fake_samples": float(ctx.model.critic(fake).mean())}
        spaces = {"pixels": (real.flatten(1), fake.flatten(1))}
        if ctx.classifier is not None:
            spaces["classifier features"] = (ctx.classifier.features(real), ctx.classifier.features(fake))
        dists = {name: (pairwise_distances(r), pairwise_distances(f)) for name, (r, f) in spaces.items()}
    for name, (r, f) in dists.items():
        key = "sample_diversity_ratio" if name == "pixels" else "sample_diversity_ratio_features"
        metrics[key] = float(f.mean() / r.mean())
    plot_diversity(dists, ctx.out_dir / "diversity.png", ctx.family)
    ctx.notes.append(f"{ctx.family} sample diversity: mean pairwise pixel distance of samples is "
                     f"{metrics['sample_diversity_ratio']:.2f}x that of real test images (about 1 "
                     "when samples vary as much as real faces; well below 1 flags mode collapse, "
                     "or samples that are blurred or low in contrast).")
    return metrics


def side_by_side_rows(ctx: EvalContext) -> dict[str, float]:
    """This family's rows of the report's side-by-side figures: the first ``grid_size`` test faces
    reconstructed (with the originals), and ``grid_size`` samples from the report's seed.

    Written here, where the model is loaded, so the report only assembles files; ``rows.json`` says
    how the reconstructions were made, so a row from latent optimisation is labelled "(inversion)".
    """
    n = ctx.cfg.grid_size
    with eval_mode(ctx.model), ctx.rt.autocast():
        if RECONSTRUCT in ctx.model.capabilities:
            x = ctx.test_images(n)
            save_strip(x.float(), ctx.out_dir / artifacts.ROW_ORIGINALS)
            save_strip(ctx.model.reconstruct(x).float(), ctx.out_dir / artifacts.ROW_RECONSTRUCTIONS)
            artifacts.write_json({"reconstruction": ctx.model.reconstruction_method}, ctx.out_dir / artifacts.ROW_LABELS)
        save_strip(ctx.model.sample(n, ctx.generator(0)).float(), ctx.out_dir / artifacts.ROW_SAMPLES)
    return {}


def _identity_runs(ctx: EvalContext) -> bool:
    """Whether identity metrics apply to this data; else notes why (once for both analyses)."""
    reason = identity_unavailable(ctx.data_source)
    if reason is not None and reason not in ctx.notes:
        ctx.notes.append(reason)
    return reason is None


def _face_template(ctx: EvalContext) -> Template:
    """Where the 5 landmarks sit in the training crops: tells dlib where the face is in each crop.

    Measured once per context (both identity analyses use it; it runs the face detector on up to 200
    training faces)."""
    if "face_template" not in ctx.shared:
        ctx.shared["face_template"] = faces_template(ctx.train.images.numpy(), ctx.train.images.shape[1],
                                                     "the training split")
    return ctx.shared["face_template"]


def identity_reconstruction(ctx: EvalContext) -> dict[str, float]:
    """Face-descriptor distance from the first ``identity_faces`` test faces to their reconstructions."""
    if not _identity_runs(ctx):
        return {}
    x = ctx.test_images(ctx.cfg.identity_faces)
    recon = _batched(ctx, ctx.model.reconstruct, x).clamp(0, 1)
    return identity_scores(x.float(), [recon], _face_template(ctx), "recon")


def identity_edits(ctx: EvalContext) -> dict[str, float]:
    """Face-descriptor distance from unedited decodes to their edits, each attribute at its operating
    point (the step where its success peaks within 90 % preservation, from ``edit_curves.json``).

    The reference is the unedited decode, as in the edit sweep: reconstruction error is not counted
    as an edit effect (identity_dist_recon_mean has it), and GAN edits, which start from prior
    samples with no test photo behind them, are measured alike. Attributes whose operating step is 0
    (never flipped within budget) are left out: an edit that never happens keeps identity trivially.
    """
    if not _identity_runs(ctx):
        return {}
    if ctx.classifier is None:  # each edit's sign is the classifier's call, as for the edit scores
        ctx.notes.append("Identity of edits skipped: no attribute classifier (run train_classifier).")
        return {}
    curves_file = ctx.out_dir / artifacts.EDIT_CURVES
    if not curves_file.is_file():
        ctx.notes.append("Identity of edits skipped: attribute_edits wrote no edit curves.")
        return {}
    curves = json.loads(curves_file.read_text())
    setup = edit_setup(ctx)
    if setup is None:
        return {}
    steps = {n: c["alpha_at_target"] * curves["scale"] for n, c in curves["attributes"].items()
             if c["alpha_at_target"] > 0}
    if left_out := sorted(set(curves["attributes"]) - set(steps)):
        ctx.notes.append(f"Identity of edits leaves out {left_out}: they never flip the classifier within 90% preservation.")
    if not steps:
        return {}
    z = setup.starts(ctx.cfg.identity_faces)
    decode = _latent_decoder(ctx, z.shape[1:])
    z = z.flatten(1)
    source = decode(z)
    present = ctx.classifier.predict_proba(source) > 0.5
    judged = list(ctx.classifier.attributes)
    edits = [opposite_edit(decode, z, unit(setup.directions[n]), s, present[:, judged.index(n)]) for n, s in steps.items()]
    return identity_scores(source, edits, _face_template(ctx), "edit")


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


def disentanglement(ctx: EvalContext) -> dict[str, float]:
    """MIG, DCI and SAP of the posterior means against the data's ground-truth factors, if it has any."""
    if ctx.train.factors is None or ctx.test.factors is None:
        ctx.notes.append("Disentanglement metrics (MIG, DCI, SAP) skipped: the data has no ground-truth "
                         "factors (factors.csv), as with real CelebA.")
        return {}
    n = min(ctx.cfg.disentanglement_train, len(ctx.train))
    train_codes = encode_split(ctx.model, ctx.train, ctx.cfg.batch_size, ctx.rt, limit=n).numpy()
    test_codes = encode_split(ctx.model, ctx.test, ctx.cfg.batch_size, ctx.rt).numpy()
    return disentanglement_scores(train_codes, ctx.train.factors[:n].numpy(), test_codes, ctx.test.factors.numpy(),
                                  ctx.cfg.mig_bins, ctx.seed)


def likelihood(ctx: EvalContext) -> dict[str, float]:
    """Test NLL in bits/dim, ELBO and its terms, and the rate (evaluation/likelihood.py) on the first
    ``nll_images`` test faces, under the decoder σ the model trained; a decoder trained on plain MSE
    gets one fitted on the first ``nll_images`` validation faces. k =
    ``nll_importance_samples`` draws per face (one for a point-mass posterior, the VQ-VAE's).
    fp32, no autocast: bf16 decoder means are as coarse as the 8-bit bins being scored.
    Computed once per context: ``iwae_curve`` scores the same decoder (its σ)."""
    if "likelihood" not in ctx.shared:
        n = ctx.cfg.nll_images
        ctx.shared["likelihood"] = likelihood_metrics(ctx.model, ctx.val_images(n), ctx.test_images(n),
                                                      ctx.cfg.nll_importance_samples, ctx.generator(5),
                                                      ctx.cfg.batch_size)
    return dict(ctx.shared["likelihood"])


def iwae_bound_curve(ctx: EvalContext) -> dict[str, float]:
    """The IWAE bound against k = 1, 2, 4, ... ``iwae_curve_max_k`` on the first ``iwae_curve_images``
    test faces (``likelihood.iwae_curve``: one set of draws), with the decoder σ of the NLL row, so the
    curve says whether ``nll_importance_samples`` draws have converged. Writes ``iwae_curve.json``
    (the curve, per face, and the uniform and lossless-codec baselines on the same faces) and
    ``iwae_curve.png``; returns the gain k = 1 -> max, the smallest k within ``IWAE_FLAT_TOLERANCE``
    bits/dim of the max (the rule in docs/defaults.md), and the NLL row's k's gap to the max. Skipped,
    with a note, where the NLL row used one draw (a point-mass posterior: the bound is exact)."""
    row = likelihood(ctx)
    if row["iwae_k"] == 1:  # a point-mass posterior (the VQ-VAE's): one draw is exact, nothing to converge
        ctx.notes.append(f"IWAE curve skipped: {ctx.family}'s posterior is a point mass, so its bound is exact at k = 1.")
        return {}
    sigma = row["decoder_sigma"]
    trained = ctx.model.decoder_log_scale()  # per channel where trained so; else the row's fitted σ
    n = min(ctx.cfg.iwae_curve_images, len(ctx.test))
    nll_k = ctx.cfg.nll_importance_samples
    curve = iwae_curve(ctx.model, ctx.test_images(n), ctx.cfg.iwae_curve_max_k, ctx.generator(12),
                       ctx.cfg.batch_size, trained if trained is not None else math.log(sigma), extra_ks=(nll_k,))
    baselines = {"uniform": 8.0, **codec_baselines(ctx.test.images[:n].numpy())}
    metrics = curve.metrics(nll_k)
    artifacts.write_json({"k": list(curve.ks), "bits_per_dim": list(curve.bits_per_dim),
                          "per_face_bits_per_dim": [list(r) for r in curve.per_face], "faces": n,
                          "decoder_sigma": sigma, "flat_tolerance_bits_per_dim": IWAE_FLAT_TOLERANCE,
                          "baselines_bits_per_dim": baselines, **metrics}, ctx.out_dir / artifacts.IWAE_CURVE)
    labels = {"uniform": "uniform", "codec_png_bits_per_dim": "PNG", "codec_webp_bits_per_dim": "WebP"}
    plot_iwae_curve(list(curve.ks), list(curve.bits_per_dim), {labels[k]: v for k, v in baselines.items()},
                    ctx.out_dir / artifacts.IWAE_CURVE_FIGURE,
                    f"{ctx.family}: IWAE bound against k, mean of {n} test faces (k = 1 is the ELBO)",
                    IWAE_FLAT_TOLERANCE)
    return metrics


def code_likelihood(ctx: EvalContext) -> dict[str, float]:
    """Quantised families: -log2 P(codes | true attributes)/D under the prior, same faces as
    ``likelihood``. Not an image likelihood (``nll_bits_per_dim`` is)."""
    x = ctx.test_images(ctx.cfg.nll_images)
    return {"code_nll_conditional_bits_per_dim": conditional_code_nll_bits_per_dim(
        ctx.model, x, ctx.test.attrs[:len(x)].to(x.device), ctx.cfg.batch_size)}


# (capability required, analysis). Order matters only for the order of figures in the report.
ANALYSES: list[tuple[str | None, Analysis]] = [
    (RECONSTRUCT, reconstruction),
    (RECONSTRUCT, judge_accuracy),  # reuses reconstruction's decodes (and a GAN's inversions)
    (None, samples),
    (None, sample_quality),
    (ENCODE, interpolation),
    (EDIT, attribute_edits),
    (RECONSTRUCT, identity_reconstruction),  # real CelebA only: adds no metric on synthetic data
    (EDIT, identity_edits),
    (TRAVERSE, traversal),
    (TRAVERSE, disentanglement),
    (None, test_losses),
    (LIKELIHOOD, likelihood),
    (LIKELIHOOD, iwae_bound_curve),
    (QUANTIZE, code_likelihood),
    (QUANTIZE, codebook_usage),
    (None, conditional_samples),
    (ADVERSARIAL, sample_diversity),
    (None, side_by_side_rows),
]
