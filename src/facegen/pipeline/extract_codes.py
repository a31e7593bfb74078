"""The ``extract_codes`` stage: encode every split once with the trained VQ-VAE.

The prior then trains on int16 code maps (5 MB for the default train split) instead of re-running
the encoder every epoch as the notebook did. ``meta.json`` records what the prior needs to know
about the codes (codebook size, grid, image size) so ``fit_prior`` depends on ``data/codes`` only.
"""
from __future__ import annotations

import shutil

from facegen import artifacts
from facegen.config import Params, params_hash, to_dict
from facegen.data.codes import save_codes
from facegen.data.dataset import SPLITS, load_split
from facegen.errors import CheckpointError
from facegen.evaluation.codebook import split_codes, usage_stats
from facegen.models.checkpoint import load_model
from facegen.models.vqvae import VQVAE
from facegen.reporting.plots import plot_code_usage
from facegen.runtime import setup_runtime
from facegen.tracking import start_run

FAMILY = "vqvae"
ENCODE_BATCH = 256


def extract_codes(params: Params) -> dict[str, float]:
    rt = setup_runtime(params.runtime)
    model = load_model(artifacts.model_file(FAMILY), rt.device)
    if not isinstance(model, VQVAE):
        raise CheckpointError(f"{artifacts.model_file(FAMILY)} holds a {model.family} model, not a VQ-VAE")
    out = artifacts.CODES
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    digest = params_hash(model.cfg)
    with start_run("extract_codes", FAMILY, {"model": to_dict(model.cfg)}, digest, params.tracking.experiment) as tracker:
        tracker.log_dataset(artifacts.PREPARED, to_dict(params.data), context="inference")
        for split in SPLITS:
            codes = split_codes(model, load_split(artifacts.PREPARED, split, params.data.attributes), rt, ENCODE_BATCH)
            save_codes(out, split, codes.numpy())
            counts, stats = usage_stats(codes, model.cfg.num_embeddings)
            metrics.update({f"{split}_{k}": v for k, v in stats.items()})
            if split == "train":
                plot_code_usage(counts, artifacts.CODE_USAGE,
                                f"train code usage: {stats['codes_used']:.0f}/{model.cfg.num_embeddings} codes, "
                                f"perplexity {stats['perplexity']:.1f}")
        shutil.copyfile(artifacts.PREPARED / "attrs.csv", out / "attrs.csv")
        meta = {"num_codes": model.cfg.num_embeddings, "grid": [model.grid, model.grid],
                "image_size": model.image_size, **metrics}
        artifacts.write_json(meta, artifacts.CODES_META)
        tracker.log_metrics(metrics)
        tracker.log_artifact(artifacts.CODE_USAGE)
        tracker.log_artifact(artifacts.CODES_META)
        tracker.log_dataset(artifacts.CODES, {"data": to_dict(params.data), "codes": meta}, context="output")
    return metrics
