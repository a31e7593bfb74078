"""MLflow tracking: runs land in the SQLite store; an unreachable server never breaks a stage."""
from __future__ import annotations

import time
from pathlib import Path
import warnings

import numpy as np

from facegen.tracking import start_run, tracking_uri


def test_run_is_recorded_with_tags_params_metrics(tmp_path):
    import mlflow

    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with start_run("train", "vae", {"model": {"lr": 0.1}}, "abc123") as tracker:
        tracker.log_metrics({"train/loss": 1.5}, step=1)
        tracker.log_image(image, "epochs/x.png")
    mlflow.set_tracking_uri(tracking_uri())
    runs = mlflow.search_runs(experiment_names=["facegen"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "train:vae" and run.info.status == "FINISHED"
    assert run.data.tags["family"] == "vae" and run.data.tags["params_hash"] == "abc123"
    assert run.data.params["model.lr"] == "0.1"
    assert run.data.metrics["train_loss"] == 1.5


def test_unreachable_server_warns_once_and_continues(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with start_run("train", "vae", {"a": 1}, "h") as tracker:
            tracker.log_metrics({"x": 1.0}, step=1)
            tracker.log_artifact(__file__)
            done = True
    assert done and not tracker.active
    assert len([w for w in caught if "MLflow" in str(w.message)]) == 1
    assert time.perf_counter() - t0 < 30


# ---- one project-level store, wherever DVC runs the stage ---------------------------------------
def test_repo_root_is_the_original_repo_inside_a_dvc_experiment_copy(tmp_path, monkeypatch):
    from facegen.tracking import repo_root

    monkeypatch.delenv("FACEGEN_REPO_ROOT")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what DVC sets, also for --temp/--queue copies
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert repo_root() == tmp_path.resolve()
    monkeypatch.delenv("DVC_ROOT")  # run by hand inside such a copy: the layout still tells
    assert repo_root() == tmp_path.resolve()
    assert tracking_uri() != f"sqlite:///{copy / 'mlruns.db'}"


def _log_model_run(payload: bytes, tmp: Path) -> str:
    import mlflow

    (tmp / "model").mkdir(exist_ok=True)
    (tmp / "model" / "model.pt").write_bytes(payload)
    with start_run("train", "vae", {"a": 1}, "h") as tracker:
        tracker.log_artifact(tmp / "model" / "model.pt", "model")
        run_id = mlflow.active_run().info.run_id
    return run_id


def test_a_moved_or_copied_checkout_keeps_its_runs_and_writes_its_own_artifacts(tmp_path, monkeypatch):
    import shutil

    import mlflow

    from facegen.tracking import download_artifact

    old, moved, copied = tmp_path / "old", tmp_path / "moved", tmp_path / "copied"
    old.mkdir()
    monkeypatch.setenv("FACEGEN_REPO_ROOT", str(old))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default: sqlite:///<repo root>/mlruns.db
    first = _log_model_run(b"first", tmp_path)
    shutil.copytree(old, copied)
    shutil.move(old, moved)
    for root in (moved, copied):
        monkeypatch.setenv("FACEGEN_REPO_ROOT", str(root))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
        # reading a run logged before the move (its recorded path no longer exists for `moved`)
        got = download_artifact(first, "model/model.pt", tmp_path / f"dl-{root.name}")
        assert got.read_bytes() == b"first"
        second = _log_model_run(b"second", tmp_path)
        uri = mlflow.get_run(second).info.artifact_uri
        assert uri.startswith((root / "mlruns-artifacts").as_uri()), uri  # never into another checkout
        assert (root / "mlruns-artifacts").is_dir() and mlflow.get_run(first).info.artifact_uri.startswith(
            (root / "mlruns-artifacts").as_uri())
    assert not old.exists()


def test_missing_artifacts_are_one_clear_line(tmp_path, monkeypatch):
    import shutil

    import pytest

    from facegen.errors import TrackingError
    from facegen.tracking import download_artifact

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    run_id = _log_model_run(b"x", tmp_path)
    shutil.rmtree(tmp_path / "mlruns-artifacts")
    with pytest.raises(TrackingError, match=f"the artifacts of MLflow run {run_id} are missing: .* does not exist"):
        download_artifact(run_id, "model/model.pt", tmp_path / "dl")


def test_runs_carry_the_dvc_experiment_name(monkeypatch):
    import mlflow

    monkeypatch.setenv("DVC_EXP_NAME", "fishy-cere")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "d4575f9d")
    with start_run("train", "vae", {}, "h"):
        tags = mlflow.active_run().data.tags
    assert tags["dvc_experiment"] == "fishy-cere" and tags["dvc_baseline_rev"] == "d4575f9d"


def test_info_with_an_unreachable_server_pays_one_timeout(tmp_path, monkeypatch, capsys):
    """A server that accepts connections and never answers: one timeout, then every family says so."""
    import socket

    from facegen import cli
    from facegen.config import TrainConfig, VAEConfig
    from facegen.models import build
    from facegen.models.checkpoint import save_model

    cfg = VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(epochs=1))
    for family in ("vae", "beta_vae"):
        save_model(build(family, cfg, 16), tmp_path / "models" / family / "model.pt")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        t0 = time.perf_counter()
        assert cli.main(["info", "--models-dir", str(tmp_path / "models"), "--metrics-dir", str(tmp_path)]) == 0
        elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert out.count("from: tracking server unreachable at http://127.0.0.1:") == 2, out
    assert "no MLflow training run found" not in out
    assert elapsed < 2 * 2, f"{elapsed:.1f} s: more than one 2 s timeout"
