"""MLflow tracking: runs land in the SQLite store; an unreachable server never breaks a stage."""
from __future__ import annotations

import time
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
