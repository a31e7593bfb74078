"""The explorer's engine: every trained family loaded once, each face encoded once, edits decoded live.

What a slider move costs is one decode per family: a face's latent, its reconstruction, PSNR and
identity distance are computed once (:meth:`Explorer.encode`, the slow part: the DCGAN has no
encoder and inverts the face by latent optimisation) and kept; attribute directions are found once
per model at start-up, through the same on-disk cache as ``facegen edit`` (``facegen.trained``).
Nothing here is a web concern (``app.py`` serves it), and nothing branches on a family name: what a
column offers follows its model's declared capabilities.

Edits are in the evaluation's matched-strength unit (``evaluation/editing.py``): each attribute
direction is normalised to unit length and stepped by ``alpha`` times the family's typical distance
between two start latents (``latent_scale``: encoded test faces, or prior samples for a family whose
directions are classifier boundaries on prior samples, as ``evaluation.analyses`` does), so
``alpha = 1`` is "as far as another face" in every family. Several attribute sliders add up.
Traversal offsets are added to one latent dimension in the prior's units (N(0, 1)); the report's
``traversal.png`` sets the value instead, which a live slider cannot do without jumping at 0.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facegen import artifacts
from facegen.config import load_params
from facegen.data.dataset import load_split
from facegen.errors import FacegenError
from facegen.comparison.decision import decide
from facegen.comparison.noise import NOISE_FILE, Noise, load_noise
from facegen.comparison.rows import Row, cell, runs_of
from facegen.comparison.sections import SECTIONS
from facegen.comparison.specs import SPECS_FILE, MetricSpecs, load_specs
from facegen.evaluation.editing import latent_scale, unit
from facegen.evaluation.identity import identity_unavailable
from facegen.latent.attributes import encode_split
from facegen.latent.interpolation import lerp, slerp
from facegen.latent.traversal import dimension_activity
from facegen.models import FAMILIES
from facegen.models.base import EDIT, ENCODE, TRAVERSE, GenerativeModel
from facegen.models.inversion import inversion_progress
from facegen.reporting.grids import grid_array
from facegen.runtime import Runtime, eval_mode
from facegen.trained import (EVAL, TABLE_COLUMNS, cached_attribute_directions, decode, encode_photos, load_family,
                             load_inputs, model_path, sample_conditions, to_tensor, to_uint8)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is being done)
MAX_UPLOAD_BYTES = 50 * 2**20  # larger files are refused before decoding (a 12 MP JPEG is ~5 MB)
MAX_UPLOADS = 32               # uploaded faces kept in memory (oldest dropped first)
MAX_SAMPLES = 64               # most faces one sample button draws
TRAVERSAL_DIMS = 4             # sliders per VAE-family column (EVAL.traversal_dims rows in the report)
SAMPLE_COLUMNS = 4             # faces per row of a sample grid: a page column is ~4 faces wide


@dataclass(frozen=True)
class Face:
    """One face the page can pick: a test face or an uploaded photo's aligned face."""

    id: str                      # "test-<index>" or "upload-<hash>"
    label: str
    crop: np.ndarray             # uint8 (S, S, 3), aligned like the training faces
    attributes: dict[str, int]   # test faces: the prepared attributes; uploads: none
    photo: Any = None            # facegen.faces.photos.Photo of an upload with detection (identity in the photo)
    note: str = ""               # e.g. "face 1 of 3 (the leftmost)"


@dataclass(frozen=True)
class Encoded:
    """One face in one family: its latent and how well it comes back."""

    z: torch.Tensor              # (1, *latent shape), on the model's device
    reconstruction: np.ndarray   # uint8 (S, S, 3)
    psnr: float                  # dB, of the reconstruction against the aligned face
    identity: float | None = None  # dlib descriptor distance face -> reconstruction (None: not measured)


@dataclass
class Column:
    """One family's column: its model (or why there is none), directions, scale and metrics."""

    family: str
    model: GenerativeModel | None = None
    problem: str = ""                                   # why there is no model (shown in the column)
    source: str = ""                                    # where the model came from
    directions: dict[str, torch.Tensor] = field(default_factory=dict)  # unit, flat (D,)
    scale: float = 0.0                                  # latent_scale: alpha = 1 moves this far
    dims: list[tuple[int, float]] = field(default_factory=list)        # (dimension, activity), most active first
    metrics: list[tuple[str, str]] = field(default_factory=list)       # (label, value ± interval)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What the page shows of this column besides images (JSON)."""
        model = self.model
        out: dict[str, Any] = {"family": self.family, "trained": model is not None, "problem": self.problem,
                               "source": self.source, "metrics": self.metrics, "notes": self.notes}
        if model is not None:
            out.update(reconstruction=model.reconstruction_method, edits=model.edit_directions,
                       attributes=sorted(self.directions), scale=round(self.scale, 4),
                       traversal=[{"dim": d, "activity": round(a, 4)} for d, a in self.dims],
                       sample_attributes=list(model.sample_attributes))
        return out


