"""Side-by-side figures of every trained family: the same test faces reconstructed, and samples.

Models are loaded through the checkpoint and the GenerativeModel interface only: a family without
the RECONSTRUCT capability gets no reconstruction row (and a note), and a family whose
reconstructions come from latent optimisation is labelled "(inversion)" so nobody mistakes it for
an encoder's output.
"""
from __future__ import annotations

from pathlib import Path

import torch

from facegen import paths
from facegen.data.dataset import FaceSplit
from facegen.models.base import RECONSTRUCT
from facegen.reporting.grids import save_labelled_rows
from facegen.runtime import Runtime, eval_mode
from facegen.training.checkpoint import load_model

RECONSTRUCTIONS = paths.REPORTS / "comparison_reconstructions.png"
SAMPLES = paths.REPORTS / "comparison_samples.png"


def comparison_grids(families: list[str], test: FaceSplit, rt: Runtime, seed: int, n: int,
                     notes: list[str]) -> dict[str, Path]:
    """Write both comparison figures for ``families`` (those with a model file); returns their paths."""
    originals = test.batch(torch.arange(min(n, len(test))), rt.device, rt.channels_last).images
    recon_rows, recon_labels = [originals.float()], ["original"]
    sample_rows, sample_labels = [], []
    for family in families:
        if not paths.model_file(family).is_file():
            notes.append(f"{family}: no trained model at {paths.model_file(family)}; left out of the comparison figures.")
            continue
        model = load_model(paths.model_file(family), rt.device)
        model.load_companions(paths.MODELS)
        with eval_mode(model), rt.autocast():
            if RECONSTRUCT in model.capabilities:
                recon_rows.append(model.reconstruct(originals).float())
                suffix = "" if model.reconstruction_method == "encoder" else f"\n({model.reconstruction_method})"
                recon_labels.append(family + suffix)
            else:
                notes.append(f"{family}: no reconstructions (declares no '{RECONSTRUCT}' capability).")
            sample_rows.append(model.sample(n, torch.Generator().manual_seed(seed)).float())
            sample_labels.append(family)
    # Always written (a DVC output), even when only the originals row exists.
    out = {"reconstructions": save_labelled_rows(
            recon_rows, RECONSTRUCTIONS, row_labels=recon_labels,
            title="The same test faces: original (top) and each family's reconstruction")}
    if sample_rows:
        out["samples"] = save_labelled_rows(sample_rows, SAMPLES, row_labels=sample_labels,
                                            title="Random samples of each family (same seed)")
    return out
