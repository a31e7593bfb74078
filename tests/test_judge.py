"""The edit judge's accuracy on decodes (editing.judge_readability) on known answers: a real tiny
classifier trained on the embedded synthetic faces reads clean faces better than blurred ones, and a
toy judge shows the note's threshold."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facegen.config import ClassifierConfig, TrainConfig
from facegen.data.dataset import FaceSplit
from facegen.data.synthetic import attribute_table, render, sample_params
from facegen.evaluation.editing import JUDGE_GAP, judge_accuracy, judge_readability
from facegen.models.classifier import AttributeClassifier
from facegen.runtime import Runtime
from facegen.training.loop import fit

ATTRS = ("Male", "Blond_Hair", "Black_Hair", "Wearing_Hat", "Eyeglasses")
SIZE = 64


def synthetic_faces(n: int, seed: int) -> FaceSplit:
    """``n`` embedded synthetic faces, centre-cropped square and resized to SIZE px (as prepare frames them)."""
    p = sample_params(seed, n)
    img = torch.from_numpy(render(p).copy()).permute(0, 3, 1, 2).float()
    h, w = img.shape[2:]
    top = (h - w) // 2
    img = F.interpolate(img[:, :, top:top + w], size=(SIZE, SIZE), mode="area")
    table = attribute_table(p)
    attrs = torch.tensor([[table[a][i] for a in ATTRS] for i in range(n)], dtype=torch.float32)
    return FaceSplit(img.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous(), attrs, ATTRS)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, ``sigma`` in pixels, radius 3 sigma, edges replicated."""
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(images)
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@pytest.fixture(scope="module")
def trained_judge() -> tuple[AttributeClassifier, FaceSplit]:
    torch.manual_seed(0)
    rt = Runtime(torch.device("cpu"), None, channels_last=False)
    cfg = ClassifierConfig(width=8, train=TrainConfig(epochs=3, batch_size=32, lr=5e-3))
    judge = AttributeClassifier(ATTRS, cfg, SIZE)
    fit(judge, synthetic_faces(384, 0), synthetic_faces(32, 1), cfg.train, rt, torch.Generator().manual_seed(0))
    return judge.eval(), synthetic_faces(256, 2)


def test_the_judge_reads_clean_faces_better_than_blurred_ones(trained_judge):
    judge, test = trained_judge
    x = test.batch(torch.arange(len(test)), torch.device("cpu"), False).images
    clean = judge_accuracy(judge, x, test.attrs)
    blurred = judge_accuracy(judge, gaussian_blur(x, 3.0), test.attrs)
    assert clean.shape == blurred.shape == (len(ATTRS),)
    assert float(clean.mean()) > 0.8  # it learned the attributes (0.87 after these 36 steps)
    assert float(blurred.mean()) < float(clean.mean()) - 0.1  # 0.62 at sigma 3 px: eyeglasses, hair colour fade
    # Through the report's function: blur plays a decoder that loses detail.
    r = judge_readability(judge, x, gaussian_blur(x, 3.0), test.attrs, test.attr_names, "blurry")
    assert r.metrics["judge_accuracy_real"] == pytest.approx(float(clean.mean()))
    assert r.metrics["judge_accuracy_recon"] == pytest.approx(float(blurred.mean()))
    assert r.metrics["judge_accuracy_recon_Eyeglasses"] == pytest.approx(float(blurred[ATTRS.index("Eyeglasses")]))
    same = judge_readability(judge, x, x, test.attrs, test.attr_names, "perfect")
    assert same.metrics["judge_accuracy_real"] == same.metrics["judge_accuracy_recon"] and same.notes == []


class ToyJudge:
    """A: channel 0 bright, B: channel 1 bright."""

    attributes = ("A", "B")

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(50 * (images.mean((2, 3))[:, :2] - 0.5))


def test_the_note_flags_a_judge_that_cannot_read_the_decodes():
    g = torch.Generator().manual_seed(0)
    truth = (torch.rand(200, 2, generator=g) > 0.5).float()
    real = torch.cat([0.25 + 0.5 * truth, torch.full((200, 1), 0.5)], 1)[:, :, None, None].expand(-1, -1, 4, 4)
    lost_b = real.clone()
    lost_b[:, 1] = 0.25  # the decoder drops B: the judge reads B as absent on every decode
    r = judge_readability(ToyJudge(), real, lost_b, truth, ("A", "B"), "toy")
    assert r.metrics["judge_accuracy_real"] == 1.0 and r.metrics["judge_accuracy_recon_A"] == 1.0
    assert r.metrics["judge_accuracy_recon_B"] == pytest.approx(1 - float(truth[:, 1].mean()))
    assert len(r.notes) == 1 and "B 1.00 -> " in r.notes[0] and "cannot score its edits" in r.notes[0]
    assert f"{JUDGE_GAP:.2f}" in r.notes[0]
    # Columns are matched by name; attributes the judge does not know are left out.
    swapped = judge_readability(ToyJudge(), real, real, truth[:, [1, 0]], ("B", "A"), "toy")
    assert swapped.metrics["judge_accuracy_real"] == 1.0
    assert judge_readability(ToyJudge(), real, real, truth, ("X", "Y"), "toy").metrics == {}
