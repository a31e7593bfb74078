"""The ``reference`` stage: real-vs-real floors, and the real faces' Inception features, computed once.

Every generated-vs-real number needs a reference: two real samples of the same faces do not score
0 (FID is biased upward at small N). This stage scores the first training faces against the test
faces with exactly the sample counts evaluate@<family> uses (``inception_samples`` generated images
against ``inception_real`` test faces for Inception FID/KID; ``num_samples`` against as many test
faces for the classifier-feature metrics), writes them to ``metrics/reference.json``, and caches
the test faces' Inception features (``data/reference/inception_test.npy``) so no evaluate stage
recomputes them (~1 min of the Inception network each on 2 CPU cores). It also writes the lossless
codecs' bits/dim on the first ``nll_images`` test faces, the faces every family's NLL is scored on
(``evaluation/codec.py``): the same for every family, so measured once, here.
"""
from __future__ import annotations

import torch

from facegen import artifacts
from facegen.config import Params, params_hash, to_dict
from facegen.data.dataset import FaceSplit, load_split
from facegen.evaluation.codec import codec_baselines
from facegen.evaluation.distribution import frechet_distance, kernel_distance, precision_recall_density_coverage
from facegen.evaluation.inception import inception_features, reference_scores
from facegen.models.checkpoint import load_attribute_classifier
from facegen.runtime import seed_everything, setup_runtime
from facegen.tracking import start_run


def _first(split: FaceSplit, n: int, device: torch.device) -> torch.Tensor:
    return split.batch(torch.arange(min(n, len(split))), device).images


def reference(params: Params) -> dict[str, float]:
    cfg, attrs = params.evaluate, params.data.attributes
    rt = setup_runtime(params.runtime)
    seed_everything(params.seed)
    train, test = (load_split(artifacts.PREPARED, s, attrs) for s in ("train", "test"))
    logged = {"seed": params.seed, "evaluate": to_dict(cfg)}
    with start_run("reference", "real", logged, params_hash(params.seed, cfg), params.tracking.experiment) as tracker:
        tracker.log_dataset(artifacts.PREPARED, to_dict(params.data), context="evaluation")
        f_test = inception_features(_first(test, cfg.inception_real, rt.device), device=rt.device)
        f_train = inception_features(_first(train, cfg.inception_samples, rt.device), device=rt.device)
        artifacts.write_npy(artifacts.REFERENCE_INCEPTION, f_test.numpy())
        metrics = reference_scores(f_train, f_test, kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size,
                                   seed=params.seed)
        metrics.update(codec_baselines(test.images[:cfg.nll_images].numpy()))  # uint8 NHWC, as prepared
        classifier = load_attribute_classifier(rt.device)
        if classifier is not None:  # the classifier-feature floor, at evaluate's sample_quality sizes
            n = min(cfg.num_samples, len(test), len(train))
            c_test, c_train = (classifier.features(_first(s, n, rt.device)).cpu() for s in (test, train))
            kid, kid_std = kernel_distance(c_test, c_train, cfg.kid_subsets, cfg.kid_subset_size, params.seed)
            metrics.update({"fid_facegen": frechet_distance(c_test, c_train), "kid_facegen": kid,
                            "kid_facegen_std": kid_std, **precision_recall_density_coverage(c_test, c_train, cfg.prdc_k)})
        artifacts.write_json(metrics, artifacts.REFERENCE_METRICS)
        tracker.log_metrics(metrics)
        tracker.log_artifact(artifacts.REFERENCE_METRICS)
    return metrics
