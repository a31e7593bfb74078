"""MLflow tracking: the only module that imports mlflow.

One run per stage execution, named ``<stage>:<family>``, tagged with stage, family, git commit,
params hash and, under ``dvc exp run``, the DVC experiment name (``dvc_experiment``) and baseline.
Tracking is a side channel: if the tracking server is unreachable the stage still completes and
its outputs are intact, we warn once and turn every later call into a no-op.

Where the store is: ``MLFLOW_TRACKING_URI``, else ``sqlite:///<repo root>/mlruns.db`` with artifacts
in ``<repo root>/mlruns-artifacts``. The repo root is the *original* repository even when DVC runs a
stage in a temporary copy (``dvc exp run --temp`` / ``--queue`` run in ``.dvc/tmp/exps/...``, which
DVC deletes afterwards): DVC sets ``DVC_ROOT`` to the original root for every stage it runs.

A local store records absolute artifact paths (MLflow resolves them when an experiment is
created, and has no API to change them). So that a moved or copied checkout keeps working, a
stage re-points the store's artifact paths at this checkout's ``mlruns-artifacts`` before it logs
(``_relocate``), and reading a run's artifacts falls back to this checkout's copy. A tracking
server (``mlflow server``) proxies artifacts as ``mlflow-artifacts:/...`` URIs, which move with it.

Shared state is set up once: several stages (parallel ``dvc repro``, ``dvc exp run --queue``
workers) may open a fresh local store at the same moment, and MLflow's own schema set-up is not
safe against that (mlflow/mlflow#6490: a half-migrated store that every later stage fails on). So
the first use of a local store happens under a file lock beside it (``mlruns.db.lock``): one process
creates the schema and the experiment, the others wait and find them. A half-initialised store
(left by an older facegen, or a set-up that was killed) that holds no runs is rebuilt; one that holds
runs is named in one line, never silently replaced. On a server, a lost race to create the
experiment is simply the experiment existing.

What comes back is checked: every file logged with :meth:`Tracker.log_artifact` has its SHA-256
recorded in the run as the param ``sha256/<artifact path>`` (params are write-once in MLflow: a
client able to replace the artifact cannot rewrite it), and :func:`download_artifact` refuses a file
whose bytes do not match, or for which the run records no hash.

Lineage: a run names the data folder it read as an MLflow dataset whose digest is the folder's DVC
hash (``Tracker.log_dataset``, :func:`dvc_hash`), and a training registers its model as a new version
of ``facegen-<family>`` with the run's tags, moving the alias ``current`` (``Tracker.register_model``).
Both go through the same failure-tolerant ``_call``: one warning if the store is unreachable.
Reading back, :func:`model_version` resolves a ``models:/`` URI to the run that logged the model,
which the CLI then reads through :func:`download_artifact` like any ``--run-id``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import unquote, urlparse

import yaml

from facegen.config import flatten
from facegen.errors import TrackingError

REPO_ROOT_ENV = "FACEGEN_REPO_ROOT"
ARTIFACTS_DIR = "mlruns-artifacts"  # beside mlruns.db; git- and dvc-ignored (mlruns*)
EXPS_TMP = (".dvc", "tmp", "exps")  # where `dvc exp run --temp/--queue` make their copies
DIGEST_PARAM = "sha256/"  # + artifact path: the run param holding that file's SHA-256
LOCK_TIMEOUT_S = 300  # the first set-up of a store migrates ~60 schema revisions: seconds, even on a busy machine


def repo_root() -> Path:
    """The original repository root, also from inside a DVC experiment's temporary copy.

    ``FACEGEN_REPO_ROOT`` (tests, unusual set-ups), else ``DVC_ROOT`` (set by DVC for every stage,
    to the original repo also for --temp/--queue runs), else the part of the working directory
    above ``.dvc/tmp/exps`` when run by hand inside such a copy, else the working directory.
    """
    for var in (REPO_ROOT_ENV, "DVC_ROOT"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - len(EXPS_TMP) + 1):
        if parts[i:i + len(EXPS_TMP)] == EXPS_TMP:
            return Path(*parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlruns.db'}"


def _local_db(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` URI (None for servers and other backends), read as SQLAlchemy
    reads it: up to a ``?`` (its query), percent-decoded."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").partition("?")[0]))


def artifact_root() -> Path:
    """Where this checkout keeps the artifacts of a local store."""
    return repo_root() / ARTIFACTS_DIR


def git_commit() -> str:
    """The commit of the code that runs (the working directory: a DVC experiment's copy has its own)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(stage: str, family: str, params_hash: str) -> dict[str, str]:
    """The tags of a stage's run; the DVC ones match it to a row of ``dvc exp show``."""
    tags = {"stage": stage, "family": family, "git_commit": git_commit(), "params_hash": params_hash}
    for tag, var in (("dvc_experiment", "DVC_EXP_NAME"), ("dvc_baseline_rev", "DVC_EXP_BASELINE_REV")):
        if os.environ.get(var):
            tags[tag] = os.environ[var]
    return tags


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
        """Log one file, recording its SHA-256 first as the param ``sha256/<artifact path>`` (what
        :func:`download_artifact` checks the file against when it is fetched back)."""
        if self._mlflow is None:
            return
        mlflow = self._mlflow
        name = f"{artifact_path.strip('/')}/{Path(path).name}" if artifact_path else Path(path).name

        def log() -> None:  # hashing inside _call too: an unreadable file costs a warning, not the stage
            mlflow.log_param(DIGEST_PARAM + name, sha256(Path(path)))
            mlflow.log_artifact(str(path), artifact_path)

        self._call("log_artifact", log)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(directory).is_dir():
            self._call("log_artifacts", self._mlflow.log_artifacts, str(directory), artifact_path)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Log an HxWx3 uint8 array (e.g. a per-epoch sample grid) straight into the run."""
        if self._mlflow is not None:
            self._call("log_image", self._mlflow.log_image, image, artifact_file=artifact_file)

    def log_image_step(self, image: Any, key: str, step: int) -> None:
        """Log an HxWx3 uint8 array as step ``step`` of the image series ``key`` (the UI's image slider)."""
        if self._mlflow is not None:
            self._call("log_image", self._mlflow.log_image, image, key=key, step=step)

    def log_dataset(self, path: Path, config: Mapping[str, Any], context: str = "training") -> None:
        """Log the DVC-tracked folder ``path`` as this run's input dataset (``mlflow.log_input``).

        The dataset is named after the folder, its digest is the folder's DVC hash (:func:`dvc_hash`:
        from ``dvc.lock`` when the lock records this folder as it is on disk, else computed the way
        DVC computes it; always computed for ``output``, whose lock entry is the previous run's) and
        its source is ``{"path": ..., "config": config}`` (source type ``dvc``), so runs on the same
        data share one dataset in the MLflow UI and ``datasets.digest = '<hash>'`` finds them.
        ``context``: ``training``, ``evaluation``, or ``output`` for the stage that writes it.
        """
        if self._mlflow is not None:
            self._call("log_input", _log_dataset, self._mlflow, path, config, context)

    def register_model(self, artifact_path: str = "model", alias: str | None = None) -> None:
        """Register this run's ``artifact_path`` folder as a new version of ``facegen-<family>`` and move
        ``alias`` (default :data:`MODEL_ALIAS`) to it.

        The version carries the run's own tags (stage, family, git_commit, params_hash, dvc_experiment...),
        so "which commit and params made this model" is answered from the registry alone.
        """
        if self._mlflow is not None:
            self._call("model registration", _register, self._mlflow, artifact_path, alias or MODEL_ALIAS)


def _file_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI or plain path (None for other schemes)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


def _relocate(db: Path, new_root: Path) -> None:
    """Re-point a local store's artifact paths at ``new_root`` when the checkout moved or was copied.

    Only paths of our own layout (``.../mlruns-artifacts/...``) are rewritten, in one transaction.
    Plain SQL because MLflow has no API to change an experiment's or a run's artifact location.
    """
    if not db.is_file():
        return
    new = new_root.as_uri()
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"experiments", "runs"} <= tables:
            return
        roots = {loc[:loc.index(ARTIFACTS_DIR) + len(ARTIFACTS_DIR)]
                 for (loc,) in con.execute("SELECT artifact_location FROM experiments")
                 if loc and f"/{ARTIFACTS_DIR}" in loc and loc.startswith("file:")}
        for old in roots - {new}:
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 - fixed names
                            f"WHERE substr({column}, 1, ?) = ?", (new, len(old) + 1, len(old), old))


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks: model files can be large)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _store_problem(db: Path) -> tuple[str, int] | None:
    """What is wrong with the schema of the local store ``db`` and how many runs it holds; None if nothing.

    Nothing is wrong with a missing or empty file (MLflow sets it up) or a store at the schema revision
    this MLflow expects. Otherwise: leftover ``_alembic_tmp_*`` tables (a migration stopped halfway),
    no recorded revision although tables exist (set-up stopped before the first migration), or another
    revision (stopped between two migrations, or a store of another MLflow version). Read-only: the
    file is opened with ``mode=ro``. Raises TrackingError when it is not a file or not a readable SQLite
    database (both of which MLflow would retry opening for minutes).
    """
    if not db.exists():
        return None
    if not db.is_file():  # MLflow would retry opening it for minutes
        raise TrackingError(f"the MLflow store {db} is not a file: move it aside (the next stage starts a fresh store "
                            "there), or set MLFLOW_TRACKING_URI")
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables - {"alembic_version"}:
                return None
            revision = (con.execute("SELECT version_num FROM alembic_version").fetchone()
                        if "alembic_version" in tables else None)
            runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.DatabaseError as err:
        raise TrackingError(f"the MLflow store {db} is not a readable SQLite database ({err}): move it aside (the next "
                            "stage starts a fresh store there) or restore it from a backup") from None
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if leftovers:
        return f"a schema migration stopped halfway (leftover table {leftovers[0]})", runs
    if revision is None:
        return f"tables but no schema revision (set-up stopped before migrating; {len(tables)} tables)", runs
    if revision[0] != _schema_head():
        return f"schema revision {revision[0]}, not {_schema_head()} (this MLflow's)", runs
    return None


