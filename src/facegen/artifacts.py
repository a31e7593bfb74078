"""Every artifact name, and the one way to write an artifact: atomically.

The names are an interface: dvc.yaml declares them, the stages write them, the report and the CLI
read them, tests open them. Nothing else in the package spells a path under ``data/``, ``models/``,
``metrics/`` or ``reports/``.

Every write goes to a temporary file in the destination folder and is renamed into place, so a kill,
a full disk or a crash never leaves half a file where a good one was expected (a reader sees the old
file or the new one). The file gets the mode a plain ``open()`` would create it with (0o666 less the
umask), and a failure names the destination, not the hidden temp file.

The CLI's caches (:func:`cache_dir`) hold values that are only an optimisation: :func:`read_cache`
treats a damaged entry as missing, and :func:`write_cache` turns an unusable cache folder into one
warning per process, never a failed command.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any, Callable, TypeVar

T = TypeVar("T")

PREPARED = Path("data/prepared")
CODES = Path("data/codes")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")

# prepare
PREPARE_SUMMARY = PREPARED / "summary.json"
# train_classifier
CLASSIFIER_FILE = MODELS / "classifier" / "model.pt"
CLASSIFIER_METRICS = METRICS / "classifier.json"
CLASSIFIER_LOG = METRICS / "classifier_train.csv"
# reference: real-vs-real floors and the test faces' cached Inception features
REFERENCE = Path("data/reference")
REFERENCE_INCEPTION = REFERENCE / "inception_test.npy"
REFERENCE_METRICS = METRICS / "reference.json"
# extract_codes / fit_prior
CODES_META = CODES / "meta.json"
CODE_USAGE = CODES / "code_usage.png"
PRIOR_DIR = MODELS / "pixelcnn"  # the VQ-VAE prior (its family name is pixelcnn)
PRIOR_FILE = PRIOR_DIR / "model.pt"
PRIOR_METRICS = PRIOR_DIR / "metrics.json"
PRIOR_LOG = METRICS / "prior_train.csv"
# report
INDEX = REPORTS / "index.html"
MARKDOWN = REPORTS / "report.md"
SUMMARY = METRICS / "summary.json"
COMPARISON_RECONSTRUCTIONS = REPORTS / "comparison_reconstructions.png"
COMPARISON_SAMPLES = REPORTS / "comparison_samples.png"
COMPARISON_EDIT_CURVES = REPORTS / "comparison_edit_curves.png"
RATE_DISTORTION = REPORTS / "rate_distortion.png"  # rate vs PSNR and vs sample KID (reporting/rate_distortion.py)
# The rows evaluate@<family> writes for the comparison figures (unlabelled image strips)
ROW_ORIGINALS = "row_originals.png"
ROW_RECONSTRUCTIONS = "row_reconstructions.png"
ROW_SAMPLES = "row_samples.png"
ROW_LABELS = "rows.json"  # how the reconstruction row was made (encoder or inversion)
NOTES = "notes.json"
EDIT_CURVES = "edit_curves.json"  # per family: success vs preservation over the strength sweep
IWAE_CURVE = "iwae_curve.json"  # per family with a likelihood: the IWAE bound against k (evaluation/likelihood.py)
IWAE_CURVE_FIGURE = "iwae_curve.png"


def model_file(family: str) -> Path:
    return MODELS / family / "model.pt"


def train_log(family: str) -> Path:
    return METRICS / f"{family}_train.csv"


def metrics_file(family: str) -> Path:
    return METRICS / f"{family}.json"


def report_dir(family: str) -> Path:
    return REPORTS / family


def notes_file(family: str) -> Path:
    return report_dir(family) / NOTES


CACHE_ENV = "FACEGEN_CACHE_DIR"


def cache_dir() -> Path | None:
    """Where the CLI caches derived values (attribute directions, face templates, the face detector).

    ``$FACEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/facegen``, else ``~/.cache/facegen``; None (no
    caching, one warning) when there is no home directory to put it in. Entries are keyed by the files
    they derive from (path, size, mtime), so a retrained model or re-prepared data is never served a
    stale value; deleting the folder is always safe.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")  # returned unchanged when neither $HOME nor the user database knows one
        if home == "~":
            cache_unusable("no home directory ($HOME unset, and the user has no entry in the user database); "
                           f"set {CACHE_ENV} to cache")
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "facegen"


