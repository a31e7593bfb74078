"""MLflow tracking: the only module that imports mlflow.

One run per stage execution, named ``<stage>:<family>``, tagged with stage, family, git commit and
params hash. Tracking is a side channel: if the tracking server is unreachable the stage still
completes and its outputs are intact, we warn once and turn every later call into a no-op.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from facegen.config import flatten
from facegen.errors import FacegenError


REPO_ROOT_ENV = "FACEGEN_REPO_ROOT"


def repo_root() -> Path:
    """The repository root (where params.yaml lives): stages run from there under dvc."""
    return Path(os.environ.get(REPO_ROOT_ENV, Path.cwd())).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlruns.db'}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=repo_root())
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """Thin, failure-tolerant facade over an active MLflow run."""

    def __init__(self) -> None:
        self._mlflow: Any = None  # set while a run is active and the backend works

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never break a stage
            warnings.warn(f"MLflow {what} failed ({type(err).__name__}: {err}); "
                          "continuing without tracking for this stage", stacklevel=3)
            self._mlflow = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v)[:6000] for k, v in flatten(dict(params)).items()}
        if self._mlflow is not None:
            self._call("log_params", self._mlflow.log_params, flat)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k.replace("/", "_"): float(v) for k, v in metrics.items()}
        if self._mlflow is not None:
            self._call("log_metrics", self._mlflow.log_metrics, clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None:
            self._call("log_artifact", self._mlflow.log_artifact, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(directory).is_dir():
            self._call("log_artifacts", self._mlflow.log_artifacts, str(directory), artifact_path)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Log an HxWx3 uint8 array (e.g. a per-epoch sample grid) straight into the run."""
        if self._mlflow is not None:
            self._call("log_image", self._mlflow.log_image, image, artifact_file=artifact_file)


def _connect(experiment: str) -> Any:
    # Fail fast on an unreachable server instead of mlflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    import mlflow  # local import: keeps `import facegen` light for the CLI and tests

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        # Keep artifacts beside the DB (git-ignored as mlruns*), not in the process cwd.
        artifacts = None
        if tracking_uri().startswith("sqlite:"):
            artifacts = (repo_root() / "mlruns-artifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return mlflow


@contextlib.contextmanager
def start_run(stage: str, family: str, params: Mapping[str, Any], params_hash: str,
              experiment: str = "facegen") -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution; yields a Tracker that never raises."""
    tracker = Tracker()
    try:
        mlflow = _connect(experiment)
        mlflow.start_run(run_name=f"{stage}:{family}", tags={
            "stage": stage, "family": family, "git_commit": git_commit(), "params_hash": params_hash,
        })
        tracker._mlflow = mlflow
    except Exception as err:  # noqa: BLE001 - unreachable server, bad URI, locked DB...
        first_line = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"MLflow tracking unavailable at {tracking_uri()} ({type(err).__name__}: {first_line}); "
                      "the stage runs without tracking", stacklevel=3)
    tracker.log_params(params)
    ok = False
    try:
        yield tracker
        ok = True
    finally:
        if tracker.active:
            with contextlib.suppress(Exception):
                tracker._mlflow.end_run(status="FINISHED" if ok else "FAILED")


# ----------------------------------------------------------------------------------------------
# Reading back (the `facegen` CLI): never creates a store, an experiment or a run.
# ----------------------------------------------------------------------------------------------
def _reader() -> Any | None:
    """An MlflowClient on the configured store, or None when a local SQLite store does not exist yet.

    Connecting to a missing SQLite file would create an empty database as a side effect of a
    read-only command, so that case is answered without touching mlflow.
    """
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file: a bar is noise
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow"):  # store set-up chatter; warnings and errors still show
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def download_artifact(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Fetch one artifact file of a run (e.g. ``model/model.pt``) into ``dst``; FacegenError if impossible."""
    client = _reader()
    if client is None:
        raise FacegenError(f"no MLflow store at {tracking_uri()}: set MLFLOW_TRACKING_URI or run from the repo root")
    try:
        return Path(client.download_artifacts(run_id, artifact_path, str(dst)))
    except Exception as err:  # noqa: BLE001 - unknown run, missing artifact, unreachable server
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FacegenError(f"cannot fetch {artifact_path} of MLflow run {run_id} from {tracking_uri()}: "
                           f"{first_line}") from None


def latest_run(stage: str, family: str, experiment: str = "facegen") -> dict[str, str] | None:
    """Id, start time and tags of the newest finished ``<stage>:<family>`` run, or None (no store, no run)."""
    try:
        client = _reader()
        exp = client.get_experiment_by_name(experiment) if client is not None else None
        if exp is None:
            return None
        runs = client.search_runs([exp.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                                  filter_string=f"tags.stage = '{stage}' and tags.family = '{family}' "
                                                "and attributes.status = 'FINISHED'")
    except Exception as err:  # noqa: BLE001 - tracking is a side channel: report, do not fail
        warnings.warn(f"MLflow lookup failed ({type(err).__name__}); run provenance not shown", stacklevel=2)
        return None
    if not runs:
        return None
    run = runs[0]
    return {"run_id": run.info.run_id, "start_time": str(run.info.start_time), **run.data.tags}