@functools.cache
def _schema_head() -> str:
    """The schema revision this MLflow sets a store up at (the head of its alembic migrations)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _repair(db: Path) -> None:
    """Rebuild a half-initialised local store that holds no runs; TrackingError naming one that does.

    Called with the store's lock held, so no other facegen process is setting it up meanwhile.
    """
    found = _store_problem(db)
    if found is None:
        return
    problem, runs = found
    if runs:
        import mlflow

        raise TrackingError(f"the MLflow store {db} holds {runs} runs but has {problem}: back it up, then run "
                            f"`mlflow db upgrade sqlite:///{db}` (MLflow {mlflow.__version__}), or move it aside to "
                            "start a fresh store")
    for leftover in (db, *(db.with_name(db.name + suffix) for suffix in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    warnings.warn(f"the MLflow store {db} had {problem} and held no runs: rebuilt it", stacklevel=3)


@contextlib.contextmanager
def _set_up(db: Path | None) -> Iterator[None]:
    """Hold the lock under which a local store is checked, repaired and first set up (see the module doc).

    A store whose folder cannot take the lock file (read-only media) is used without the lock when its
    schema is complete (reading needs no set-up); otherwise TrackingError names the lock and the cause.
    Servers (``db`` None) set themselves up.
    """
    if db is None:
        yield
        return
    odd = [] if os.environ.get("MLFLOW_TRACKING_URI") else sorted(set("%?") & set(str(repo_root())))
    if odd:
        # The default URI spells the path as is; SQLAlchemy would cut it at "?" or percent-decode it, and
        # open (or create) another file. Encoding it instead makes MLflow create a folder named after the
        # encoded path beside the checkout, so the path is refused with what to do.
        raise TrackingError(f"cannot keep the MLflow store in {repo_root()}: its path holds {' and '.join(odd)}, which "
                            "an SQLAlchemy URL cannot spell; move the checkout, or set MLFLOW_TRACKING_URI (e.g. "
                            "sqlite:////tmp/facegen/mlruns.db)")
    from filelock import FileLock, Timeout

    lock = FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise TrackingError(f"the MLflow store {db} stayed locked for {LOCK_TIMEOUT_S} s ({lock.lock_file}): another "
                            "process is setting it up or hung while doing so; if none is running, delete the lock "
                            "file") from None
    except OSError as err:
        if db.is_file() and _store_problem(db) is None:
            yield
            return
        raise TrackingError(f"cannot lock the MLflow store {db} to set it up ({err.strerror or err}: "
                            f"{lock.lock_file}): make its folder writable, or set MLFLOW_TRACKING_URI") from None
    try:
        _repair(db)
        yield
    finally:
        lock.release()


def _ensure_experiment(mlflow: Any, experiment: str, artifacts: str | None) -> None:
    """Create ``experiment`` unless it exists; losing a race to create it (a server shared by parallel
    stages) just means it exists now."""
    if mlflow.get_experiment_by_name(experiment) is not None:
        return
    try:
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    except Exception:
        if mlflow.get_experiment_by_name(experiment) is None:
            raise


def _connect(experiment: str) -> Any:
    # Fail fast on an unreachable server instead of mlflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    import mlflow  # local import: keeps `import facegen` light for the CLI and tests

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    db = _local_db(uri)
    with _set_up(db):  # the store's schema and the experiment are created once, by one process
        if db is not None:
            _relocate(db, artifact_root())
        mlflow.set_tracking_uri(uri)
        # A local store keeps artifacts beside the DB (git-ignored as mlruns*), never in the process
        # cwd; a server chooses its own (mlflow-artifacts:/ proxied, or its --default-artifact-root).
        _ensure_experiment(mlflow, experiment, artifact_root().as_uri() if db is not None else None)
    mlflow.set_experiment(experiment)
    return mlflow


@contextlib.contextmanager
def start_run(stage: str, family: str, params: Mapping[str, Any], params_hash: str,
              experiment: str = "facegen") -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution; yields a Tracker that never raises.

    The run ends FINISHED, FAILED (an exception), or KILLED (an interrupt: Ctrl-C, SIGTERM, SIGHUP).
    """
    tracker = Tracker()
    started: Any = None  # mlflow, once a run is open: it is ended even if a later call turned tracking off
    try:
        mlflow = _connect(experiment)
        mlflow.start_run(run_name=f"{stage}:{family}", tags=run_tags(stage, family, params_hash))
        tracker._mlflow = started = mlflow
    except Exception as err:  # noqa: BLE001 - unreachable server, bad URI, locked DB...
        first_line = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"MLflow tracking unavailable at {tracking_uri()} ({type(err).__name__}: {first_line}); "
                      "the stage runs without tracking", stacklevel=3)
    tracker.log_params(params)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP raised as errors.Terminated: stopped, not broken
        status = "KILLED"
        raise
    finally:
        # Also after a failed call: mlflow keeps the run on its per-process active-run stack until it is
        # ended (end_run pops it before telling the store), and the next start_run would refuse to open.
        if started is not None:
            with contextlib.suppress(Exception):
                started.end_run(status=status)


