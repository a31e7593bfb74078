"""The time-to-quality benchmark (benchmarks/bench_time_to_quality.py): its measure on hand-made curves,
and one tiny interleaved race per family writing both curves to JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_time_to_quality import run, summarise, time_to_reach
from facegen.config import ClassifierConfig, DCGANConfig, TrainConfig, VAEConfig, VQVAEConfig, load_params
from facegen.models.classifier import AttributeClassifier
from tests.conftest import ATTRS, make_split

REPO = Path(__file__).resolve().parents[1]


def test_time_to_reach_is_the_first_point_at_or_beyond_the_target():
    psnr = [(1.0, 20.0), (2.5, 24.0), (4.0, 23.0), (6.0, 26.0)]
    assert time_to_reach(psnr, 23.5, higher_better=True) == 2.5
    assert time_to_reach(psnr, 24.0, higher_better=True) == 2.5  # reaching counts, not only passing
    assert time_to_reach(psnr, 25.0, higher_better=True) == 6.0  # the dip at 4 s does not count
    assert time_to_reach(psnr, 27.0, higher_better=True) is None
    kid = [(3.0, 0.30), (6.0, 0.12), (9.0, 0.05)]
    assert time_to_reach(kid, 0.12, higher_better=False) == 6.0
    assert time_to_reach(kid, 0.01, higher_better=False) is None


def test_summary_ratio_and_target():
    notebook = [(10.0, 20.0), (20.0, 24.0), (30.0, 25.0)]
    summary = summarise(notebook, [(4.0, 22.0), (9.0, 25.5), (14.0, 27.0)], higher_better=True, precision="bf16")
    assert summary["notebook_final"] == 25.0 and summary["notebook_seconds"] == 30.0
    assert summary["facegen_seconds_to_notebook_final"] == 9.0 and summary["ratio"] == pytest.approx(0.3)
    assert summary["target_ratio"] == pytest.approx(1 / 3) and summary["met"] is True
    slow = summarise(notebook, [(20.0, 24.0), (40.0, 24.9)], higher_better=True, precision="fp32")
    assert slow["facegen_seconds_to_notebook_final"] is None and slow["ratio"] is None and slow["met"] is None
    assert slow["facegen_best"] == 24.9 and slow["target_ratio"] == 0.5


def test_tiny_race_writes_both_curves_per_family(tmp_path, rt, one_thread):
    two = TrainConfig(epochs=2, batch_size=32, lr=2e-3, schedule="onecycle")
    tiny = {"vae": VAEConfig(latent_dim=4, widths=(32, 64, 128, 256), train=two),  # the notebook's VAE widths are fixed
            "vqvae": VQVAEConfig(num_hiddens=8, num_residual_layers=0, num_embeddings=16, embedding_dim=4, train=two),
            "dcgan": DCGANConfig(nz=8, ngf=4, ndf=4, loss="hinge", ema_decay=0.9, train=two)}
    classifier = AttributeClassifier(ATTRS, ClassifierConfig(width=4), 64).eval().requires_grad_(False)
    out = tmp_path / "ttq.json"
    run(list(tiny), load_params(REPO / "params.yaml"), make_split(64, 64), make_split(16, 64, seed=1), rt,
        widths="notebook", epochs=2, facegen_epochs=None, classifier=classifier, out=out, overrides=tiny)
    result = json.loads(out.read_text())
    assert result["precision"] == "fp32" and result["train_images"] == 64 and result["val_images"] == 16
    assert {"cpu_flags", "auto_precision"} <= set(result["machine"]) and result["torch"]
    for family in tiny:
        entry = result[family]
        assert entry["metric"] == ("kid" if family == "dcgan" else "psnr_db")
        for run_name in ("notebook", "facegen"):
            curve = entry[run_name]["curve"]
            assert len(curve) == 2, (family, run_name)
            seconds = [s for s, _ in curve]
            assert 0 < seconds[0] < seconds[1], (family, run_name, seconds)
        assert entry["notebook_final"] == entry["notebook"]["curve"][-1][1]
        assert entry["notebook_seconds"] == entry["notebook"]["curve"][-1][0]
        if entry["ratio"] is not None:
            assert entry["ratio"] == pytest.approx(entry["facegen_seconds_to_notebook_final"] / entry["notebook_seconds"])
    assert 5 < result["vae"]["notebook_final"] < 40  # dB: a real reconstruction of [0, 1] faces
    assert result["dcgan"]["kid_features"] == "classifier"
    assert result["vqvae"]["notebook"]["architecture"]["num_hiddens"] == 8
    assert result["vqvae"]["facegen"]["config"]["num_embeddings"] == 16
