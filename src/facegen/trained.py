"""Using trained models outside the pipeline: what the ``facegen`` command and ``facegen explore`` share.

Load a family (pipeline output ``<models-dir>/<family>/model.pt`` or an MLflow training run's
``model/`` artifact) with its companions (the VQ-VAE's fitted prior); decode photos and detect and
align their faces like the training faces (``facegen.faces``); find attribute directions the way
evaluation finds them for the family, cached on disk under ``artifacts.cache_dir()``; draw attribute
rows for a conditional sampler. Moved here from ``cli.py`` unchanged so the command and the explorer
(two top-layer front ends) share one copy without importing each other. Never branches on a family
name; user mistakes are ``FacegenError`` (one line).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from facegen import artifacts, tracking
from facegen.config import EvaluateConfig, RuntimeConfig
from facegen.data.dataset import load_split
from facegen.data.images import load_image, read_image
from facegen.errors import DataError, FacegenError
from facegen.latent.attributes import attribute_directions
from facegen.models import FAMILIES, family_class
from facegen.models.base import GenerativeModel
from facegen.models.checkpoint import in_models_dir, load_classifier, load_model, with_prior
from facegen.runtime import Runtime, eval_mode, setup_runtime

# Defaults shared with the evaluate stage, so the CLI edits and samples like the report does.
EVAL = EvaluateConfig()
MODEL_ARTIFACT = "model/model.pt"  # where train_family logs the model file inside its MLflow run
TABLE_COLUMNS = ("image_id", "split")  # attrs.csv columns that are not attributes
DIRECTION_CACHE_VERSION = 1  # bump when attribute directions are computed differently


class Laps(Protocol):
    """Where :func:`load_inputs` charges its steps (``cli.Timings``)."""

    def lap(self, name: str) -> None: ...


# ------------------------------------------------------------------------------------------------
# Loading: runtime, model, photos
# ------------------------------------------------------------------------------------------------
def make_runtime(device: str) -> Runtime:
    if device == "cuda" and not torch.cuda.is_available():
        raise FacegenError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return setup_runtime(RuntimeConfig(device=device))


def model_path(models_dir: Path, name: str) -> Path:
    """``<models_dir>/<name>/model.pt``: the pipeline's layout (artifacts.model_file) under another root."""
    return in_models_dir(artifacts.model_file(name), models_dir)


def load_family(args: argparse.Namespace, rt: Runtime) -> GenerativeModel:
    """The model named by ``--family`` (pipeline output), ``--run-id`` or ``--model`` (MLflow), with its
    companions. ``--model`` is resolved here, once, to the run that logged it (``args.run_id``), so it
    then reads and caches exactly as ``--run-id`` does."""
    resolve_registered(args)
    if args.run_id:
        with tempfile.TemporaryDirectory(prefix="facegen-") as tmp:
            model = load_model(tracking.download_artifact(args.run_id, MODEL_ARTIFACT, Path(tmp)), rt.device)
        if args.family and args.family != model.family:
            raise FacegenError(f"MLflow run {args.run_id} holds a {model.family} model, not {args.family}")
    else:
        if not args.family:
            raise FacegenError(f"say which model to use: --family ({', '.join(FAMILIES)}), --run-id RUN_ID or --model "
                               "models:/NAME@ALIAS")
        if args.family not in FAMILIES:
            raise FacegenError(f"unknown family {args.family!r}; known: {', '.join(FAMILIES)}")
        path = model_path(args.models_dir, args.family)
        if not path.is_file():
            raise FacegenError(f"{args.family} is not trained yet ({path} is missing): "
                               f"run `dvc repro train@{args.family}`")
        model = load_model(path, rt.device)
    return with_prior(model, args.models_dir)


