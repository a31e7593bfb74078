"""Identity preservation: is a reconstruction or an edit still the same person? (real CelebA only)

Scored with dlib's 128-d face descriptor (:mod:`facegen.faces.identity`): the Euclidean distance
between the descriptor of a face and of its output, and the fraction of pairs below
:data:`~facegen.faces.identity.SAME_PERSON_THRESHOLD` = 0.6, the same-person threshold published
with dlib's ``dlib_face_recognition_resnet_model_v1`` (99.38% on LFW at that threshold).

The descriptor was trained on photos of real people. The embedded synthetic faces are cartoons
(flat ellipses and strokes): its distances there measure nothing it was trained to tell, so the
analysis runs only when ``data.source`` is ``celeba`` and otherwise returns no metric (a default
run's ``metrics/<family>.json`` and the gate's measured noise bands stay as they are) and a note.

Faces are already aligned crops in the training framing, so the face detector is not run: chips
are cut by :func:`facegen.faces.photos.aligned_identity_distances` from the template's face box.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from facegen.faces.align import Template
from facegen.faces.identity import SAME_PERSON_THRESHOLD
from facegen.faces.photos import aligned_identity_distances

IDENTITY_SOURCES = ("celeba",)  # data.source values whose faces are real photos


def identity_unavailable(source: str) -> str | None:
    """Why identity metrics are skipped for data ``source`` (a note for the report), or None."""
    if source in IDENTITY_SOURCES:
        return None
    return (f"Identity preservation (dlib face-descriptor distance) skipped: data.source is {source!r}; "
            "the descriptor is trained on photos of real people, not the synthetic cartoon faces, so it "
            "runs on real CelebA only (data.source: celeba).")


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) float in [0, 1] -> N uint8 (H, W, 3) arrays (what dlib reads)."""
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return list(x.permute(0, 2, 3, 1).cpu().numpy())


def identity_scores(sources: torch.Tensor, outputs: Sequence[torch.Tensor], template: Template,
                    kind: str) -> dict[str, float]:
    """``identity_dist_<kind>_mean`` and ``identity_same_person_rate_<kind>`` over every (source, output) pair.

    ``sources``: (N, 3, H, W) in [0, 1], aligned faces; ``outputs``: K tensors of the same shape, the
    k-th holding one output per source (e.g. the k-th attribute's edit of each face); ``template``:
    where the landmarks sit in these crops. Distances are unitless descriptor distances (0 = the
    same descriptor; same person below 0.6).
    """
    n = len(sources)
    if n == 0 or not outputs:
        return {}
    converted = [to_uint8(out) for out in outputs]
    per_source = [[out[i] for out in converted] for i in range(n)]
    dist = np.array(aligned_identity_distances(to_uint8(sources), per_source, template), dtype=float)
    return {f"identity_dist_{kind}_mean": float(dist.mean()),
            f"identity_same_person_rate_{kind}": float((dist < SAME_PERSON_THRESHOLD).mean())}
