"""Identity preservation in evaluation: real dlib descriptors on a real face, gated to real CelebA.

The face is scikit-image's ``data.astronaut()``, detected and aligned by ``facegen.faces`` the way
the CLI aligns photos, at 64 px (the default ``data.image_size``). Nothing is mocked: the
descriptor is dlib's network and the model a real (untrained, tiny) VAE.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from facegen import artifacts
from facegen.config import ClassifierConfig, EvaluateConfig
from facegen.data.dataset import FaceSplit
from facegen.evaluation.analyses import ANALYSES, _face_template, edit_setup, identity_edits, identity_reconstruction
from facegen.evaluation.context import EvalContext
from facegen.evaluation.identity import identity_scores
from facegen.faces.align import align
from facegen.faces.detect import detect_faces
from facegen.faces.identity import SAME_PERSON_THRESHOLD
from facegen.faces.template import generator_template
from facegen.models import build
from facegen.models.classifier import AttributeClassifier
from tests.conftest import ATTRS

SIZE = 64


def _as_batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """The astronaut's face, aligned to the training framing at 64 px: uint8 (64, 64, 3)."""
    photo = data.astronaut()
    faces, _ = detect_faces(photo)
    return align(Image.fromarray(photo), faces[0], generator_template(SIZE), SIZE).crop


def _split(crop: np.ndarray, n: int) -> FaceSplit:
    """``n`` copies of the face, each a little brighter, attributes alternating (both classes present)."""
    images = np.stack([np.clip(crop.astype(int) + 4 * i, 0, 255).astype(np.uint8) for i in range(n)])
    attrs = torch.tensor([[i % 2, (i // 2) % 2] for i in range(n)], dtype=torch.float32)
    return FaceSplit(torch.from_numpy(images), attrs, ATTRS)


def _ctx(crop: np.ndarray, source: str, rt, tmp_path, tiny_vae_cfg) -> EvalContext:  # noqa: ANN001
    torch.manual_seed(0)
    return EvalContext(model=build("vae", tiny_vae_cfg, SIZE).eval(), family="vae", train=_split(crop, 8),
                       test=_split(crop, 4), cfg=EvaluateConfig(batch_size=8, identity_faces=4), rt=rt, seed=0,
                       out_dir=tmp_path, classifier=AttributeClassifier(ATTRS, ClassifierConfig(width=4), SIZE).eval(),
                       data_source=source)


def test_a_face_is_itself_and_a_degraded_copy_or_other_image_is_farther(crop, rt, tmp_path, tiny_vae_cfg):
    template = _face_template(_ctx(crop, "celeba", rt, tmp_path, tiny_vae_cfg))
    face = _as_batch([crop])
    same = identity_scores(face, [face], template, "recon")
    assert same["identity_dist_recon_mean"] < 1e-6
    assert same["identity_same_person_rate_recon"] == 1.0
    mirrored = np.ascontiguousarray(crop[:, ::-1])
    blurred = np.asarray(Image.fromarray(crop).resize((8, 8), Image.BICUBIC).resize((SIZE, SIZE), Image.BICUBIC))
    coffee = np.asarray(Image.fromarray(data.coffee()).resize((SIZE, SIZE), Image.BICUBIC))
    # Measured: mirrored 0.22 (same person), blurred to 8 px 0.76, coffee 0.77 (not a person).
    others = identity_scores(face.repeat(3, 1, 1, 1), [_as_batch([mirrored, blurred, coffee])], template, "edit")
    assert 0.1 < others["identity_dist_edit_mean"]
    assert others["identity_same_person_rate_edit"] == pytest.approx(1 / 3)  # only the mirror image
    for other, same_person in ((mirrored, True), (blurred, False), (coffee, False)):
        d = identity_scores(face, [_as_batch([other])], template, "edit")["identity_dist_edit_mean"]
        assert d > same["identity_dist_recon_mean"] + 0.1
        assert (d < SAME_PERSON_THRESHOLD) == same_person


def test_celeba_context_reports_identity_of_reconstructions_and_edits(crop, rt, tmp_path, tiny_vae_cfg):
    ctx = _ctx(crop, "celeba", rt, tmp_path, tiny_vae_cfg)
    recon = identity_reconstruction(ctx)
    # identity_edits scores each attribute at the operating step attribute_edits' sweep found
    curves = {"scale": 1.0, "attributes": {a: {"alpha_at_target": 0.25} for a in ctx.classifier.attributes}}
    (tmp_path / artifacts.EDIT_CURVES).write_text(json.dumps(curves))
    edits = identity_edits(ctx)
    assert set(recon) == {"identity_dist_recon_mean", "identity_same_person_rate_recon"}
    assert set(edits) == {"identity_dist_edit_mean", "identity_same_person_rate_edit"}
    # an untrained VAE's blur is not the astronaut: far from the photo, no longer the same person
    assert recon["identity_dist_recon_mean"] > SAME_PERSON_THRESHOLD
    assert recon["identity_same_person_rate_recon"] == 0.0
    assert edits["identity_dist_edit_mean"] >= 0.0 and 0.0 <= edits["identity_same_person_rate_edit"] <= 1.0
    assert not any("Identity" in n for n in ctx.notes)


def test_synthetic_data_adds_no_identity_metric_only_a_note(crop, rt, tmp_path, tiny_vae_cfg):
    ctx = _ctx(crop, "synthetic", rt, tmp_path, tiny_vae_cfg)
    assert EvalContext.__dataclass_fields__["data_source"].default == "synthetic"
    assert identity_reconstruction(ctx) == {} and identity_edits(ctx) == {}
    notes = [n for n in ctx.notes if "Identity preservation" in n]
    assert len(notes) == 1 and "real CelebA only" in notes[0] and "synthetic" in notes[0]
    assert {identity_reconstruction, identity_edits} <= {analysis for _, analysis in ANALYSES}


def test_edit_setup_is_computed_once_per_context(crop, rt, tmp_path, tiny_vae_cfg):
    """attribute_edits and identity_edits share one set of attribute directions (and one note when
    there can be none), not two computations of it."""
    ctx = _ctx(crop, "celeba", rt, tmp_path, tiny_vae_cfg)
    first = edit_setup(ctx)
    assert first is not None and set(first.directions) == set(ATTRS)
    assert edit_setup(ctx) is first
    boundary = _ctx(crop, "celeba", rt, tmp_path, tiny_vae_cfg)
    boundary.model.edit_directions = "classifier_boundary"  # a GAN's kind of edit, without its classifier
    boundary.classifier = None
    assert edit_setup(boundary) is None and edit_setup(boundary) is None
    assert sum("Attribute edits skipped" in n for n in boundary.notes) == 1
