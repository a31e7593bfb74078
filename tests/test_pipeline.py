"""End to end: a `dvc repro` on real stages (no mocks).

Proves the product's core promises: every declared output is produced, MLflow holds a finished run
per stage, a second repro is a no-op, and changing one parameter reruns only the stages that read it.

By default the repro is a tiny one (seconds of work per stage) on a throw-away copy of the repo.
``FACEGEN_E2E_REPO=<checkout>`` points the same assertions at a checkout whose default `dvc repro`
has just run instead (``make test`` does this after its default repro, sparing CI a second
pipeline of 14 stage processes, ~3.5 min); its MLflow store is the checkout's default
``mlruns.db``. Its ``params.yaml`` is edited and restored by the parameter test (dry runs only).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
E2E_REPO = "FACEGEN_E2E_REPO"
pytestmark = pytest.mark.slow


def tiny_params(params: dict) -> dict:
    """Shrink the default params to seconds of work while keeping every stage and family."""
    params["data"]["image_size"] = 32
    params["data"]["synthetic"]["num_images"] = 200
    params["classifier"]["train"].update(epochs=1)
    for section in [*params["models"].values(), params["prior"]]:
        section["train"].update(epochs=2, max_steps_per_epoch=2, batch_size=16)
    params["evaluate"].update(num_samples=32, batch_size=32, nll_importance_samples=2, num_inversions=4, nll_images=16,
                              iwae_curve_images=2, iwae_curve_max_k=4,
                              inception_samples=16, inception_real=32, edit_faces=16, edit_chance_directions=1)
    return params


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def stages_to_run(repo: Path, env: dict[str, str]) -> set[str]:
    """Stages `dvc repro --dry` would run now: those whose own deps or params changed."""
    out = run([str(Path(sys.executable).parent / "dvc"), "repro", "--dry"], repo, env)
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def downstream_closure(repo: Path, changed: set[str]) -> set[str]:
    """``changed`` plus every stage that (transitively) depends on one of their outputs.

    `--dry` cannot know that a rerun changes an output, so it lists only directly affected
    stages; the rest of what a real `dvc repro` reruns follows from the dependency graph.
    """
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    outs = {name: [o["path"] for o in st.get("outs", [])] for name, st in lock.items()}
    deps = {name: [d["path"] for d in st.get("deps", [])] for name, st in lock.items()}
    result = set(changed)
    grew = True
    while grew:
        produced = [p for name in result for p in outs[name]]
        new = {name for name, ds in deps.items()
               if any(d == p or d.startswith(p.rstrip("/") + "/") for d in ds for p in produced)}
        grew = not new <= result
        result |= new
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    bin_dir = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    if os.environ.get(E2E_REPO):
        dst = Path(os.environ[E2E_REPO]).resolve()
        if not (dst / "dvc.lock").is_file() or not (dst / "mlruns.db").is_file():
            pytest.fail(f"{E2E_REPO}={dst}: no dvc.lock or mlruns.db there; run `dvc repro` in it first")
        return dst, {**os.environ, "PATH": bin_dir, "MLFLOW_TRACKING_URI": f"sqlite:///{dst / 'mlruns.db'}",
                     "FACEGEN_REPO_ROOT": str(dst)}
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    (dst / "dvc.lock").unlink(missing_ok=True)
    params = tiny_params(yaml.safe_load((dst / "params.yaml").read_text()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": bin_dir, "MLFLOW_TRACKING_URI": f"sqlite:///{dst / 'mlruns.db'}",
           "FACEGEN_REPO_ROOT": str(dst)}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        run(cmd, dst, env)
    run([str(Path(sys.executable).parent / "dvc"), "repro"], dst, env)
    return dst, env


def declared_outputs(repo: Path) -> list[Path]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return [repo / out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]


def test_every_declared_output_exists(repo):
    path, _ = repo
    outs = declared_outputs(path)
    assert len(outs) >= 10
    missing = [str(p.relative_to(path)) for p in outs if not p.exists()]
    assert not missing, missing
    for family in ("vae", "beta_vae", "vqvae", "dcgan"):
        metrics = json.loads((path / "metrics" / f"{family}.json").read_text())
        assert metrics and all(isinstance(v, (int, float)) for v in metrics.values())
        assert (path / "reports" / family / "samples.png").is_file()
        assert (path / "reports" / family / "training_curves.png").is_file()
    assert (path / "reports" / "vae" / "traversal.png").is_file()
    assert (path / "reports" / "index.html").is_file()


def test_mlflow_holds_a_run_per_stage(repo):
    import mlflow

    path, env = repo
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["facegen"], output_format="list", order_by=["attributes.start_time ASC"])
    latest = {r.info.run_name: r for r in runs}  # a long-lived checkout also holds older runs of each stage
    for family in ("vae", "beta_vae", "vqvae", "dcgan"):
        assert f"train:{family}" in latest and f"evaluate:{family}" in latest
    assert {"prepare:data", "train_classifier:classifier", "extract_codes:vqvae", "fit_prior:pixelcnn",
            "report:all"} <= latest.keys()
    unfinished = {name: r.info.status for name, r in latest.items() if r.info.status != "FINISHED"}
    assert not unfinished, unfinished

    # Lineage: each run names the data it read by dvc.lock's hash, and each trained model is registered.
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    hashes = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    client = mlflow.MlflowClient()
    for name, run in latest.items():
        if name == "report:all":  # reads metrics and reports only
            continue
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert inputs and all(d.dataset.digest == hashes[json.loads(d.dataset.source)["path"]] for d in inputs), name
    for name in ("vae", "beta_vae", "vqvae", "dcgan", "classifier", "pixelcnn"):
        version = client.get_model_version_by_alias(f"facegen-{name}", "current")
        stage = {"classifier": "train_classifier", "pixelcnn": "fit_prior"}.get(name, "train")
        assert version.run_id == latest[f"{stage}:{name}"].info.run_id, name


def test_second_repro_is_a_no_op(repo):
    path, env = repo
    assert stages_to_run(path, env) == set()


@pytest.mark.parametrize("key, value, expected", [
    ("models.beta_vae.beta", 2.0, {"train@beta_vae", "evaluate@beta_vae", "report"}),
    ("models.dcgan.train.lr", 0.0003, {"train@dcgan", "evaluate@dcgan", "report"}),
    ("prior.temperature", 0.9, {"fit_prior", "evaluate@vqvae", "report"}),
])
def test_param_change_reruns_only_dependent_stages(repo, key, value, expected):
    path, env = repo
    original = (path / "params.yaml").read_text()
    params = yaml.safe_load(original)
    node = params
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        direct = stages_to_run(path, env)
        assert direct <= expected and direct
        assert downstream_closure(path, direct) == expected
    finally:
        (path / "params.yaml").write_text(original)