_cache_warned = False


def cache_unusable(reason: str) -> None:
    """Warn, once per process, that caching is off: every later cache write fails the same way."""
    global _cache_warned
    if not _cache_warned:
        _cache_warned = True
        reason = " ".join(reason.split())  # one line, also for a library's multi-line message
        warnings.warn(f"not caching ({reason}); results are recomputed each time", stacklevel=3)


def read_cache(file: Path | None, load: Callable[[Path], T]) -> T | None:
    """``load(file)``, or None when the entry is absent or unreadable (it is then deleted, to be recomputed).

    ``load`` raising anything (a truncated file, garbled JSON, a missing key, a format from another
    version) counts as damaged: a cache is never trusted over recomputing, and never fatal.
    """
    try:
        if file is None or not file.is_file():
            return None
        return load(file)
    except Exception:  # noqa: BLE001 - see the docstring
        if file is not None:
            with contextlib.suppress(OSError):
                file.unlink()
        return None


def write_cache(file: Path | None, write: Callable[[IO[bytes]], None]) -> None:
    """:func:`atomic_write` a cache entry; a cache folder that cannot take it costs one warning, not the command."""
    if file is None:
        return
    try:
        atomic_write(file, write)
    except OSError as err:
        cache_unusable(f"cannot write {file}: {err.strerror or err}")


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows (setting it races other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync it, rename it over ``path``.

    The temp name starts with a dot and carries a random part, so concurrent writers (two ranks,
    two stages) never share one, and a crash leaves only a hidden leftover, never a truncated ``path``.
    ``mkstemp`` creates the file 0o600 (private); it is given 0o666 less the umask, as ``open()``
    would, so a group sharing a checkout or a DVC cache can read every output. An OSError (full
    disk, size limit, read-only folder) names ``path``; the temp file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp):  # a write on the descriptor names nothing
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise
    return path


def ensure_writable(*directories: Path,
                    fix: str = "make it writable (or run from a checkout you own), then rerun") -> None:
    """Fail before the work, not after, when an output folder cannot take a file: FacegenError naming
    the folder, the cause and ``fix``. (A full disk or a size limit can only show when writing: the
    writers above then raise an OSError naming the file.)"""
    from facegen.errors import FacegenError

    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise FacegenError(f"cannot write to {directory}/ ({err.strerror or type(err).__name__}): {fix}") from None


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def write_json(data: Any, path: Path) -> Path:
    """Pretty, key-sorted JSON with a final newline (small diffs for committed metrics files)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_image(path: Path, image: Any, **options: Any) -> Path:
    """Save a PIL image atomically, in the format its suffix names (``options``: e.g. ``quality=95``)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: no image format for the suffix {path.suffix!r}")
    return atomic_write(path, lambda fh: image.save(fh, format=fmt, **options))


def write_figure(fig: Any, path: Path, **options: Any) -> Path:
    """Save a matplotlib figure atomically, in the format its suffix names (``options``: e.g. ``dpi=80``)."""
    return atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix.lstrip(".").lower(), **options))


def write_npy(path: Path, array: Any) -> Path:
    import numpy as np

    return atomic_write(path, lambda fh: np.save(fh, array))


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through :func:`atomic_write`.

    Every weights file (model, prior, classifier, resumable state) stores its tensors under
    ``"state_dict"``; those are checked to be finite first, so no writer can save a diverged model.
    Raises TrainingDivergedError naming the first non-finite tensor.
    """
    import torch

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        _require_finite(obj["state_dict"], path)
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def _require_finite(state_dict: dict[str, Any], path: Path) -> None:
    """Refuse to write weights with NaN/inf: such a file would load fine and produce only noise."""
    import torch

    from facegen.errors import TrainingDivergedError

    bad = [name for name, t in state_dict.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingDivergedError(
            f"refusing to write {path}: {len(bad)} of {len(state_dict)} tensors are not finite (e.g. {bad[0]}); "
            "training diverged: lower the learning rate (train.lr) in params.yaml and rerun")
