"""The ``fit_prior`` stage: train the PixelCNN prior on extracted codes with the shared loop.

Outputs ``models/pixelcnn/model.pt`` (weights + config + what sampling needs: codebook size, grid,
attribute names and the training set's attribute combinations) and ``models/pixelcnn/metrics.json``
with the test negative log-likelihood of the code maps:

* ``nll_bits_per_code``: bits per code position (log2 of the codebook size is the uniform baseline);
* ``nll_bits_per_dim``: the same total divided by the image's 3·S² dimensions. This is the cost of
  the *codes* only; it is not an image likelihood (the VQ-VAE decoder is deterministic).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from facegen import paths
from facegen.config import Params, PriorConfig, from_dict, params_hash, to_dict
from facegen.data.codes import CodeSplit, load_codes
from facegen.errors import DataError
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.models.vqvae import PRIOR_DIR as PRIOR_NAME
from facegen.runtime import Runtime, eval_mode, seed_everything, setup_runtime
from facegen.tracking import start_run
from facegen.training.checkpoint import atomic_save, load_checkpoint, load_weights
from facegen.training.loop import FitResult, fit

PRIOR_FORMAT = "facegen-prior/1"
PRIOR_DIR = paths.MODELS / PRIOR_NAME
PRIOR_LOG = paths.train_log("prior")


def save_prior(prior: PixelCNNPrior, path: Path) -> None:
    atomic_save({
        "format": PRIOR_FORMAT, "config": to_dict(prior.cfg), "num_codes": prior.num_codes,
        "grid": list(prior.grid), "attr_names": list(prior.attr_names),
        "attr_rows": prior.attr_rows.cpu(), "attr_probs": prior.attr_probs.cpu(),
        "state_dict": prior.state_dict(),
    }, path)


def load_prior(path: Path, device: str | torch.device = "cpu") -> PixelCNNPrior:
    ckpt = load_checkpoint(path, PRIOR_FORMAT, "a PixelCNN prior", device)
    cfg = from_dict(PriorConfig, ckpt["config"], f"{path}:config")
    prior = PixelCNNPrior(cfg, ckpt["num_codes"], tuple(ckpt["grid"]), tuple(ckpt["attr_names"]),
                          ckpt["attr_rows"], ckpt["attr_probs"])
    load_weights(prior, ckpt["state_dict"], path)
    return prior.to(device).eval()


def nll(prior: PixelCNNPrior, split: CodeSplit, batch_size: int, rt: Runtime, image_dims: int) -> dict[str, float]:
    """Mean test NLL in bits per code position and per image dimension."""
    total = 0.0
    with eval_mode(prior), rt.autocast():
        for batch in split.batches(batch_size, rt.device):
            total += float(prior.nll_nats(batch.images, batch.attrs).sum())
    bits_per_image = total / len(split) / math.log(2)
    return {"nll_bits_per_code": bits_per_image / math.prod(split.grid),
            "nll_bits_per_dim": bits_per_image / image_dims}


def fit_prior(params: Params) -> tuple[FitResult, dict[str, float]]:
    cfg = params.prior
    meta_path = paths.CODES / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} missing: run `dvc repro extract_codes` first")
    meta = json.loads(meta_path.read_text())
    rt = setup_runtime(params.runtime)
    generator = seed_everything(params.seed)
    attrs = params.data.attributes
    train, val, test = (load_codes(paths.CODES, s, attrs) for s in ("train", "val", "test"))
    rows, probs = PixelCNNPrior.attribute_table(train.attrs)
    prior = rt.prepare(PixelCNNPrior(cfg, meta["num_codes"], train.grid, attrs, rows, probs))
    codes_digest = hashlib.sha256(train.images.numpy().tobytes()).hexdigest()[:12]
    digest = params_hash(params.seed, attrs, cfg, codes_digest)
    state_path = Path(params.runtime.state_dir) / f"fit_prior-{digest}.pt"
    logged = {"seed": params.seed, "prior": to_dict(cfg), "attributes": list(attrs), "codes": meta,
              "num_parameters": sum(p.numel() for p in prior.parameters())}
    with start_run("fit_prior", PRIOR_NAME, logged, digest, params.tracking.experiment) as tracker:
        result = fit(prior, train, val, cfg.train, rt, generator, state_path=state_path, csv_path=PRIOR_LOG,
                     on_epoch=lambda epoch, row, _: tracker.log_metrics(row, step=epoch),
                     params_key="prior.train")
        save_prior(prior, PRIOR_DIR / "model.pt")
        metrics = nll(prior, test, cfg.train.batch_size, rt, 3 * meta["image_size"] ** 2)
        (PRIOR_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        tracker.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        tracker.log_artifact(PRIOR_DIR / "model.pt", "model")
        tracker.log_artifact(PRIOR_DIR / "metrics.json")
        tracker.log_artifact(PRIOR_LOG)
    state_path.unlink(missing_ok=True)
    return result, metrics