def resolve_registered(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--model models:/...``: its registered version, with ``args.run_id`` set to the run behind it."""
    uri = getattr(args, "model", None)  # commands (and other front ends) without --model
    if not uri:
        return None
    if args.run_id:
        raise FacegenError("give --model or --run-id, not both (a registered model names its run)")
    version = tracking.model_version(uri)
    args.run_id = version["run_id"]
    return version


def require(model: GenerativeModel, capability: str, action: str) -> None:
    """A one-line refusal naming the families that declare ``capability``."""
    if capability not in model.capabilities:
        able = [name for name in FAMILIES if capability in family_class(name).capabilities]
        raise FacegenError(f"{model.family} cannot {action} (it declares no '{capability}' capability); "
                           f"families that can: {', '.join(able) or 'none'}")


def to_tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 (S, S, 3) crops -> (N, 3, S, S) float in [0, 1] on ``device``."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255).to(device)


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, S, S) in [0, 1] -> N uint8 (S, S, 3) arrays."""
    return list((images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


@dataclass
class Inputs:
    """Model inputs from photo files: one aligned crop per face, and where each came from."""

    crops: list[np.ndarray]  # uint8 (S, S, 3)
    labels: list[str]  # a row label per crop
    photos: list[Any]  # facegen.faces.photos.Photo per file (empty with --aligned)
    template: Any  # facegen.faces.align.Template


def load_inputs(files: Sequence[Path], size: int, args: argparse.Namespace, timings: Laps) -> Inputs:
    """Decode ``files``; detect and align their faces (or, ``--aligned``, resize + centre-crop them).

    Faces are aligned to the template measured on ``--prepared-dir``'s training faces (cached).
    Prints each face's box, and a warning for faces smaller than the model's input.
    """
    from facegen.faces.photos import find_faces, small_face_warning
    from facegen.faces.template import training_template

    template = training_template(args.prepared_dir, size, artifacts.cache_dir())
    timings.lap("face template")
    if args.aligned:
        crops = [load_image(file, size) for file in files]
        timings.lap("decode")
        return Inputs(crops, [f.stem[:14] for f in files], [], template)
    decoded = [read_image(file) for file in files]  # every file is checked before any detection
    photos = [find_faces(file, template, size, args.face, image) for file, image in zip(files, decoded)]
    timings.lap("decode, detect, align")
    labels = []
    for photo in photos:
        for pf in photo.faces:
            print(f"{pf.describe()}: eyes {pf.face.eye_distance:.0f} px apart, detector score {pf.face.score:.2f}",
                  file=sys.stderr)
            warning = small_face_warning(pf, size)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
            labels.append(f"{photo.file.stem[:11]}#{pf.index}" if pf.of > 1 else photo.file.stem[:14])
    return Inputs([pf.aligned.crop for p in photos for pf in p.faces], labels, photos, template)


def training_table(prepared: Path) -> pd.DataFrame:
    """The prepared training split's attribute table (columns: image_id, split, attributes...)."""
    csv = prepared / "attrs.csv"
    if not csv.is_file():
        raise DataError(f"{csv} is missing: the training faces' attributes are needed here; "
                        "run `dvc repro prepare` or point --prepared-dir at them")
    table = pd.read_csv(csv)
    return table[table["split"] == "train"]


def check_attribute(name: str, known: Sequence[str], source: str) -> None:
    if name not in known:
        raise FacegenError(f"attribute {name!r} is unknown to {source}; known: {', '.join(known)}")


# ------------------------------------------------------------------------------------------------
# Progress and model calls
# ------------------------------------------------------------------------------------------------
@contextmanager
def step(desc: str) -> Iterator[None]:
    """A one-step progress line for slow work with no finer hook (GAN inversion, boundary fits)."""
    with tqdm(total=1, desc=desc, bar_format="{desc}... {elapsed}", disable=None, leave=False) as bar:
        yield
        bar.update(1)


def encode_photos(model: GenerativeModel, x: torch.Tensor, rt: Runtime) -> torch.Tensor:
    with step(f"encoding {len(x)} image(s) by {model.reconstruction_method}"), eval_mode(model), rt.autocast():
        return model.encode(x).float()


def decode(model: GenerativeModel, z: torch.Tensor, rt: Runtime) -> torch.Tensor:
    with eval_mode(model), rt.autocast():
        return model.decode(z).float().clamp(0, 1).cpu()


# Default --strength of `facegen edit`, per way of finding directions: in the unit each direction has
# (multiples of the mean-difference vector, or steps along the unit boundary normal), large enough to
# show the attribute on the embedded dataset's models.
DEFAULT_STRENGTH = {"mean_difference": 1.5, "classifier_boundary": 3.0}
STRENGTH_UNIT = {"mean_difference": "multiples of the mean-difference vector",
                 "classifier_boundary": "steps along the unit boundary normal"}


def attribute_direction(model: GenerativeModel, attr: str, args: argparse.Namespace,
                        rt: Runtime) -> tuple[torch.Tensor, str, float]:
    """``attr``'s latent direction as evaluation finds it for this family, its unit, and a default strength."""
    directions, unit, strength = attribute_directions_of(model, (attr,), args, rt)
    if attr not in directions:
        raise FacegenError(f"no {attr} direction: it needs faces both with and without {attr}")
    return directions[attr], unit, strength


def attribute_directions_of(model: GenerativeModel, names: Sequence[str], args: argparse.Namespace,
                            rt: Runtime) -> tuple[dict[str, torch.Tensor], str, float]:
    """Every direction of ``names`` the data has (one pass over the training faces or one set of GAN
    samples for all of them), their unit, and a default strength. An attribute without both
    positive and negative training faces gets none. Each direction equals the one found alone: the
    per-attribute mean differences and boundary fits do not depend on the other names."""
    classifier, split = None, None
    if model.edit_directions == "classifier_boundary":
        path = in_models_dir(artifacts.CLASSIFIER_FILE, args.models_dir)
        if not path.is_file():
            raise FacegenError(f"{model.family} edits along attribute-classifier boundaries but {path} is "
                               "missing: run `dvc repro train_classifier`")
        classifier = load_classifier(path, rt.device)
        for attr in names:
            check_attribute(attr, classifier.attributes, f"the attribute classifier ({path})")
    else:
        table = training_table(args.prepared_dir)
        for attr in names:
            check_attribute(attr, [c for c in table.columns if c not in TABLE_COLUMNS],
                            f"the prepared data ({args.prepared_dir / 'attrs.csv'})")
        split = load_split(args.prepared_dir, "train", tuple(names))
    with step(f"finding the {', '.join(names)} direction{'s' if len(names) > 1 else ''}"):
        directions = attribute_directions(model, tuple(names), split, args.batch_size, rt, classifier=classifier,
                                          num_samples=args.boundary_samples,
                                          generator=torch.Generator().manual_seed(args.seed),
                                          desc="encoding training faces")
    return directions, STRENGTH_UNIT[model.edit_directions], DEFAULT_STRENGTH[model.edit_directions]


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def direction_cache_file(model: GenerativeModel, attr: str, args: argparse.Namespace) -> Path | None:
    """Where ``attr``'s direction for this model is cached, keyed by every file and option it derives
    from (model, prepared data or classifier, GAN boundary samples and seed); None when uncachable."""
    parts = [str(DIRECTION_CACHE_VERSION), model.family, attr, model.edit_directions]
    if args.run_id:
        parts.append(f"run:{args.run_id}")
    else:
        parts.append(_stat(model_path(args.models_dir, model.family)))
    if model.edit_directions == "classifier_boundary":
        classifier = in_models_dir(artifacts.CLASSIFIER_FILE, args.models_dir)
        if not classifier.is_file():
            return None
        parts += [_stat(classifier), str(args.boundary_samples), str(args.seed), str(args.batch_size)]
    else:
        files = [args.prepared_dir / "train.npy", args.prepared_dir / "attrs.csv"]
        if not all(f.is_file() for f in files):
            return None
        parts += [_stat(f) for f in files]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    cache = artifacts.cache_dir()
    return None if cache is None else cache / "directions" / f"{key}.pt"


def _read_direction(file: Path | None, rt: Runtime) -> tuple[torch.Tensor, str, float] | None:
    """A cached direction entry, or None (absent; a damaged entry is deleted, to be recomputed)."""
    def load(path: Path) -> tuple[torch.Tensor, str, float]:
        entry = torch.load(path, map_location=rt.device, weights_only=True)
        return entry["direction"], str(entry["unit"]), float(entry["strength"])

    return artifacts.read_cache(file, load)


def _write_direction(file: Path | None, direction: torch.Tensor, unit: str, strength: float) -> None:
    entry = {"direction": direction.detach().cpu(), "unit": unit, "strength": strength}
    artifacts.write_cache(file, lambda fh: torch.save(entry, fh))


def cached_attribute_direction(model: GenerativeModel, attr: str, args: argparse.Namespace,
                               rt: Runtime) -> tuple[torch.Tensor, str, float]:
    """:func:`attribute_direction`, cached on disk (see :func:`direction_cache_file`).

    Finding a direction encodes the whole training split (or fits a GAN boundary on samples): the
    slowest step of ``edit`` and the same for every photo, so it is computed once per model. The
    cache is only an optimisation: a damaged entry is recomputed, an unusable folder costs one warning.
    """
    file = direction_cache_file(model, attr, args)
    cached = _read_direction(file, rt)
    if cached is not None:
        return cached
    direction, unit, strength = attribute_direction(model, attr, args, rt)
    _write_direction(file, direction, unit, strength)
    return direction, unit, strength


def cached_attribute_directions(model: GenerativeModel, names: Sequence[str], args: argparse.Namespace,
                                rt: Runtime) -> dict[str, tuple[torch.Tensor, str, float]]:
    """:func:`cached_attribute_direction` for several attributes: those not cached (or damaged) are found
    in one pass (:func:`attribute_directions_of`) and cached as it would cache them; attributes without
    a direction are left out."""
    files = {name: direction_cache_file(model, name, args) for name in names}
    found = {name: entry for name, file in files.items() if (entry := _read_direction(file, rt)) is not None}
    todo = [name for name in names if name not in found]
    if todo:
        directions, unit, strength = attribute_directions_of(model, todo, args, rt)
        for name, direction in directions.items():
            found[name] = (direction, unit, strength)
            _write_direction(files[name], direction, unit, strength)
    return {name: found[name] for name in names if name in found}


def attribute_conditions(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``--attr NAME=0|1`` options as a dict; an attribute given twice is refused (a dict would keep the last)."""
    wanted: dict[str, float] = {}
    for name, value in pairs:
        if name in wanted:
            raise FacegenError(f"--attr {name} is given twice ({name}={wanted[name]:g} and {name}={value:g}); keep one")
        wanted[name] = value
    return wanted


def sample_conditions(model: GenerativeModel, wanted: dict[str, float], args: argparse.Namespace) -> torch.Tensor:
    """(n, A) attribute rows for a conditional sampler: the ``--attr`` values, the rest as in real faces.

    A model whose ``sample`` uses ``attrs`` says so with ``sample_attributes`` (the names, in column
    order; empty: it ignores them). Unnamed attributes are copied from randomly drawn
    training faces, so asking for Smiling=1 keeps every other attribute at its natural frequency
    instead of forcing it off.
    """
    names = model.sample_attributes
    if not names:
        raise FacegenError(f"{model.family} samples cannot be conditioned on attributes (its sampler takes "
                           "none); conditional sampling needs a vqvae with a conditional prior (prior.conditional)")
    for name in wanted:
        check_attribute(name, names, f"the {model.family} sampler")
    rows = training_table(args.prepared_dir).sample(args.n, replace=True, random_state=args.seed)
    attrs = torch.from_numpy(rows[list(names)].to_numpy(np.float32))
    for name, value in wanted.items():
        attrs[:, names.index(name)] = value
    return attrs

