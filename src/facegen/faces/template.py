"""The training data's framing, measured: where the 5 landmarks sit in a prepared face.

:func:`measure_template` runs the same detector and landmark model used on photos over prepared
training faces (upsampled so the detector, trained on 80 px faces, sees ~140 px ones) and takes the
per-landmark median in unit crop coordinates. :func:`training_template` does that on the
prepared split the model was trained on (an evenly spaced sample), caches the result next to the
other CLI caches, and falls back to :data:`GENERATOR_TEMPLATE` when the detector finds too few
faces there (e.g. 16 px test blobs).

:data:`GENERATOR_TEMPLATE` was measured the same way on the synthetic generator's own renders:
64 faces of seed 1234 at CelebA's 178 x 218, detected (HOG, upsampled once) in 53, median 5-point
landmarks (117, 112), (101, 113), (63, 113), (80, 113), (90, 141) + 0.5 px (pixel centres). These
match the generator's drawn geometry (eye centres at x = 89 -/+ 19, y = 112; nostrils at y = 140),
which was built to follow CelebA's alignment (eyes at y ~ 112 of 218). A test re-measures it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.artifacts import read_cache, write_cache
from facegen.faces.align import Template
from facegen.faces.detect import landmarks
from facegen.faces.dlib_models import face_detector

log = logging.getLogger(__name__)
CELEBA_SIZE = (178, 218)  # width, height of CelebA's aligned crops (and of the synthetic faces)
# Median 5-point landmarks on the synthetic renders, CelebA pixels (see the module doc).
GENERATOR_LANDMARKS = np.array([(117.5, 112.5), (101.5, 113.5), (63.5, 113.5), (80.5, 113.5), (90.5, 141.5)])
MEASURE_FACES = 200  # prepared faces sampled for a measurement (~20 ms each on one core)
DETECT_SIDE = 256  # prepared faces are upsampled to at least this for the detector
MIN_FOUND = 0.25  # fraction of sampled faces that must be detected for the measurement to count
TEMPLATE_VERSION = 1  # bump when the measurement changes, so cached templates are recomputed


def celeba_to_crop(points: np.ndarray, size: int) -> np.ndarray:
    """CelebA-pixel points (178 x 218 image) -> unit coordinates of prepare's ``size`` crop.

    prepare resizes the short side (width) to ``size`` and centre-crops the height: the same
    arithmetic as ``facegen.data.images.load_image``.
    """
    w, h = CELEBA_SIZE
    new_h = int(size * h / w)
    top = int(round((new_h - size) / 2.0))
    s = size / w
    return np.stack([points[:, 0] * s, points[:, 1] * s - top], 1) / size


def generator_template(size: int) -> Template:
    """:data:`GENERATOR_LANDMARKS` in prepare's ``size`` crop."""
    return Template(celeba_to_crop(GENERATOR_LANDMARKS, size),
                    "synthetic-generator geometry (5-point landmarks measured on its 178x218 renders)")


def measure_template(faces: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Median landmarks of ``faces`` (uint8 (N, S, S, 3)) in unit coordinates, and how many were found.

    Returns (None, found) when fewer than :data:`MIN_FOUND` of them contain a detectable face.
    """
    n, size = len(faces), faces.shape[1]
    factor = max(1, -(-DETECT_SIDE // size))  # ceil: 64 px faces -> 256 px
    found = []
    for face in faces:
        big = np.asarray(Image.fromarray(face).resize((size * factor, size * factor), Image.BICUBIC))
        rects = face_detector()(big, 0)
        if len(rects):
            r = max(rects, key=lambda r: r.area())
            box = (r.left(), r.top(), r.right() + 1, r.bottom() + 1)
            found.append(landmarks(big, box) / (size * factor))
    if not n or len(found) < max(1, MIN_FOUND * n):
        return None, len(found)
    return np.median(np.stack(found), 0), len(found)


def _cache_key(train: Path, size: int) -> str:
    st = train.stat()
    text = f"{TEMPLATE_VERSION}|{train.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_template(prepared_dir: Path, size: int, cache: Path | None = None) -> Template:
    """The template of the prepared training faces in ``prepared_dir`` at ``size`` px.

    Measured on up to :data:`MEASURE_FACES` evenly spaced faces of ``train.npy`` (a few seconds,
    once: the result is cached in ``cache`` keyed by the file's path, size and mtime; a damaged
    entry is recomputed, an unwritable cache costs one warning). The
    template is in unit coordinates, so it serves a model of any ``size``. Falls back to :func:`generator_template` when the file is missing or the detector finds too
    few faces in it; ``Template.source`` says which.
    """
    train = Path(prepared_dir) / "train.npy"
    if not train.is_file():
        return _fallback(size, f"{train} is missing")
    file = None if cache is None else cache / "templates" / f"{_cache_key(train, size)}.json"
    template = read_cache(file, _read_template)
    if template is None:
        template = faces_template(np.load(train, mmap_mode="r"), size, str(train))
        text = json.dumps({"points": template.points.tolist(), "source": template.source})
        write_cache(file, lambda fh: fh.write(text.encode()))
    return template


def _read_template(file: Path) -> Template:
    """A cached template; raises on anything but 5 finite (x, y) points and a source (a damaged entry)."""
    data = json.loads(file.read_text())
    points = np.asarray(data["points"], dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"{file}: points of shape {points.shape}")
    return Template(points, str(data["source"]))


def faces_template(images: np.ndarray, size: int, where: str) -> Template:
    """The template of training faces ``images`` (uint8 (N, S, S, 3), array or memory map), named ``where``.

    Measured on up to :data:`MEASURE_FACES` evenly spaced faces; falls back to
    :func:`generator_template` when the detector finds too few. Not cached (see :func:`training_template`).
    """
    idx = np.linspace(0, len(images) - 1, min(MEASURE_FACES, len(images))).round().astype(int)
    points, found = measure_template(np.asarray(images[idx]))
    if points is None:
        return _fallback(size, f"the detector found faces in only {found} of {len(idx)} sampled faces of {where}")
    return Template(points, f"measured on {found} of {len(idx)} sampled training faces in {where}")


def _fallback(size: int, why: str) -> Template:
    t = generator_template(size)
    log.info("face template: %s; using the %s", why, t.source)
    return Template(t.points, f"{t.source}, because {why}")