class UploadTooLarge(FacegenError):
    """An upload over :data:`MAX_UPLOAD_BYTES`."""


def safe_name(name: str) -> str:
    """An uploaded file's name reduced to a harmless file name (it is only shown and used in a temp folder)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[-80:] or "upload"


def check_upload_size(size: int, name: str) -> None:
    """Refuse (one line) an upload of ``size`` bytes over :data:`MAX_UPLOAD_BYTES`."""
    if size > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"{safe_name(name)} is {size / 2**20:.1f} MB, over the explorer's "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB upload limit; downscale it (e.g. to 4000 px on the "
                             "long side) and retry")


def png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (fast compression: the page is local)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (mean squared error over pixels and channels, in [0, 1] units)."""
    mse = float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2))
    return float(-10 * np.log10(max(mse, 1e-10)))


def family_args(args: argparse.Namespace, family: str | None, run_id: str | None) -> argparse.Namespace:
    """The command's options as ``facegen.trained`` reads them, for one family's model."""
    # model=None: a registered --model was resolved to its run already (server.run_ids)
    return argparse.Namespace(**{**vars(args), "family": family, "run_id": run_id, "model": None, "face": 1,
                                 "aligned": False})


def headline_metrics(family: str, metrics: dict[str, float], specs: MetricSpecs, noise: Noise | None
                     ) -> list[tuple[str, str]]:
    """The report's headline rows this family has, section by section: (label, the report's cell: the
    recorded runs' mean ± its interval and this run's value)."""
    rows = []
    for section in SECTIONS:
        for name in section.metrics(specs):
            if name in metrics and specs(name).headline:
                decision = decide(name, {family: runs_of(noise, family, name)}, "none", specs.alpha)
                rows.append((specs.label(name), cell(Row(name, specs.label(name), {family: metrics[name]}, decision),
                                                     family)))
    return rows


