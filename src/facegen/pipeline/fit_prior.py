"""The ``fit_prior`` stage: train the PixelCNN prior on extracted codes with the shared loop.

Outputs ``models/pixelcnn/model.pt`` (weights + config + what sampling needs: codebook size, grid,
attribute names and the training set's attribute combinations) and ``models/pixelcnn/metrics.json``
with the test negative log-likelihood of the code maps given their true attributes:

* ``code_nll_conditional_bits_per_code``: bits per code position (log2 of the codebook size is the
  uniform baseline);
* ``code_nll_conditional_bits_per_dim``: the same total divided by the image's 3·S² dimensions. This
  is the cost of the *codes* only; it is not an image likelihood (evaluate@vqvae reports that).
"""
from __future__ import annotations

import hashlib
import json
import math
from functools import partial

from facegen import artifacts
from facegen.config import Params, to_dict
from facegen.data.codes import CodeSplit, load_codes
from facegen.errors import DataError
from facegen.models.checkpoint import save_prior
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.pipeline.session import session
from facegen.runtime import Runtime, eval_mode
from facegen.training.loop import FitResult


def nll(prior: PixelCNNPrior, split: CodeSplit, batch_size: int, rt: Runtime, image_dims: int) -> dict[str, float]:
    """Mean test NLL in bits per code position and per image dimension."""
    total = 0.0
    with eval_mode(prior), rt.autocast():
        for batch in split.batches(batch_size, rt.device):
            total += float(prior.nll_nats(batch.images, batch.attrs).sum())
    bits_per_image = total / len(split) / math.log(2)
    return {"code_nll_conditional_bits_per_code": bits_per_image / math.prod(split.grid),
            "code_nll_conditional_bits_per_dim": bits_per_image / image_dims}


def fit_prior(params: Params) -> tuple[FitResult, dict[str, float]]:
    cfg, attrs = params.prior, params.data.attributes
    if not artifacts.CODES_META.is_file():
        raise DataError(f"{artifacts.CODES_META} missing: run `dvc repro extract_codes` first")
    meta = json.loads(artifacts.CODES_META.read_text())
    with session(params) as s:
        train, val, test = (load_codes(artifacts.CODES, split, attrs) for split in ("train", "val", "test"))
        rows, probs = PixelCNNPrior.attribute_table(train.attrs)
        prior = s.rt.prepare(PixelCNNPrior(cfg, meta["num_codes"], train.grid, attrs, rows, probs))
        codes_digest = hashlib.sha256(train.images.numpy().tobytes()).hexdigest()[:12]
        logged = {"seed": params.seed, "prior": to_dict(cfg), "attributes": list(attrs), "codes": meta,
                  "num_parameters": sum(p.numel() for p in prior.parameters())}
        with s.tracked("fit_prior", prior.family, logged, params.seed, attrs, cfg, codes_digest) as run:
            run.tracker.log_dataset(artifacts.CODES, {"data": to_dict(params.data), "codes": meta})
            result = run.fit(prior, train, val, cfg.train, artifacts.PRIOR_LOG, "prior.train")
            run.save(partial(save_prior, prior), artifacts.PRIOR_FILE, artifacts.PRIOR_LOG)
            metrics = nll(prior, test, cfg.train.batch_size, s.rt, 3 * meta["image_size"] ** 2)
            artifacts.write_json(metrics, artifacts.PRIOR_METRICS)
            run.tracker.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            run.tracker.log_artifact(artifacts.PRIOR_METRICS)
    return result, metrics
