"""MLflow tracking: runs land in the SQLite store; an unreachable server never breaks a stage."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
import warnings

import numpy as np
import pytest

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


# ---- first use of a shared store: set up once, whoever comes first --------------------------------
RACE = """
import sys, time
from pathlib import Path
from facegen.tracking import start_run
go = Path(sys.argv[1])
while not go.exists():  # every process is imported and waiting: they open the fresh store together
    time.sleep(0.005)
with start_run("train", sys.argv[2], {"a": 1}, "h") as tracker:
    tracker.log_metrics({"x": 1.0}, step=1)
print("tracked" if tracker.active else "untracked")
"""


@pytest.mark.slow  # four processes importing mlflow at once: ~15 s alone on 2 cores
def test_four_stages_starting_at_once_on_a_fresh_store_are_all_recorded(tmp_path):
    """mlflow/mlflow#6490: without the set-up lock, 0-1 of 4 runs land and the store is left half-migrated."""
    import os
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(go), f"family{i}"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    time.sleep(4)  # let them import (the test stays correct if one is late: it then just finds the store)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [out.strip() for out, _ in outs] == ["tracked"] * 4, [err[-2000:] for _, err in outs]
    client = MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("facegen").experiment_id])
    assert sorted(r.data.tags["family"] for r in runs) == [f"family{i}" for i in range(4)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert (tmp_path / "mlruns.db.lock").exists()  # beside the store, git- and dvc-ignored as mlruns*


def _half_initialised(db: Path, runs: bool) -> None:
    """What a set-up killed halfway leaves: MLflow's first tables, no schema revision, maybe a leftover
    ``_alembic_tmp_`` table; ``runs``: a store that already holds a run and then lost its revision."""
    import sqlite3

    if runs:
        with start_run("train", "vae", {}, "h"):
            pass
        with sqlite3.connect(db) as con:
            con.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")  # an early revision
    else:
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256))")
            con.execute("CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY)")
            con.execute("CREATE TABLE _alembic_tmp_tags (key VARCHAR(250))")