# ----------------------------------------------------------------------------------------------
# Reading back (the `facegen` CLI): never creates a store, an experiment or a run.
# ----------------------------------------------------------------------------------------------
def _reader() -> Any | None:
    """An MlflowClient on the configured store, or None when a local SQLite store does not exist yet.

    Connecting to a missing SQLite file would create an empty database as a side effect of a
    read-only command, so that case is answered without touching mlflow.
    """
    uri = tracking_uri()
    db = _local_db(uri)
    if db is not None and not db.is_file():
        return None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one file: a bar is noise
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow"):  # store set-up chatter; warnings and errors still show
        logging.getLogger(name).setLevel(logging.WARNING)
    with _set_up(db):  # the client sets up the schema of a store that has none yet: once, under the lock
        return MlflowClient(tracking_uri=uri)


def _store(holding: str) -> tuple[str, Any]:
    """The tracking URI and a reader on it; TrackingError when a local store does not exist yet."""
    uri = tracking_uri()
    client = _reader()
    if client is None:
        raise TrackingError(f"no MLflow store at {uri}: run a stage first, or set MLFLOW_TRACKING_URI to "
                            f"the store that holds {holding}")
    return uri, client


def download_artifact(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Fetch one artifact file of a run (e.g. ``model/model.pt``) into ``dst``, verified; TrackingError if impossible.

    The file's SHA-256 must equal the one the run recorded when it logged the file (param
    ``sha256/<artifact_path>``, see :meth:`Tracker.log_artifact`): a file replaced in the store (by anyone
    able to write its artifacts), damaged, or logged by a run that recorded no hash is refused with one
    line, and deleted from ``dst``. A local run whose recorded artifact folder is gone (the checkout was
    moved) is read from this checkout's ``mlruns-artifacts`` when it has the run; otherwise the error
    names the missing path.
    """
    uri, client = _store("this run")
    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - unknown id, unreachable server, unreadable store
        raise TrackingError(f"cannot read MLflow run {run_id} from {uri} ({_first_line(err)}): check the run id "
                            "(`mlflow ui` lists them) and MLFLOW_TRACKING_URI") from None
    source = run.info.artifact_uri
    local = _file_path(source)
    if local is not None and not local.is_dir():
        moved = artifact_root() / local.as_posix().rpartition(f"/{ARTIFACTS_DIR}/")[2]
        if f"/{ARTIFACTS_DIR}/" in local.as_posix() and moved.is_dir():
            source = moved.as_uri()
        else:
            raise TrackingError(f"the artifacts of MLflow run {run_id} are missing: {local} does not exist (its "
                                "checkout was moved or deleted, or mlruns-artifacts/ was not copied); rerun the "
                                "stage that logged it, or use --family to read the pipeline's model")
    expected = run.data.params.get(DIGEST_PARAM + artifact_path)
    if expected is None:
        raise TrackingError(f"MLflow run {run_id} records no SHA-256 for {artifact_path} (param "
                            f"{DIGEST_PARAM}{artifact_path}; runs logged before facegen recorded one have none), so "
                            f"the file cannot be trusted: {_retrain_hint(run)}")
    try:
        from mlflow.artifacts import download_artifacts

        got = Path(download_artifacts(artifact_uri=f"{source.rstrip('/')}/{artifact_path}", dst_path=str(dst),
                                      tracking_uri=uri))
    except Exception as err:  # noqa: BLE001 - missing file, unreachable server
        raise TrackingError(f"cannot fetch {artifact_path} of MLflow run {run_id} from {source}: "
                            f"{_first_line(err)}") from None
    actual = sha256(got)
    if actual != expected:
        got.unlink()
        raise TrackingError(f"{artifact_path} of MLflow run {run_id} is not the file that run logged (SHA-256 "
                            f"{actual[:12]}..., recorded {expected[:12]}...): it was replaced or damaged in the store "
                            f"at {source}; refusing to load it: {_retrain_hint(run)}")
    return got


def _retrain_hint(run: Any) -> str:
    family = run.data.tags.get("family")
    stage = run.data.tags.get("stage", "train")
    again = f"`dvc repro {stage}@{family}`" if family else "the stage that logged it"
    return f"rerun {again} to log a verified one, or use --family to read the pipeline's model"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def latest_runs(stage: str, families: Sequence[str], experiment: str = "facegen"
                ) -> tuple[dict[str, dict[str, str]], str | None]:
    """Newest finished ``<stage>:<family>`` run per family, and why none could be looked up.

    Returns ``(runs, problem)``: ``runs`` maps a family to the id, start time and tags of its
    newest finished run (families without one are absent); ``problem`` is None, or one line such as
    "tracking server unreachable at <uri>" when the store cannot be read. The store is asked
    once for all families, so an unreachable server costs one timeout, not one per family.
    """
    uri = tracking_uri()
    found: dict[str, dict[str, str]] = {}
    try:
        client = _reader()
        exp = client.get_experiment_by_name(experiment) if client is not None else None
        if exp is None:
            return found, None
        for family in families:  # the first failure ends the lookup: at most one timeout in all
            runs = client.search_runs([exp.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                                      filter_string=f"tags.stage = '{stage}' and tags.family = '{family}' "
                                                    "and attributes.status = 'FINISHED'")
            if runs:
                run = runs[0]
                found[family] = {"run_id": run.info.run_id, "start_time": str(run.info.start_time), **run.data.tags}
    except Exception as err:  # noqa: BLE001 - tracking is a side channel: report, do not fail
        what = "tracking server unreachable" if uri.startswith(("http:", "https:")) else "MLflow store unreadable"
        return found, f"{what} at {uri} ({type(err).__name__})"
    return found, None


def latest_run(stage: str, family: str, experiment: str = "facegen") -> dict[str, str] | None:
    """Id, start time and tags of the newest finished ``<stage>:<family>`` run, or None (no store, no run)."""
    runs, problem = latest_runs(stage, [family], experiment)
    if problem is not None:
        warnings.warn(f"MLflow lookup failed: {problem}; run provenance not shown", stacklevel=2)
    return runs.get(family)


# ----------------------------------------------------------------------------------------------
# Lineage: the data a run used, identified by its DVC hash.
# ----------------------------------------------------------------------------------------------
LOCKFILE = Path("dvc.lock")  # of the working copy that runs (a DVC experiment's copy has its own)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _locked_hash(folder: Path, lockfile: Path) -> str | None:
    """``folder``'s md5 as ``dvc.lock`` records it for the stage that writes it, if the folder on disk
    still has the recorded file count and size (a folder rewritten outside DVC does not)."""
    if not lockfile.is_file():
        return None
    try:
        lock = yaml.safe_load(lockfile.read_text()) or {}
    except yaml.YAMLError:
        return None
    files = _files(folder)
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            if out.get("path") == folder.as_posix() and str(out.get("md5", "")).endswith(".dir"):
                same = out.get("nfiles") == len(files) and out.get("size") == sum(f.stat().st_size for f in files)
                return out["md5"] if same else None
    return None


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - DVC's content hash, not a security measure
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_hash(folder: Path, lockfile: Path = LOCKFILE, written: bool = False) -> tuple[str, str]:
    """DVC's hash of an output folder (``<md5>.dir``) and where it came from: ``"dvc.lock"`` or ``"computed"``.

    The lock is read first (free), unless ``written``: the caller has just written the folder, so
    the lock describes the previous output, which may have had the same files and sizes but other
    bytes (the embedded faces prepared on an AVX2-only CPU against a lock written on an AVX-512 one).
    Then, before the first ``dvc repro`` has recorded the
    folder (a stage run by hand in a fresh clone), or when the folder no longer matches the lock, the
    hash is computed as DVC computes a directory's: the md5 of the
    JSON list of ``{"md5": <file md5>, "relpath": <posix path>}`` sorted by path, plus ``.dir``
    (dvc-data's ``Tree.digest``), so it equals what ``dvc commit`` will record (``tests/test_lineage.py``
    checks it against DVC). That reads every file once: seconds for CelebA's arrays.
    """
    locked = None if written else _locked_hash(folder, lockfile)
    if locked is not None:
        return locked, "dvc.lock"
    entries = [{"md5": _file_md5(f), "relpath": f.relative_to(folder).as_posix()} for f in _files(folder)]
    listing = json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True).encode()
    return hashlib.md5(listing).hexdigest() + ".dir", "computed"  # noqa: S324 - as above


@functools.cache
def _dvc_source_class() -> type:
    """An MLflow DatasetSource for a DVC-tracked folder (built on first use: mlflow is imported lazily)."""
    from mlflow.data.dataset_source import DatasetSource

    class DVCDatasetSource(DatasetSource):
        """A folder of the DVC pipeline, and the params that made it; ``load`` returns its local path."""

        def __init__(self, path: str, config: Mapping[str, Any]) -> None:
            self.path, self.config = path, dict(config)

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self) -> str:
            return self.path

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False  # never guessed from a bare string: built explicitly by log_dataset

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"path": self.path, "config": self.config}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            return cls(source_dict["path"], source_dict.get("config") or {})

    return DVCDatasetSource


def _log_dataset(mlflow: Any, folder: Path, config: Mapping[str, Any], context: str) -> None:
    from mlflow.data.meta_dataset import MetaDataset

    digest, origin = dvc_hash(folder, written=context == "output")
    source = _dvc_source_class()(folder.as_posix(), json.loads(json.dumps(dict(config), default=str)))
    mlflow.log_input(MetaDataset(source, name=folder.name, digest=digest), context=context,
                     tags={"dvc_hash_from": origin})


# ----------------------------------------------------------------------------------------------
# Model Registry: every trained model is a version of ``facegen-<family>``; ``models:/`` URIs resolve
# to the run that logged it, whose ``model/`` artifact is then read through download_artifact.
# ----------------------------------------------------------------------------------------------
MODEL_PREFIX = "facegen-"
# Moved to each new version. Not "latest": MLflow reserves that name (``models:/<name>/latest`` and,
# in facegen's resolver, ``models:/<name>@latest`` mean the highest version number).
MODEL_ALIAS = "current"


def registered_name(family: str) -> str:
    """The registered model of a family (``vae`` -> ``facegen-vae``; also ``pixelcnn``, ``classifier``)."""
    return f"{MODEL_PREFIX}{family}"


def _register(mlflow: Any, artifact_path: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    run = mlflow.active_run()
    client = mlflow.MlflowClient()
    tags = {k: v for k, v in client.get_run(run.info.run_id).data.tags.items() if not k.startswith("mlflow.")}
    name = registered_name(tags["family"])
    try:
        client.create_registered_model(name, description=f"facegen {tags['family']} models, one version per "
                                                          f"{tags['stage']} run (the {alias!r} alias: the newest)")
    except MlflowException as err:  # registered by an earlier run (or a parallel experiment): fine
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    version = client.create_model_version(name, source=f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}",
                                          run_id=run.info.run_id, tags=tags)
    client.set_registered_model_alias(name, alias, version.version)


MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+|latest))")


def model_version(uri: str) -> dict[str, Any]:
    """The registered model version a ``models:/`` URI names: name, version, aliases, run_id, source, tags.

    Accepts ``models:/<name>@<alias>``, ``models:/<name>/<version>`` and ``models:/<name>/latest`` (also
    written ``@latest``): the highest version. TrackingError, one line, for a malformed URI, an unknown
    model, version or alias, a missing local store or an unreachable server.
    """
    match = MODEL_URI.fullmatch(uri)
    if match is None:
        raise TrackingError(f"{uri!r} is not a registered model URI: write models:/NAME@ALIAS or models:/NAME/VERSION, "
                            f"e.g. models:/{registered_name('vae')}@{MODEL_ALIAS}")
    name, alias, version = match["name"], match["alias"], match["version"]
    tracking, client = _store("the registry")
    try:
        if alias is not None and alias.lower() != "latest":
            found = client.get_model_version_by_alias(name, alias)
        else:
            if version is None or version == "latest":
                versions = client.search_model_versions(f"name = '{name}'")
                if not versions:
                    raise TrackingError(f"registered model {name} has no version in {tracking}")
                version = str(max(int(v.version) for v in versions))
            found = client.get_model_version(name, version)
    except TrackingError:
        raise
    except Exception as err:  # noqa: BLE001 - unknown name/alias/version, unreachable server
        raise TrackingError(f"cannot resolve {uri} in the registry at {tracking} ({_first_line(err)}): "
                            f"`mlflow ui` lists registered models; training registers {MODEL_PREFIX}<family>") from None
    if not found.run_id:
        raise TrackingError(f"{uri} (version {found.version}) names no MLflow run: facegen reads a model from "
                            "the run that logged it")
    return {"name": found.name, "version": str(found.version), "aliases": list(found.aliases),
            "run_id": found.run_id, "source": found.source, "tags": dict(found.tags),
            "created": str(found.creation_timestamp)}
