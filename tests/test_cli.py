"""The `facegen` command on tiny trained models: every subcommand's output, and every user error.

Models are trained for one epoch on 16x16 blobs (seconds); photos are written in odd sizes and
formats so the prepare stage's resize + centre crop is exercised.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facegen import cli, tracking
from facegen.config import ClassifierConfig, DCGANConfig, TrainConfig, VAEConfig, VQVAEConfig
from facegen.models import FAMILIES, build
from facegen.models.checkpoint import save_classifier
from facegen.models.classifier import AttributeClassifier
from facegen.models.vae import VAE
from facegen.models.checkpoint import save_model
from tests.conftest import ATTRS, make_split

SIZE = 16  # image size of the tiny models
CELL = SIZE + 2  # a grid cell: image plus make_grid's 2 px padding


def train_and_save(family: str, cfg, models: Path) -> None:
    """One epoch on the tiny split: a *trained* model, not random weights."""
    torch.manual_seed(0)
    model = build(family, cfg, SIZE)
    opts = model.optimizers()
    for batch in make_split(n=64, size=SIZE).batches(16, torch.device("cpu")):
        model.train_step(batch, opts)
    model.epoch_end(0)
    save_model(model, models / family / "model.pt")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace: models/{vae,vqvae,dcgan,classifier}, prepared/, metrics/, photos."""
    root = tmp_path_factory.mktemp("cli")
    split = make_split(n=64, size=SIZE)
    (root / "prepared").mkdir()
    np.save(root / "prepared" / "train.npy", split.images.numpy())
    pd.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(len(split))], "split": "train",
                  **{a: split.attrs[:, i].int().numpy() for i, a in enumerate(ATTRS)}}
                 ).to_csv(root / "prepared" / "attrs.csv", index=False)
    models = root / "models"
    train_and_save("vae", VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(batch_size=16, lr=3e-3)), models)
    train_and_save("vqvae", VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1,
                                        num_embeddings=8, embedding_dim=4), models)
    train_and_save("dcgan", DCGANConfig(nz=4, ngf=4, ndf=4, inversion_steps=3, inversion_restarts=1), models)
    save_classifier(AttributeClassifier(ATTRS, ClassifierConfig(width=4), SIZE), models / "classifier" / "model.pt")
    (root / "metrics").mkdir()
    (root / "metrics" / "vae.json").write_text(json.dumps({"recon_mse": 0.0123, "fid_features": 4.5}))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(root / "a.jpg")  # portrait JPEG
    Image.fromarray(rng.integers(0, 255, (20, 50, 4), dtype=np.uint8)).save(root / "b.png")  # landscape RGBA
    (root / "notes.jpg").write_text("not an image")
    return root


def run(ws: Path, *args: str) -> int:
    """cli.main with the workspace's folders and the CPU."""
    return cli.main([*args, "--models-dir", str(ws / "models"), "--prepared-dir", str(ws / "prepared"),
                     "--device", "cpu"])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------------
def test_sample_grid_size_and_seed(ws, tmp_path):
    outs = {name: tmp_path / f"{name}.png" for name in ("s1", "s1_again", "s2")}
    for name, seed in (("s1", 1), ("s1_again", 1), ("s2", 2)):
        assert run(ws, "sample", "--family", "vae", "-n", "6", "--seed", str(seed), "--batch-size", "4",
                   "--out", str(outs[name])) == 0
    # 6 faces -> a 3-wide square-ish grid, 2 rows.
    assert Image.open(outs["s1"]).size == (3 * CELL + 2, 2 * CELL + 2)
    assert outs["s1"].read_bytes() == outs["s1_again"].read_bytes()
    assert outs["s1"].read_bytes() != outs["s2"].read_bytes()
    assert run(ws, "sample", "--family", "vae", "-n", "5", "--nrow", "5", "--out", str(tmp_path / "row.png")) == 0
    assert Image.open(tmp_path / "row.png").size == (5 * CELL + 2, CELL + 2)


def test_edit_strip(ws, tmp_path, capsys):
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert run(ws, "edit", str(ws / "a.jpg"), "--family", "vae", "--attr", "Smiling", "--strength", "2",
               "--steps", "4", "--aligned", "--out", str(one)) == 0
    assert "strengths 0, 0.67, 1.3, 2" in capsys.readouterr().out
    assert run(ws, "edit", str(ws / "a.jpg"), str(ws / "b.png"), "--family", "vae", "--attr", "Male",
               "--steps", "4", "--aligned", "--out", str(two)) == 0
    (w1, h1), (w2, h2) = Image.open(one).size, Image.open(two).size
    assert w1 > 3 * h1  # one row: input + 4 strengths
    assert w2 == w1 and h2 > 1.5 * h1  # a second photo adds a row


