"""The ``extract_codes`` stage: encode every split once with the trained VQ-VAE.

The prior then trains on int16 code maps (5 MB for the default train split) instead of re-running
the encoder every epoch as the notebook did. ``meta.json`` records what the prior needs to know
about the codes (codebook size, grid, image size) so ``fit_prior`` depends on ``data/codes`` only.
"""
from __future__ import annotations

import json
import shutil

from facegen import paths
from facegen.config import Params, params_hash, to_dict
from facegen.data.codes import save_codes
from facegen.data.dataset import SPLITS, load_split
from facegen.errors import CheckpointError
from facegen.models.vqvae import VQVAE, plot_code_usage, split_codes, usage_stats
from facegen.runtime import setup_runtime
from facegen.tracking import start_run
from facegen.training.checkpoint import load_model

FAMILY = "vqvae"
ENCODE_BATCH = 256


def extract_codes(params: Params) -> dict[str, float]:
    rt = setup_runtime(params.runtime)
    model = load_model(paths.model_file(FAMILY), rt.device)
    if not isinstance(model, VQVAE):
        raise CheckpointError(f"{paths.model_file(FAMILY)} holds a {model.family} model, not a VQ-VAE")
    out = paths.CODES
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    digest = params_hash(model.cfg)
    with start_run("extract_codes", FAMILY, {"model": to_dict(model.cfg)}, digest, params.tracking.experiment) as tracker:
        for split in SPLITS:
            codes = split_codes(model, load_split(paths.PREPARED, split, params.data.attributes), rt, ENCODE_BATCH)
            save_codes(out, split, codes.numpy())
            counts, stats = usage_stats(codes, model.cfg.num_embeddings)
            metrics.update({f"{split}_{k}": v for k, v in stats.items()})
            if split == "train":
                plot_code_usage(counts, out / "code_usage.png",
                                f"train code usage: {stats['codes_used']:.0f}/{model.cfg.num_embeddings} codes, "
                                f"perplexity {stats['perplexity']:.1f}")
        shutil.copyfile(paths.PREPARED / "attrs.csv", out / "attrs.csv")
        meta = {"num_codes": model.cfg.num_embeddings, "grid": [model.grid, model.grid],
                "image_size": model.image_size, **metrics}
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        tracker.log_metrics(metrics)
        tracker.log_artifact(out / "code_usage.png")
        tracker.log_artifact(out / "meta.json")
    return metrics
