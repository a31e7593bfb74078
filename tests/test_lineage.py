"""Lineage as DVC and MLflow users look for it: the data a run used, registered models, images across commits.

* every run names its input data as an MLflow dataset whose digest is the folder's DVC hash;
* every training registers a version of ``facegen-<family>`` and moves ``@current`` to it, and the
  CLI reads ``models:/...`` URIs from a SQLite store and from a real ``mlflow server``;
* the grids are DVC image plots, so ``dvc plots diff`` shows two commits' images; a β sweep's grids
  land in one MLflow run with the swept value as step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from facegen import artifacts, cli
from facegen.tracking import dvc_hash, start_run, tracking_uri
from tests.mlflow_server import mlflow_server
from tests.stage_repo import make_repo, write_prepared

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


# ---- datasets on runs ---------------------------------------------------------------------------
def test_dvc_hash_is_dvcs_own_and_comes_from_the_lock_while_the_folder_matches_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_prepared(tmp_path)
    (tmp_path / "data" / "prepared" / "extra").mkdir()
    (tmp_path / "data" / "prepared" / "extra" / "note.txt").write_text("nested files count too\n")
    digest, origin = dvc_hash(artifacts.PREPARED)
    assert origin == "computed" and digest.endswith(".dir") and len(digest) == 36
    sh([str(BIN / "dvc"), "init", "--no-scm", "-q"], tmp_path)
    sh([str(BIN / "dvc"), "add", "-q", "data/prepared"], tmp_path)
    (recorded,) = yaml.safe_load((tmp_path / "data" / "prepared.dvc").read_text())["outs"]
    assert digest == recorded["md5"]  # exactly what DVC records for the folder

    # dvc.lock is read first (no file is hashed)...
    locked = {**recorded, "path": "data/prepared", "md5": "0" * 32 + ".dir"}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"prepare": {"outs": [locked]}}}))
    assert dvc_hash(artifacts.PREPARED) == ("0" * 32 + ".dir", "dvc.lock")
    # ...but not by the stage that has just written the folder: the lock describes the previous output,
    # which can have the same files and sizes and other bytes (prepare on another CPU kind did)
    assert dvc_hash(artifacts.PREPARED, written=True) == (digest, "computed")
    # ...unless the folder no longer has the files and bytes it recorded: then it is hashed again
    with (tmp_path / "data" / "prepared" / "extra" / "note.txt").open("a") as fh:
        fh.write("changed outside DVC\n")
    changed, origin = dvc_hash(artifacts.PREPARED)
    assert origin == "computed" and changed not in (digest, locked["md5"])


def _vae_version(client, alias: str = "current"):
    return client.get_model_version_by_alias("facegen-vae", alias)


def test_training_logs_its_data_and_registers_a_version_the_cli_reads(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from facegen.config import load_params
    from facegen.pipeline.train import train_family

    root = make_repo(tmp_path, {"models": {"vae": {"train": {"epochs": 1}}}})  # the store: sqlite:///<tmp_path>/mlruns.db
    monkeypatch.chdir(root)
    train_family(load_params(), "vae")  # the train@vae stage's body, in this process: seconds, not a fresh interpreter
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("facegen").experiment_id], "tags.stage = 'train'")
    run = client.get_run(run.info.run_id)

    (data,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in data.tags}
    assert (data.dataset.name, data.dataset.digest) == ("prepared", dvc_hash(artifacts.PREPARED)[0])
    assert tags == {"mlflow.data.context": "training", "dvc_hash_from": "computed"}  # no dvc.lock here
    source = json.loads(data.dataset.source)
    assert data.dataset.source_type == "dvc" and source["path"] == "data/prepared"
    assert source["config"]["image_size"] == 16 and source["config"]["attributes"] == ["Smiling", "Male"]
    same_data = client.search_runs([run.info.experiment_id], f"datasets.digest = '{data.dataset.digest}'")
    assert [r.info.run_id for r in same_data] == [run.info.run_id]

    first = _vae_version(client)
    assert (str(first.version), first.run_id) == ("1", run.info.run_id)
    assert first.tags["params_hash"] == run.data.tags["params_hash"] and first.tags["git_commit"]
    # A second training moves the alias; version numbers keep counting.
    with start_run("train", "vae", {}, "second") as tracker:
        tracker.log_artifact(root / "models" / "vae" / "model.pt", "model")
        tracker.register_model()
    assert (str(_vae_version(client).version), _vae_version(client).tags["params_hash"]) == ("2", "second")

    out = tmp_path / "grid.png"
    for uri in ("models:/facegen-vae@current", "models:/facegen-vae/1", "models:/facegen-vae@latest"):
        assert cli.main(["sample", "--model", uri, "-n", "4", "--device", "cpu", "--out", str(out)]) == 0, uri
        assert Image.open(out).size[0] > 16 and "wrote 4 vae samples" in capsys.readouterr().out
    assert cli.main(["info", "--model", "models:/facegen-vae/1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["version"], info["run_id"], info["model"]["family"]) == ("1", run.info.run_id, "vae")
    assert cli.main(["info", "--model", "models:/facegen-vae@current"]) == 0
    text = capsys.readouterr().out
    assert "facegen-vae version 2 (@current)" in text and "params hash second" in text

    for argv, message in (
            (["--model", "models:/facegen-vae@champion"], "error: cannot resolve models:/facegen-vae@champion in the registry"),
            (["--model", "facegen-vae"], "error: 'facegen-vae' is not a registered model URI"),
            (["--model", "models:/facegen-vae@current", "--run-id", run.info.run_id], "error: give --model or --run-id")):
        assert cli.main(["sample", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err


def test_an_unreachable_registry_is_one_warning_in_a_stage_and_one_line_in_the_cli(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with start_run("train", "vae", {}, "h") as tracker:
            tracker.log_dataset(tmp_path, {})
            tracker.register_model()
            tracker.log_image_step(np.zeros((4, 4, 3), np.uint8), "samples", 1)
    assert len([w for w in caught if "MLflow" in str(w.message)]) == 1
    assert cli.main(["sample", "--model", "models:/facegen-vae@current", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resolve models:/facegen-vae@current in the registry at http://127.0.0.1:9")
    assert err.count("\n") == 1


@pytest.mark.slow  # `mlflow server` takes 10-40 s to start on the shared 2-core machine
def test_the_registry_on_a_tracking_server_and_a_server_that_goes_away(tmp_path, monkeypatch, capsys, tiny_vae_cfg):
    """Registered through a real ``mlflow server`` (artifacts proxied), read back by the CLI; then the server
    stops mid-run: registration costs one warning and the run's code carries on."""
    from mlflow.tracking import MlflowClient

    from facegen.models import build
    from facegen.models.checkpoint import save_model

    write_prepared(tmp_path)
    monkeypatch.chdir(tmp_path)
    model_file = tmp_path / "models" / "vae" / "model.pt"
    save_model(build("vae", tiny_vae_cfg, 16), model_file)
    with mlflow_server(tmp_path / "server") as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        with start_run("train", "vae", {}, "h") as tracker:
            tracker.log_dataset(artifacts.PREPARED, {"source": "synthetic"})
            tracker.log_artifact(model_file, "model")
            tracker.register_model()
        client = MlflowClient(server.url)
        version = _vae_version(client)
        assert version.source.startswith("mlflow-artifacts:/")  # proxied by the server
        (data,) = client.get_run(version.run_id).inputs.dataset_inputs
        assert data.dataset.digest == dvc_hash(artifacts.PREPARED)[0]
        out = tmp_path / "served.png"
        assert cli.main(["sample", "--model", "models:/facegen-vae@current", "-n", "4", "--out", str(out)]) == 0
        assert out.is_file()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with start_run("train", "vae", {}, "h2") as tracker:
                tracker.log_artifact(model_file, "model")
                server.stop()
                tracker.register_model()
                tracker.log_metrics({"after": 1.0})
                carried_on = True
        assert carried_on and not tracker.active
        assert len([w for w in caught if "MLflow" in str(w.message)]) == 1, [str(w.message) for w in caught]