def test_edit_by_inversion_and_classifier_boundary(ws, tmp_path, capsys):
    """The GAN path: no encoder, no mean-difference vector; default strength is in boundary steps."""
    out = tmp_path / "gan.png"
    assert run(ws, "edit", str(ws / "b.png"), "--family", "dcgan", "--attr", "Smiling", "--steps", "3",
               "--boundary-samples", "32", "--aligned", "--out", str(out)) == 0
    assert "strengths 0, 1.5, 3" in capsys.readouterr().out
    w, h = Image.open(out).size
    assert w > 2.5 * h


@pytest.mark.parametrize("slerp", [False, True])
@pytest.mark.parametrize("family", ["vae", "vqvae"])
def test_interpolate_strip(ws, tmp_path, family, slerp):
    outs = [tmp_path / f"strip{steps}.png" for steps in (3, 8)]
    for steps, out in zip((3, 8), outs):
        assert run(ws, "interpolate", str(ws / "a.jpg"), str(ws / "b.png"), "--family", family, "--aligned",
                   "--steps", str(steps), *(["--slerp"] if slerp else []), "--out", str(out)) == 0
    (w3, h3), (w8, h8) = (Image.open(o).size for o in outs)
    assert h3 == h8 and w8 > 1.5 * w3  # A + steps + B columns