class Explorer:
    """The models, faces and caches behind ``facegen explore``; safe to call from several threads.

    ``args``: the ``explore`` command's options (``models_dir``, ``prepared_dir``, ``metrics_dir``,
    ``params``, ``seed``, ``batch_size``, ``boundary_samples``, ``faces``). ``run_ids``: MLflow training
    runs whose models replace their families' ``models_dir`` ones (at most one per family). Raises
    FacegenError when no family is trained or the prepared test faces are missing.
    """

    def __init__(self, args: argparse.Namespace, rt: Runtime, run_ids: Sequence[str] = ()) -> None:
        self.args, self.rt = args, rt
        from_runs: dict[str, tuple[GenerativeModel, str]] = {}
        for run_id in run_ids:
            model = load_family(family_args(args, None, run_id), rt)
            if model.family in from_runs:
                raise FacegenError(f"MLflow runs {from_runs[model.family][1]} and {run_id} both hold a {model.family} "
                                   "model: give one run per family")
            from_runs[model.family] = (model, run_id)
        table = pd.read_csv(args.prepared_dir / "attrs.csv") if (args.prepared_dir / "attrs.csv").is_file() else None
        if table is None:
            raise FacegenError(f"{args.prepared_dir / 'attrs.csv'} is missing: the explorer shows the prepared test "
                               "faces; run `dvc repro prepare` or point --prepared-dir at them")
        self.attributes = tuple(c for c in table.columns if c not in TABLE_COLUMNS)
        test = self._test = load_split(args.prepared_dir, "test", self.attributes)
        self.size = int(test.images.shape[1])
        self._lock = threading.Lock()
        self._faces: OrderedDict[str, Face] = OrderedDict()
        for i in range(min(args.faces, len(test))):
            attrs = {a: int(v) for a, v in zip(self.attributes, test.attrs[i].tolist())}
            self._faces[f"test-{i}"] = Face(f"test-{i}", f"test face {i}", test.images[i].numpy(), attrs)
        self._encoded: dict[tuple[str, str], Encoded] = {}
        source = load_params(args.params).data.source if args.params.is_file() else "unknown"
        self.identity_note = identity_unavailable(source)  # None: the test faces are real photos
        specs = load_specs(args.metrics_dir.parent / SPECS_FILE) if (args.metrics_dir.parent / SPECS_FILE).is_file() else None
        noise_file = args.metrics_dir.parent / NOISE_FILE
        params = load_params(args.params) if args.params.is_file() else None
        noise = load_noise(noise_file, params) if noise_file.is_file() else None
        self.columns: dict[str, Column] = {}
        for family in FAMILIES:
            self.columns[family] = self._column(family, from_runs.get(family), test.images[:EVAL.edit_faces], specs, noise)
        if not any(c.model is not None for c in self.columns.values()):
            raise FacegenError("no family is trained: run `dvc repro` (or `dvc repro train@vae`) first")
        self._template: Any = None

    # -- start-up ---------------------------------------------------------------------------------
    def _column(self, family: str, from_run: tuple[GenerativeModel, str] | None, starts: torch.Tensor,
                specs: MetricSpecs | None, noise: Noise | None) -> Column:
        col = Column(family)
        metrics_file = self.args.metrics_dir / f"{family}.json"
        if specs is not None and metrics_file.is_file():
            col.metrics = headline_metrics(family, json.loads(metrics_file.read_text()), specs, noise)
        fargs = family_args(self.args, family, from_run[1] if from_run else None)
        if from_run is not None:
            model, col.source = from_run[0], f"MLflow run {from_run[1]}"
        else:
            try:
                model = load_family(fargs, self.rt)
            except FacegenError as err:
                col.problem = str(err)
                return col
            col.source = str(model_path(self.args.models_dir, family))
        if model.image_size != self.size:
            col.problem = (f"{family} was trained on {model.image_size} px faces but {self.args.prepared_dir} holds "
                           f"{self.size} px faces: point --prepared-dir at its data")
            return col
        col.model = model
        if ENCODE not in model.capabilities:
            col.notes.append(f"{family} cannot encode faces: only its samples are shown")
            return col
        if EDIT in model.capabilities:
            try:
                found = cached_attribute_directions(model, self.attributes, fargs, self.rt)
            except FacegenError as err:  # e.g. a GAN without the attribute classifier
                col.notes.append(f"no attribute edits: {err}")
                found = {}
            col.directions = {name: unit(d).to(self.rt.device) for name, (d, _, _) in found.items()}
            if missing := [a for a in self.attributes if a not in found]:
                col.notes.append(f"no direction for {', '.join(missing)}")
            if col.directions:
                col.scale = latent_scale(self._starts(model, starts))
        if TRAVERSE in model.capabilities:  # ranked on the whole test split, as the report's traversal
            activity = dimension_activity(encode_split(model, self._test, self.args.batch_size, self.rt))
            order = torch.argsort(activity, descending=True)[:TRAVERSAL_DIMS]
            col.dims = [(int(d), float(activity[d])) for d in order]
        return col

    def _starts(self, model: GenerativeModel, faces: torch.Tensor) -> torch.Tensor:
        """The start latents the evaluation measures the edit unit on (``analyses._edit_setup``), flat:
        as many prior samples as ``faces`` (uint8 (N, S, S, 3)) where directions are boundaries fitted on
        prior samples, else those faces encoded."""
        if model.edit_directions == "classifier_boundary":
            return model.latent_prior(len(faces), torch.Generator().manual_seed(self.args.seed)).flatten(1)
        with eval_mode(model), self.rt.autocast():
            return model.encode(to_tensor(list(faces.numpy()), self.rt.device)).float().flatten(1)

    # -- faces ------------------------------------------------------------------------------------
    def faces(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": f.id, "label": f.label, "attributes": f.attributes, "note": f.note}
                    for f in self._faces.values()]

    def face(self, face_id: str) -> Face:
        with self._lock:
            face = self._faces.get(face_id)
        if face is None:
            raise FacegenError(f"unknown face {face_id!r}: pick a test face or upload a photo again")
        return face

    def add_upload(self, data: bytes, name: str, aligned: bool) -> Face:
        """Decode, detect and align an uploaded photo's face (the leftmost) as ``facegen edit`` does.

        Raises FacegenError with the command's one-line refusals (not an image, no face, too large);
        the file only lives in a temporary folder outside the checkout while it is read.
        """
        safe = safe_name(name)
        check_upload_size(len(data), safe)
        face_id = "upload-" + hashlib.sha256(data + bytes([aligned])).hexdigest()[:16]
        with self._lock:
            if face_id in self._faces:
                return self._faces[face_id]
        with tempfile.TemporaryDirectory(prefix="facegen-upload-") as tmp:
            file = Path(tmp) / safe
            file.write_bytes(data)
            args = argparse.Namespace(**{**vars(self.args), "aligned": aligned, "face": None if aligned else 1})
            try:
                inputs = load_inputs([file], self.size, args, _NoLaps())
            except FacegenError as err:
                raise FacegenError(str(err).replace(f"{tmp}/", "")) from None
        photo = inputs.photos[0] if inputs.photos else None
        note = ""
        if photo is not None and photo.faces[0].of > 1:
            note = f"face 1 of {photo.faces[0].of} (the leftmost)"
        face = Face(face_id, safe, inputs.crops[0], {}, photo, note)
        self._template = inputs.template
        with self._lock:
            self._faces[face_id] = face
            uploads = [k for k in self._faces if k.startswith("upload-")]
            for old in uploads[:max(0, len(uploads) - MAX_UPLOADS)]:
                del self._faces[old]
                for key in [k for k in self._encoded if k[0] == old]:
                    del self._encoded[key]
        return face

    def face_png(self, face_id: str) -> bytes:
        return png(self.face(face_id).crop)

    # -- the slow part: encoding ------------------------------------------------------------------
    def encoded(self, face_id: str) -> bool:
        with self._lock:
            return all((face_id, f) in self._encoded for f, c in self.columns.items() if self._encodes(c))

    @staticmethod
    def _encodes(col: Column) -> bool:
        return col.model is not None and ENCODE in col.model.capabilities

    def encode(self, face_id: str, progress: Progress | None = None) -> dict[str, Any]:
        """Encode ``face_id`` in every family (inversion for a GAN: reported step by step to ``progress``),
        decode the reconstructions, PSNR and, where it means something, the identity distance."""
        say = progress or (lambda fraction, what: None)
        face = self.face(face_id)
        cols = [c for c in self.columns.values() if self._encodes(c)]
        x = to_tensor([face.crop], self.rt.device)
        results: dict[str, Encoded] = {}
        for k, col in enumerate(cols):
            assert col.model is not None
            with self._lock:
                known = self._encoded.get((face_id, col.family))
            if known is not None:
                results[col.family] = known
                continue
            what = f"{col.family}: {'inverting (latent optimisation)' if col.model.reconstruction_method != 'encoder' else 'encoding'}"
            say(k / (len(cols) + 1), what)

            def report(done: int, total: int, k: int = k, what: str = what) -> None:
                say((k + done / total) / (len(cols) + 1), f"{what}, step {done}/{total}")

            with inversion_progress(report):
                z = encode_photos(col.model, x, self.rt)
            recon = to_uint8(decode(col.model, z, self.rt))[0]
            results[col.family] = Encoded(z, recon, psnr(face.crop, recon))
        say(len(cols) / (len(cols) + 1), "identity distance")
        distances = self._identity(face, [results[c.family].reconstruction for c in cols])
        with self._lock:
            for col, dist in zip(cols, distances):
                enc = results[col.family]
                if enc.identity is None and dist is not None:
                    enc = Encoded(enc.z, enc.reconstruction, enc.psnr, dist)
                self._encoded[(face_id, col.family)] = enc
        say(1.0, "done")
        return self.summary(face_id)

    def _identity(self, face: Face, outputs: Sequence[np.ndarray]) -> list[float | None]:
        """dlib descriptor distances face -> each output: for photos (as ``facegen edit`` reports them)
        and for test faces of real-photo data; ``None`` for synthetic test faces (the descriptor was
        trained on real people: ``evaluation.identity``)."""
        if face.photo is None and not face.id.startswith("upload-") and self.identity_note is not None:
            return [None] * len(outputs)
        from facegen.faces.align import face_mask
        from facegen.faces.photos import aligned_identity_distances, identity_distances

        template = self.template()
        if face.photo is not None:
            return identity_distances(face.photo, [list(outputs)], face_mask(template, self.size))[0]
        return aligned_identity_distances([face.crop], [list(outputs)], template)[0]

    def template(self) -> Any:
        """Where the training faces' landmarks sit (measured once, cached on disk like ``facegen edit``)."""
        if self._template is None:
            from facegen.faces.template import training_template

            self._template = training_template(self.args.prepared_dir, self.size, artifacts.cache_dir())
        return self._template

    def summary(self, face_id: str) -> dict[str, Any]:
        """The face's reconstruction per family (PNG bytes), PSNR and identity distance."""
        out: dict[str, Any] = {}
        with self._lock:
            for family in self.columns:
                enc = self._encoded.get((face_id, family))
                if enc is not None:
                    out[family] = {"reconstruction": png(enc.reconstruction), "psnr": round(enc.psnr, 2),
                                   "identity": None if enc.identity is None else round(enc.identity, 3)}
        return out

    def _latent(self, face_id: str, family: str) -> Encoded:
        self.face(face_id)  # an unknown face is refused as such
        with self._lock:
            enc = self._encoded.get((face_id, family))
        if enc is None:
            raise FacegenError(f"{face_id} is not encoded yet: pick it again")
        return enc

    # -- the fast part: slider moves --------------------------------------------------------------
    def render(self, face_id: str, edits: dict[str, float], traverse: dict[str, dict[int, float]] | None = None
               ) -> dict[str, bytes]:
        """Every encoding family's decode of ``face_id`` moved by ``edits`` (attribute -> alpha, the
        fraction of the way to another face) and ``traverse`` (family -> {dimension: offset}): PNG bytes."""
        traverse = traverse or {}
        unknown = sorted(set(edits) - set(self.attributes))
        if unknown:
            raise FacegenError(f"unknown attribute(s) {unknown}; known: {', '.join(self.attributes)}")
        out = {}
        for family, col in self.columns.items():
            if not self._encodes(col):
                continue
            assert col.model is not None
            enc = self._latent(face_id, family)
            z = enc.z.flatten(1).clone()
            for name, alpha in edits.items():
                if alpha and name in col.directions:
                    z += alpha * col.scale * col.directions[name]
            for dim, offset in traverse.get(family, {}).items():
                if not 0 <= dim < z.shape[1]:
                    raise FacegenError(f"{family} has no latent dimension {dim} (it has {z.shape[1]})")
                z[:, dim] += offset
            out[family] = png(to_uint8(decode(col.model, z.view_as(enc.z), self.rt))[0])
        return out

    def interpolate(self, a: str, b: str, steps: int, spherical: bool) -> dict[str, bytes]:
        """Per encoding family, a strip of ``steps`` decodes on the path from ``a``'s latent to ``b``'s
        (linear, or ``spherical``: slerp), as ``facegen interpolate`` draws it: PNG bytes."""
        path = slerp if spherical else lerp
        out = {}
        for family, col in self.columns.items():
            if not self._encodes(col):
                continue
            assert col.model is not None
            za, zb = self._latent(a, family).z[0], self._latent(b, family).z[0]
            images = decode(col.model, path(za, zb, steps), self.rt)
            out[family] = png(grid_array(images, nrow=steps, padding=1))
        return out

    def sample(self, family: str, n: int, seed: int, conditions: dict[str, float]) -> bytes:
        """``n`` new faces of ``family`` drawn with ``seed`` (conditioned on ``conditions`` where its
        sampler takes attributes, as ``facegen sample --attr`` does): a PNG grid."""
        col = self.columns.get(family)
        if col is None or col.model is None:
            raise FacegenError(f"{family} is not available here: {col.problem if col else 'unknown family'}")
        if not 1 <= n <= MAX_SAMPLES:
            raise FacegenError(f"ask for 1 to {MAX_SAMPLES} samples, not {n}")
        model = col.model
        args = argparse.Namespace(**{**vars(self.args), "n": n, "seed": seed})
        attrs = sample_conditions(model, conditions, args).to(self.rt.device) if conditions else None
        with eval_mode(model), self.rt.autocast():
            images = model.sample(n, torch.Generator().manual_seed(seed), attrs).float().clamp(0, 1).cpu()
        return png(grid_array(images, nrow=min(n, SAMPLE_COLUMNS), padding=1))

    def describe(self) -> dict[str, Any]:
        """Everything the page needs to lay itself out (JSON)."""
        return {"attributes": list(self.attributes), "identity_note": self.identity_note,
                "columns": [c.describe() for c in self.columns.values()], "traversal_range": EVAL.traversal_range,
                "max_upload_mb": MAX_UPLOAD_BYTES // 2**20}


class _NoLaps:
    """``load_inputs`` charges its steps to a timer; the explorer keeps none."""

    def lap(self, name: str) -> None:
        return None