# ---- images across commits and across a sweep ---------------------------------------------------
def test_dvc_yaml_declares_every_familys_grids_as_image_plots():
    from facegen.models import FAMILIES, family_class
    from facegen.models.base import RECONSTRUCT, TRAVERSE

    declared = {p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(p, str)}
    expected = set()
    for family in FAMILIES:
        capabilities = family_class(family).capabilities
        expected.add(f"reports/{family}/samples.png")
        if RECONSTRUCT in capabilities:
            expected.add(f"reports/{family}/reconstructions.png")
        if TRAVERSE in capabilities:
            expected.add(f"reports/{family}/traversal.png")
    assert declared == expected


MAKE_GRIDS = """\
import pathlib, yaml
from PIL import Image
beta = yaml.safe_load(open("params.yaml"))["models"]["beta_vae"]["beta"]
out = pathlib.Path("reports/beta_vae"); out.mkdir(parents=True, exist_ok=True)
Image.new("RGB", (6, 4), (int(beta * 40), 0, 0)).save(out / "samples.png")
Image.new("RGB", (6, 4), (0, int(beta * 40), 0)).save(out / "reconstructions.png")
"""


@pytest.fixture(scope="module")
def two_commits(tmp_path_factory) -> tuple[Path, list[str]]:
    """A git + DVC repo whose evaluate stage wrote different grids at two commits (β = 1, then 2)."""
    repo = tmp_path_factory.mktemp("plots")
    (repo / "make_grids.py").write_text(MAKE_GRIDS)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"evaluate": {"cmd": f"{sys.executable} make_grids.py", "deps": ["make_grids.py"],
                                "params": ["models.beta_vae.beta"], "outs": ["reports/beta_vae"]}},
        "plots": ["reports/beta_vae/samples.png", "reports/beta_vae/reconstructions.png"]}))
    sh(["git", "init", "-q"], repo)
    sh([str(BIN / "dvc"), "init", "-q"], repo)
    revs = []
    for beta in (1, 2):
        (repo / "params.yaml").write_text(yaml.safe_dump({"models": {"beta_vae": {"beta": beta}}}))
        sh([str(BIN / "dvc"), "repro", "-q"], repo)
        sh(["git", "add", "-A"], repo)
        sh([*GIT, "commit", "-qm", f"beta {beta}"], repo)
        revs.append(sh(["git", "rev-parse", "HEAD"], repo).strip())
    return repo, revs