def test_a_half_initialised_empty_store_is_rebuilt_and_records_the_run(tmp_path):
    import mlflow

    _half_initialised(tmp_path / "mlruns.db", runs=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with start_run("train", "vae", {"a": 1}, "h"):
            run_id = mlflow.active_run().info.run_id
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    rebuilt = [str(w.message) for w in caught if "rebuilt it" in str(w.message)]
    assert rebuilt == [f"the MLflow store {tmp_path / 'mlruns.db'} had a schema migration stopped halfway "
                       "(leftover table _alembic_tmp_tags) and held no runs: rebuilt it"], rebuilt


def _untracked_warning() -> str:
    """Run an empty stage; check that it ran untracked and return the one MLflow warning it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with start_run("train", "vae", {"a": 1}, "h") as tracker:
            pass
    assert not tracker.active
    (line,) = [str(w.message) for w in caught if "MLflow" in str(w.message)]
    return line


def test_a_half_initialised_store_holding_runs_is_named_in_one_line(tmp_path):
    from facegen.errors import TrackingError
    from facegen.tracking import download_artifact

    db = tmp_path / "mlruns.db"
    _half_initialised(db, runs=True)
    before = db.read_bytes()
    line = _untracked_warning()
    assert f"the MLflow store {db} holds 1 runs but has schema revision 451aebb31d03, not " in line
    assert "`mlflow db upgrade sqlite:///" in line and "\n" not in line
    assert db.read_bytes() == before  # never replaced
    with pytest.raises(TrackingError, match="holds 1 runs but has schema revision 451aebb31d03"):
        download_artifact("0" * 32, "model/model.pt", tmp_path / "dl")


@pytest.mark.parametrize("what", ["garbage", "folder"])
def test_a_store_that_is_not_a_database_is_named_in_one_line(tmp_path, what):
    """Both would have MLflow retry opening them for minutes before the stage went on untracked."""
    db = tmp_path / "mlruns.db"
    if what == "folder":
        db.mkdir()
    else:
        db.write_bytes(b"this is not SQLite " * 64)
    line = _untracked_warning()
    assert f"the MLflow store {db} is not {'a file' if what == 'folder' else 'a readable SQLite database'}" in line
    assert "move it aside" in line


def test_unusual_checkout_paths(tmp_path, monkeypatch):
    """Spaces, non-ASCII and '#' in the checkout path work; '%' and '?' (which an SQLAlchemy URL cannot
    spell: it would open another file) are refused in one line instead of writing a store elsewhere."""
    from facegen.tracking import download_artifact

    root = tmp_path / "a checkout ünïcødé #1"
    root.mkdir()
    monkeypatch.setenv("FACEGEN_REPO_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    run_id = _log_model_run(b"weights", root)
    assert (root / "mlruns.db").is_file() and (root / "mlruns-artifacts").is_dir()
    assert download_artifact(run_id, "model/model.pt", root / "dl").read_bytes() == b"weights"
    for name in ("per%20cent", "what?"):
        root = tmp_path / name
        root.mkdir()
        beside = set(tmp_path.iterdir())
        monkeypatch.setenv("FACEGEN_REPO_ROOT", str(root))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        line = _untracked_warning()
        assert f"cannot keep the MLflow store in {root}: its path holds" in line and "MLFLOW_TRACKING_URI" in line
        assert set(tmp_path.iterdir()) == beside and list(root.iterdir()) == []  # no store here or elsewhere


# ---- what comes back from a store is what was logged ----------------------------------------------
def test_a_replaced_model_file_is_refused(tmp_path, monkeypatch):
    """Anyone able to write a run's artifacts can swap model.pt; the SHA-256 the run recorded as a
    (write-once) param catches it, and the param cannot be rewritten to match."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from facegen.errors import TrackingError
    from facegen.tracking import download_artifact

    run_id = _log_model_run(b"trained weights", tmp_path)
    client = MlflowClient(tracking_uri())
    assert client.get_run(run_id).data.params["sha256/model/model.pt"] == hashlib.sha256(b"trained weights").hexdigest()
    assert download_artifact(run_id, "model/model.pt", tmp_path / "ok").read_bytes() == b"trained weights"

    swap = tmp_path / "swap" / "model.pt"
    swap.parent.mkdir()
    swap.write_bytes(b"someone else's weights")
    client.log_artifact(run_id, str(swap), "model")  # what an anonymous client of a server can do
    with pytest.raises(mlflow.exceptions.MlflowException, match="Changing param values is not allowed"):
        client.log_param(run_id, "sha256/model/model.pt", hashlib.sha256(swap.read_bytes()).hexdigest())
    with pytest.raises(TrackingError) as err:
        download_artifact(run_id, "model/model.pt", tmp_path / "dl")
    assert str(err.value).startswith(f"model/model.pt of MLflow run {run_id} is not the file that run logged")
    assert "rerun `dvc repro train@vae`" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "dl" / "model" / "model.pt").exists()  # the refused file is not left behind


def test_a_run_without_a_recorded_hash_is_refused_with_a_hint(tmp_path):
    import mlflow

    from facegen.errors import TrackingError
    from facegen.tracking import download_artifact

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pt").write_bytes(b"old run")
    with start_run("train", "vae", {}, "h"):  # logged the way facegen did before it recorded hashes
        mlflow.log_artifact(str(tmp_path / "model" / "model.pt"), "model")
        run_id = mlflow.active_run().info.run_id
    with pytest.raises(TrackingError, match=f"MLflow run {run_id} records no SHA-256 for model/model.pt .*"
                                            r"rerun `dvc repro train@vae` to log a verified one, or use --family"):
        download_artifact(run_id, "model/model.pt", tmp_path / "dl")
