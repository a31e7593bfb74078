"""Nothing silently wrong: diverged training, stale resumable state, run-dependent DVC outputs,
attribute files in the other common encoding.

Real tiny models and data; faults are injected the way they happen (a NaN weight, a state file
from other code or another architecture, a 0/1 attribute file), never by mocking the code under test.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from facegen.config import (ClassifierConfig, DataConfig, DCGANConfig, PriorConfig, SyntheticConfig, TrainConfig,
                            VQVAEConfig)
from facegen.data.celeba import CelebaLayout, _read_attributes
from facegen.data.prepare import prepare
from facegen.errors import DataError, TrainingDivergedError
from facegen.models import build
from facegen.models.classifier import AttributeClassifier
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import seed_everything
from facegen.models.checkpoint import safe_load, save_model
from facegen.training.loop import fit
from facegen.training.state import STATE_FORMAT, code_hash
from tests.conftest import ATTRS, make_split
from tests.stage_repo import make_repo, run_stage
from tests.test_prior import code_split

TRAIN = TrainConfig(epochs=2, batch_size=16, lr=1e-3)


def _trainable(kind: str, rt):  # noqa: ANN001, ANN202 - (model, train split, params key)
    """Each kind of model the one loop trains: the four families' architectures, the classifier, the prior."""
    torch.manual_seed(0)
    if kind == "vae":
        from facegen.config import VAEConfig
        model = build("vae", VAEConfig(latent_dim=4, widths=(8, 16), train=TRAIN), 16)
    elif kind == "vqvae":
        model = build("vqvae", VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1,
                                           num_embeddings=8, embedding_dim=4, train=TRAIN), 16)
    elif kind == "dcgan":
        model = build("dcgan", DCGANConfig(nz=8, ngf=8, ndf=8, train=TRAIN), 16)
    elif kind == "classifier":
        model = AttributeClassifier(ATTRS, ClassifierConfig(width=4, train=TRAIN), 16)
    else:
        model = PixelCNNPrior(PriorConfig(hidden=8, layers=2, train=TRAIN), 12, (5, 6), ATTRS)
    data = code_split(48, 0) if kind == "prior" else make_split(48, 16)
    key = {"classifier": "classifier.train", "prior": "prior.train"}.get(kind, f"models.{kind}.train")
    return rt.prepare(model), data, key


@pytest.mark.parametrize("kind", ["vae", "vqvae", "dcgan", "classifier", "prior"])
def test_a_non_finite_loss_stops_training_naming_the_knob(kind, rt, tmp_path):
    model, data, key = _trainable(kind, rt)
    with torch.no_grad():  # a blown-up weight, as a too-high learning rate leaves it
        next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
    state, csv = tmp_path / "state.pt", tmp_path / "log.csv"
    with pytest.raises(TrainingDivergedError) as err:
        fit(model, data, None, TRAIN, rt, seed_everything(0), state_path=state, csv_path=csv, params_key=key)
    message = str(err.value)
    assert f"{model.family} training diverged in epoch 1 of 2" in message and f"lower {key}.lr" in message
    assert "\n" not in message
    assert not state.exists()  # nothing to resume from garbage
    assert pd.read_csv(csv).isna().any(axis=None)  # the log shows where it went wrong


@pytest.mark.slow  # one stage process
def test_a_real_divergence_exits_2_and_writes_no_model(tmp_path):
    """The issue's case end to end: train@vae with lr 10 on tiny data."""
    root = make_repo(tmp_path, {"models": {"vae": {"train": {"lr": 10.0}}}})
    proc = run_stage(root, "train", "--family", "vae")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines == [line for line in lines if "lower models.vae.train.lr (now 10)" in line] and len(lines) == 1
    assert "Traceback" not in proc.stderr
    assert not (root / "models" / "vae" / "model.pt").exists()