@pytest.mark.slow  # a git + DVC repo reproduced at two commits: dvc subprocesses, ~20 s
def test_dvc_plots_diff_shows_both_commits_grids(two_commits, tmp_path):
    repo, (first, second) = two_commits
    shown = json.loads(sh([str(BIN / "dvc"), "plots", "diff", first, second, "--json", "-o", str(tmp_path / "plots")],
                          repo))
    data = shown["data"]
    assert set(data) == {"reports/beta_vae/samples.png", "reports/beta_vae/reconstructions.png"}, shown
    for plot in data.values():
        assert {tuple(p["revisions"]) for p in plot} == {(first,), (second,)} and all(p["type"] == "image" for p in plot)
        old, new = (np.asarray(Image.open(next(p["url"] for p in plot if p["revisions"] == [rev]))) for rev in (first, second))
        assert not np.array_equal(old, new)  # each revision's own image, side by side


@pytest.mark.slow  # a git + DVC repo reproduced at two commits: dvc subprocesses, ~20 s
def test_sweep_grids_land_in_one_mlflow_run_with_the_value_as_step(two_commits, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from facegen.config import load_params
    from facegen.pipeline import sweep

    repo, revs = two_commits
    monkeypatch.chdir(repo)
    points = [{"value": float(b), "name": f"exp-{b}", "rev": rev, "metrics": {}} for b, rev in zip((1, 2), revs)]
    (repo / "sweeps").mkdir(exist_ok=True)
    (repo / "sweeps" / "beta_vae.json").write_text(json.dumps({"family": "beta_vae", "param": "models.beta_vae.beta",
                                                               "points": points}))
    found = sweep.log_sweep_grids(load_params(repo / "params.yaml"), "beta_vae")
    assert found == {"samples": [1, 2], "reconstructions": [1, 2]}  # no traversal at these commits: skipped
    client = MlflowClient(tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("facegen").experiment_id], "tags.stage = 'sweep'")
    assert run.info.run_name == "sweep:beta_vae" and run.data.params["values"] == "[1.0, 2.0]"
    logged = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    for key in ("samples", "reconstructions"):
        # mlflow's layout for keyed images: images/<key>+step+<step>+timestamp+<ms>+<uuid>.png (+ a webp, a json)
        assert {p.split("+step+")[1].split("+")[0] for p in logged if p.startswith(f"images/{key}+step+")
                and p.endswith(".png")} == {"1", "2"}
    assert sweep.steps([0.5, 1.0, 4.0]) == [0, 1, 2] and sweep.steps([1.0, 16.0]) == [1, 16]
