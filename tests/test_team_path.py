"""Nothing lost between machines: a DVC remote and an MLflow tracking server, for real.

One tiny clone of the repo trains ``train@vae`` (and ``prepare``) while logging to an
``mlflow server`` started here on loopback with its own artifact root; then:

* every stage that ran has a FINISHED run on the server whose artifacts are served by it
  (``mlflow-artifacts:/`` URIs, so they move with the server), and ``facegen sample --run-id``
  reads the model back from the server;
* ``dvc push`` to a local-folder remote (``dvc remote add -d``), ``git clone`` + ``dvc pull`` in a
  fresh folder: ``dvc status`` is clean and ``facegen sample`` works there without training.

Bounded: the server gets 60 s to start and is always stopped; stages run on tiny params.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.server import get_app_client

from facegen.config import VAEConfig
from facegen.models import build
from facegen.models.checkpoint import save_model
from facegen.tracking import start_run
from tests.mlflow_server import mlflow_server
from tests.test_pipeline import tiny_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
# What the pipeline's prepare and train stages read or hash (dvc.yaml deps), copied from the checkout.
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "metrics_tolerances.yaml", "metrics_noise.json")
PIPELINE_DIRS = ("stages", "src", "sweeps")


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on loopback: its own SQLite store and artifact root; stopped at the end."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running.url, running.root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, server):
    """A git + DVC clone that ran `dvc repro train@vae` logging to the server."""
    url, _ = server
    repo = tmp_path_factory.mktemp("team") / "trained"
    repo.mkdir()
    for name in PIPELINE_FILES:
        shutil.copy2(REPO / name, repo / name)
    for name in PIPELINE_DIRS:
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = tiny_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("FACEGEN_REPO_ROOT", "DVC_ROOT")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", MLFLOW_TRACKING_URI=url, OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh([*git, "commit", "-qm", "init"], repo, env)
    sh(["dvc", "repro", "train@vae"], repo, env, timeout=600)
    return repo, env


def test_every_stage_logs_to_the_server_and_the_model_reads_back(trained, server, tmp_path):
    from mlflow.tracking import MlflowClient

    repo, env = trained
    url, root = server
    client = MlflowClient(tracking_uri=url)
    runs = client.search_runs([client.get_experiment_by_name("facegen").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"prepare:data", "train:vae"} <= set(by_name), sorted(by_name)
    for run in by_name.values():
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri  # served, movable
    assert list((root / "artifacts").rglob("model.pt"))  # stored under the server's own artifact root
    out = tmp_path / "from_server.png"
    sh([str(BIN / "facegen"), "sample", "--run-id", by_name["train:vae"].info.run_id, "-n", "4", "--out", str(out)],
       repo, env)
    assert out.stat().st_size > 0

    # Lineage on the server: prepare logged the folder it wrote, train the same folder as its input, both
    # under the hash dvc.lock recorded (prepare's computed before the lock had it, train's read from it).
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (prepared,) = [o for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared"]
    for name, context, origin in (("prepare:data", "output", "computed"), ("train:vae", "training", "dvc.lock")):
        (data,) = client.get_run(by_name[name].info.run_id).inputs.dataset_inputs
        tags = {t.key: t.value for t in data.tags}
        assert (data.dataset.digest, tags["mlflow.data.context"], tags["dvc_hash_from"]) == (prepared["md5"], context, origin)
    # ... and the trained model is a registered version the CLI reads through the server.
    version = client.get_model_version_by_alias("facegen-vae", "current")
    assert version.run_id == by_name["train:vae"].info.run_id
    assert version.tags["params_hash"] == by_name["train:vae"].data.tags["params_hash"]
    out = tmp_path / "registered.png"
    sh([str(BIN / "facegen"), "sample", "--model", "models:/facegen-vae@current", "-n", "4", "--out", str(out)],
       repo, env)
    assert out.stat().st_size > 0


def test_push_then_pull_in_a_fresh_clone_needs_no_training(trained, tmp_path):
    repo, env = trained
    remote = tmp_path / "dvc-remote"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    sh(["dvc", "remote", "add", "-d", "team", str(remote)], repo, env)
    sh(["git", "add", "dvc.lock", ".dvc/config", "metrics"], repo, env)
    sh([*git, "commit", "-qm", "trained train@vae"], repo, env)
    sh(["dvc", "push"], repo, env)

    fresh = tmp_path / "fresh"
    sh(["git", "clone", "-q", str(repo), str(fresh)], tmp_path, env)
    assert not (fresh / "models").exists()
    sh(["dvc", "pull", "--with-deps", "train@vae"], fresh, env)
    status = sh(["dvc", "status", "train@vae"], fresh, env)
    assert "up to date" in status, status
    out = tmp_path / "fresh.png"
    sh([str(BIN / "facegen"), "sample", "--family", "vae", "-n", "4", "--out", str(out)], fresh, env)
    assert out.stat().st_size > 0
    assert not (fresh / ".facegen_state").exists()  # nothing was trained here


def test_a_model_replaced_on_the_server_is_refused(trained, server, tmp_path):
    """The documented failure: an anonymous client of an open server swaps a run's model.pt. The run's
    recorded SHA-256 (a write-once param) catches it: one line, exit 2, nothing written."""
    repo, env = trained
    url, _ = server
    client = mlflow.MlflowClient(tracking_uri=url)
    (run,) = client.search_runs([client.get_experiment_by_name("facegen").experiment_id],
                                filter_string="tags.stage = 'train' and tags.family = 'vae'")
    swap = tmp_path / "model.pt"
    swap.write_bytes((repo / "models" / "vae" / "model.pt").read_bytes() + b"\0")  # still loads as a zip
    client.log_artifact(run.info.run_id, str(swap), "model")
    out = tmp_path / "swapped.png"
    proc = subprocess.run([str(BIN / "facegen"), "sample", "--run-id", run.info.run_id, "--out", str(out)], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"error: model/model.pt of MLflow run {run.info.run_id} is not the file "
                                          "that run logged"), proc.stderr
    assert not out.exists()


def test_basic_auth_server_refuses_anonymous_clients(tmp_path):
    """docs/team.md's shared server: MLflow's basic-auth app. Anonymous reads, writes and deletes get 401;
    a user's stage run lands, and the CLI reads its model back with the user's credentials."""
    (tmp_path / "auth.ini").write_text("[mlflow]\ndefault_permission = READ\n"
                                       f"database_uri = sqlite:///{tmp_path / 'auth.db'}\nadmin_username = admin\n"
                                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                                       "auth_cache_ttl_seconds = 60\n")  # one PBKDF2 check per user, not per request
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-admin-secret-1", "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key"}
    with mlflow_server(tmp_path, "--app-name", "basic-auth", env=env) as running:
        url = running.url
        for method, path in (("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
                             ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/x/artifacts/model/model.pt"),
                             ("POST", "/api/2.0/mlflow/runs/delete")):
            request = urllib.request.Request(f"{url}{path}", method=method, data=b"{}" if method != "GET" else None)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401, (method, path)

        model = tmp_path / "models" / "vae" / "model.pt"
        save_model(build("vae", VAEConfig(latent_dim=4, widths=(8, 16)), 16), model)
        timeout = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}  # each login is a PBKDF2 check: slow on a busy CI box
        user = {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "ana",
                "MLFLOW_TRACKING_PASSWORD": "ana-has-a-long-password", **timeout}
        with pytest.MonkeyPatch.context() as mp:  # the admin's set-up, as docs/team.md shows it
            for key, value in {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "a-long-admin-secret-1",
                               **timeout}.items():
                mp.setenv(key, value)
            auth = get_app_client("basic-auth", tracking_uri=url)
            auth.create_user("ana", user["MLFLOW_TRACKING_PASSWORD"])
            experiment = mlflow.MlflowClient(url).create_experiment("facegen")
            auth.grant_user_permission("ana", "experiment", experiment, "EDIT")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in user.items():
                mp.setenv(key, value)
            with start_run("train", "vae", {}, "h") as tracker:
                tracker.log_artifact(model, "model")
                run_id = mlflow.active_run().info.run_id
            assert tracker.active
        out = tmp_path / "s.png"
        done = subprocess.run([str(BIN / "facegen"), "sample", "--run-id", run_id, "-n", "4", "--out", str(out),
                               "--models-dir", str(tmp_path / "models")], env={**os.environ, **user},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and out.stat().st_size > 0, done.stderr
