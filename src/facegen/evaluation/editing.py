"""Scores for latent attribute edits, judged by the attribute classifier.

For each attribute direction and each start latent, we push the face *towards the opposite* of
what the classifier sees on the unedited decode (absent -> add the direction, present -> subtract
it) and ask:

* success: did the classifier's decision on the target attribute flip?
* preservation: which fraction of the *other* attributes kept their decision?
* feature distance: how far the edit moved the face in classifier-feature space, relative to the
  mean distance between two different source faces (1.0 = it became as different as another face).

The reference is the decoded start latent, not the original photo, so reconstruction error is
not counted as an edit effect, and GAN edits (which start from prior samples) are scored alike.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch


class Judge(Protocol):
    """What editing needs from the attribute classifier (tests substitute a toy)."""

    attributes: Sequence[str]

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...

    def features(self, images: torch.Tensor) -> torch.Tensor: ...


def opposite_edit(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, direction: torch.Tensor,
                  strength: float, present: torch.Tensor) -> torch.Tensor:
    """Decoded edits of flat latents ``z`` (N, D): ``strength`` x ``direction`` (D,) added where the
    attribute is absent (``present``: bool (N,), the judge's decision on the unedited decode) and
    subtracted where present, so every face is pushed towards the opposite of what it shows."""
    sign = 1.0 - 2.0 * present.float()  # +1 where absent, -1 where present
    direction = direction.to(z.device, z.dtype).flatten()
    return decode(z + strength * sign[:, None].to(z.device) * direction)


def edit_scores(decode: Callable[[torch.Tensor], torch.Tensor], judge: Judge, z: torch.Tensor,
                directions: dict[str, torch.Tensor], strength: float) -> dict[str, float]:
    """``edit_success_<Name>`` per attribute plus the means of success, preservation and distance.

    ``decode`` maps flat latents (N, D) to images; ``directions`` maps attribute names to (D,)
    vectors; ``strength`` multiplies them. Attributes the judge does not know are left out.
    """
    names = [n for n in directions if n in judge.attributes]
    if not names:
        return {}
    source = decode(z)
    p_src = judge.predict_proba(source) > 0.5
    f_src = judge.features(source)
    # Typical distance between two different faces: the scale that makes feature distances comparable.
    face_gap = (f_src - f_src.roll(1, 0)).norm(dim=1).mean().clamp_min(1e-12)
    success, kept, dist = {}, [], []
    for name in names:
        a = list(judge.attributes).index(name)
        edited = opposite_edit(decode, z, directions[name], strength, p_src[:, a])
        p_edit = judge.predict_proba(edited) > 0.5
        success[name] = float((p_edit[:, a] != p_src[:, a]).float().mean())
        others = [i for i in range(p_src.shape[1]) if i != a]
        if others:
            kept.append(float((p_edit[:, others] == p_src[:, others]).float().mean()))
        dist.append(float((judge.features(edited) - f_src).norm(dim=1).mean() / face_gap))
    out = {f"edit_success_{n}": v for n, v in success.items()}
    out["edit_success_mean"] = sum(success.values()) / len(success)
    if kept:
        out["edit_preservation_mean"] = sum(kept) / len(kept)
    out["edit_feature_dist_mean"] = sum(dist) / len(dist)
    return out