def test_non_finite_weights_are_never_saved(tmp_path, tiny_vae_cfg):
    model = build("vae", tiny_vae_cfg, 16)
    with torch.no_grad():
        next(model.parameters())[0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="1 of .* tensors are not finite"):
        save_model(model, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []  # not even a temp file


# ---- resumable state ---------------------------------------------------------------------------
def _fit_vae(cfg, rt, state: Path, epochs: int):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    model = rt.prepare(build("vae", cfg, 16))
    result = fit(model, make_split(48, 16), None, dataclasses.replace(cfg.train, epochs=epochs), rt,
                 seed_everything(0), state_path=state)
    return model, result


def _rewrite(state: Path, **changes) -> None:  # noqa: ANN003
    obj = safe_load(state)
    obj.update(changes)
    torch.save(obj, state)


@pytest.mark.parametrize("fault", ["other code", "old format", "other architecture", "unreadable"])
def test_a_state_that_does_not_match_is_set_aside_with_one_warning(fault, rt, tmp_path, tiny_vae_cfg):
    state = tmp_path / "train-vae-x.pt"
    _fit_vae(tiny_vae_cfg, rt, state, epochs=1)
    assert safe_load(state)["code"] == code_hash() and safe_load(state)["format"] == STATE_FORMAT
    cfg = tiny_vae_cfg
    if fault == "other code":  # same params and shapes, written by another version of the code
        _rewrite(state, code="0123456789ab")
    elif fault == "old format":
        _rewrite(state, format="facegen-train-state/1")
    elif fault == "other architecture":
        cfg = dataclasses.replace(tiny_vae_cfg, widths=(8, 8))
    else:
        state.write_bytes(state.read_bytes()[:100])
    reference, _ = _fit_vae(cfg, rt, tmp_path / "fresh.pt", epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, result = _fit_vae(cfg, rt, state, epochs=2)
    messages = [str(w.message) for w in caught if "training from epoch 1" in str(w.message)]
    assert len(messages) == 1 and str(state) in messages[0] and "stale" in messages[0]
    assert result.resumed_from_epoch == 0 and (tmp_path / "train-vae-x.stale.pt").is_file()
    # A fresh start is exactly a fresh start: nothing of the stale state leaked in.
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_matching_state_resumes(rt, tmp_path, tiny_vae_cfg):
    state = tmp_path / "s.pt"
    _fit_vae(tiny_vae_cfg, rt, state, epochs=1)
    _, result = _fit_vae(tiny_vae_cfg, rt, state, epochs=2)
    assert result.resumed_from_epoch == 1


def test_code_hash_changes_with_the_code_that_runs(tmp_path):
    """A stage script edited (same params, same shapes) gives another hash: its old state is not resumed."""
    import subprocess
    import sys

    script = tmp_path / "stage.py"
    body = "import facegen.training.loop\nfrom facegen.training.state import code_hash\nprint(code_hash())\n"
    hashes = []
    for variant in ("", "# one layer wrapped differently\n", ""):
        script.write_text(variant + body)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
        hashes.append(out.stdout.strip())
    assert hashes[0] == hashes[2] != hashes[1]


# ---- DVC outputs are a function of their inputs ------------------------------------------------
def test_prepare_twice_gives_identical_bytes_whatever_the_speed_knobs(tmp_path):
    """`data.workers` changes speed only: data/prepared must keep its hash, or every stage retrains."""
    synthetic = SyntheticConfig(num_images=60)
    outs = []
    for workers in (2, 1):
        cfg = DataConfig(root=str(tmp_path / "synthetic"), image_size=16, workers=workers, synthetic=synthetic)
        out = tmp_path / f"prepared-{workers}"
        summary = prepare(cfg, 7, out)
        assert summary.seconds > 0  # the timing still exists, for the log and MLflow
        outs.append({p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1]
    content = json.loads((tmp_path / "prepared-1" / "summary.json").read_text())
    assert set(content) == {"counts", "corrupt"}


def test_training_log_holds_no_timings(rt, tmp_path, tiny_vae_cfg):
    csv = tmp_path / "log.csv"
    timings: list[dict] = []
    torch.manual_seed(0)
    model = rt.prepare(build("vae", tiny_vae_cfg, 16))
    fit(model, make_split(32, 16), None, tiny_vae_cfg.train, rt, seed_everything(0), csv_path=csv,
        on_epoch=lambda epoch, row, images: timings.append(row))
    assert not {"seconds", "img_per_s"} & set(pd.read_csv(csv).columns)
    assert all(row["seconds"] > 0 and row["img_per_s"] > 0 for row in timings)  # MLflow still gets them


# ---- attribute files ---------------------------------------------------------------------------
def _attr_csv(tmp_path: Path, values: list[list[int]]) -> CelebaLayout:
    path = tmp_path / "list_attr_celeba.csv"
    pd.DataFrame([[f"{i:06d}.jpg", *row] for i, row in enumerate(values)],
                 columns=["image_id", "Smiling", "Male"]).to_csv(path, index=False)
    return CelebaLayout(tmp_path, path, tmp_path / "list_eval_partition.csv", "csv")


def test_a_zero_one_attribute_file_is_read_as_minus_one_one(tmp_path):
    table = _read_attributes(_attr_csv(tmp_path, [[0, 1], [1, 0], [0, 0]]))
    assert table[["Smiling", "Male"]].values.tolist() == [[-1, 1], [1, -1], [-1, -1]]


def test_an_ambiguous_attribute_file_names_what_was_found(tmp_path):
    with pytest.raises(DataError, match=r"column Smiling has values \[-1, 0, 1\]: expected CelebA's 1/-1 "
                                        r"\(or 0/1 throughout the file\)"):
        _read_attributes(_attr_csv(tmp_path, [[0, 1], [1, -1], [-1, 1]]))