def test_info(ws, capsys):
    assert cli.main(["info", "--models-dir", str(ws / "models"), "--metrics-dir", str(ws / "metrics"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    vae, beta = info["families"]["vae"], info["families"]["beta_vae"]
    assert vae["trained"] and vae["metrics"]["recon_mse"] == pytest.approx(0.0123)
    assert vae["model_file"].endswith("vae/model.pt") and vae["modified"]
    assert not beta["trained"] and beta["train_command"] == "dvc repro train@beta_vae"
    assert info["families"]["dcgan"]["metrics"] is None
    assert info["other_models"] == ["classifier"]
    assert cli.main(["info", "--models-dir", str(ws / "models"), "--metrics-dir", str(ws / "metrics")]) == 0
    text = capsys.readouterr().out
    assert "beta_vae: not trained yet (run `dvc repro train@beta_vae`)" in text
    assert "recon_mse=0.0123" in text and "run `dvc repro evaluate@dcgan`" in text


def test_model_from_mlflow_run(ws, tmp_path, capsys):
    """--run-id loads the model the training stage logged; info then names that run."""
    with tracking.start_run("train", "vae", {"seed": 0}, "abc123") as tracker:
        tracker.log_artifact(ws / "models" / "vae" / "model.pt", "model")
    capsys.readouterr()  # mlflow's store set-up messages
    run_id = tracking.latest_run("train", "vae")["run_id"]
    out = tmp_path / "from_run.png"
    assert run(ws, "sample", "--run-id", run_id, "-n", "4", "--out", str(out)) == 0
    assert Image.open(out).size == (2 * CELL + 2, 2 * CELL + 2)
    assert run(ws, "sample", "--run-id", run_id, "--family", "dcgan", "--out", str(out)) == 2
    assert "holds a vae model, not dcgan" in one_line_error(capsys)
    assert run(ws, "sample", "--run-id", "0123456789abcdef", "--out", str(out)) == 2
    assert "cannot read MLflow run 0123456789abcdef" in one_line_error(capsys)
    assert cli.main(["info", "--models-dir", str(ws / "models"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["families"]["vae"]["mlflow_run"] == {
        "run_id": run_id, "git_commit": tracking.git_commit(), "params_hash": "abc123"}


class ConditionalVAE(VAE):
    """A VAE whose sampler declares attributes and records what it is given."""

    sample_attributes = ATTRS
    seen: list[torch.Tensor] = []

    def sample(self, n, generator, attrs=None):
        self.seen.append(attrs)
        return super().sample(n, generator)


def test_conditional_sampling_uses_the_sampler_attributes(ws, tmp_path, monkeypatch):
    """A sampler that declares its attributes gets the --attr values; the others follow the data."""
    monkeypatch.setitem(FAMILIES, "vae", f"{__name__}:ConditionalVAE")
    monkeypatch.setattr(ConditionalVAE, "seen", [])
    assert run(ws, "sample", "--family", "vae", "-n", "40", "--attr", "Smiling=0", "--out", str(tmp_path / "c.png")) == 0
    attrs = torch.cat(ConditionalVAE.seen)
    assert attrs.shape == (40, 2) and (attrs[:, 0] == 0).all()
    assert 0 < attrs[:, 1].mean() < 1  # Male drawn from the training faces, not forced


# ------------------------------------------------------------------------------------------------
# User errors: one line on stderr, exit code 2
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["edit", "{ws}/notes.jpg", "--family", "vae", "--attr", "Smiling"], "notes.jpg is not an image"),
    (["interpolate", "{ws}/a.jpg", "{ws}/notes.jpg", "--family", "vae"], "notes.jpg is not an image"),
    (["sample", "--family", "beta_vae"], "beta_vae is not trained yet"),
    (["sample", "--family", "beta_vae"], "run `dvc repro train@beta_vae`"),
    (["sample", "--family", "gpt"], "unknown family 'gpt'; known: vae, beta_vae"),
    (["sample"], "--family"),
    (["edit", "{ws}/a.jpg", "--aligned", "--family", "vae", "--attr", "Bald"], "'Bald' is unknown to the prepared data"),
    (["edit", "{ws}/a.jpg", "--aligned", "--family", "vae", "--attr", "Bald"], "known: Smiling, Male"),
    (["edit", "{ws}/a.jpg", "--aligned", "--family", "dcgan", "--attr", "Bald"], "unknown to the attribute classifier"),
    (["edit", "{ws}/a.jpg", "--family", "vae", "--attr", "Smiling"], "no face found in "),
    (["sample", "--family", "vae", "--attr", "Smiling=1"], "vae samples cannot be conditioned"),
    (["sample", "--family", "vae", "--attr", "Smiling=1", "--attr", "Smiling=0"],
     "--attr Smiling is given twice (Smiling=1 and Smiling=0); keep one"),
    (["sample", "--family", "vqvae"], "no fitted prior"),
    (["sample", "--run-id", "0123456789abcdef"], "no MLflow store at sqlite:"),
])
def test_user_errors(ws, capsys, args, message):
    assert run(ws, *[a.format(ws=ws) for a in args]) == 2
    assert message in one_line_error(capsys)


def test_missing_prepared_data_names_the_stage(ws, tmp_path, capsys):
    assert cli.main(["edit", str(ws / "a.jpg"), "--aligned", "--family", "vae", "--attr", "Smiling", "--device", "cpu",
                     "--models-dir", str(ws / "models"), "--prepared-dir", str(tmp_path / "nowhere")]) == 2
    assert "run `dvc repro prepare`" in one_line_error(capsys)


def test_family_that_cannot_encode(ws, capsys, monkeypatch):
    monkeypatch.setattr(VAE, "capabilities", frozenset())
    assert run(ws, "interpolate", str(ws / "a.jpg"), str(ws / "b.png"), "--family", "vae") == 2
    err = one_line_error(capsys)
    assert "vae cannot encode photos" in err and "families that can: dcgan, vqvae" in err


@pytest.mark.parametrize("args, message", [
    (["sample", "--family", "vae", "--out", "grid.gif"], "must end in .png"),
    (["sample", "--family", "vae", "--attr", "Smiling"], "NAME=1"),
    (["edit", "{ws}/a.jpg", "--family", "vae", "--attr", "Smiling", "--steps", "1"], "at least 2"),
    (["edit", "{ws}/a.jpg", "--family", "vae"], "--attr"),
    (["frobnicate"], "invalid choice"),
    (["interpolate", "{ws}/a.jpg", "{ws}/missing.jpg", "--family", "vae"], "missing.jpg: no such file"),
])
def test_usage_errors(ws, capsys, args, message):
    """argparse's own errors (checked before any model loads) are one line and exit code 2 too."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(ws=ws) for a in args])
    assert exit_info.value.code == 2
    assert message in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_gpu(ws, capsys):
    assert cli.main(["sample", "--family", "vae", "--device", "cuda", "--models-dir", str(ws / "models")]) == 2
    assert "no CUDA device" in one_line_error(capsys)


def test_console_script_error(ws):
    """The installed `facegen` script: exit code 2 and a single stderr line, no traceback."""
    script = Path(sys.executable).with_name("facegen")
    assert script.is_file(), "reinstall the package (pip install -e .) to create the facegen script"
    proc = subprocess.run([str(script), "edit", str(ws / "missing.jpg"), "--family", "vae", "--attr", "Smiling",
                           "--models-dir", str(ws / "models")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: argument PHOTO: {ws / 'missing.jpg'}: no such file "
                                   "(see `facegen edit --help`)")
