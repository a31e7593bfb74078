"""dlib and its pretrained models, loaded once per process.

Model files come from the pinned ``face-recognition-models`` package. Its own
``*_location()`` helpers import ``pkg_resources``, which current setuptools no longer ships, so the
files are located with ``importlib.util.find_spec`` instead (which does not run the package).
Load times on a 2-core CPU: HOG detector ~0.6 s (it is built in memory), 5-point predictor 0.1 s,
descriptor network 0.1 s; each is paid only by the commands that need it.
"""
from __future__ import annotations

import functools
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from facegen.artifacts import cache_dir, cache_unusable, read_cache, write_cache
from facegen.errors import FacegenError

SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
FACE_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise FacegenError("face detection needs dlib: pip install dlib-bin==20.0.1.post1 "
                           "(a dependency of facegen: reinstall with `pip install -e .`)") from None
    return dlib


def model_file(name: str) -> Path:
    """The path of one of face-recognition-models' files (see the module doc for why not its helpers)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacegenError("face landmarks need face-recognition-models: pip install face-recognition-models==0.3.0 "
                           "(a dependency of facegen: reinstall with `pip install -e .`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FacegenError(f"{path} is missing: reinstall face-recognition-models==0.3.0")
    return path


@functools.cache
def face_detector() -> Any:
    """dlib's HOG + linear SVM frontal face detector (5 poses, trained on 80x80 px faces).

    ``get_frontal_face_detector`` parses the model from text compiled into dlib: 0.55 s, a tenth
    of a whole cached ``facegen edit``. Its own binary save loads in 2 ms and detects identically
    (checked on 64 synthetic faces: same boxes, scores and poses), so the first call saves it to
    the CLI's cache folder (keyed by dlib's version) and later processes load that.
    """
    dlib = _dlib()
    cache = cache_dir()
    file = None if cache is None else cache / "dlib" / f"frontal_face_detector-{dlib.__version__}.svm"
    detector = read_cache(file, lambda path: dlib.fhog_object_detector(str(path)))  # damaged: rebuilt below
    if detector is None:
        detector = dlib.get_frontal_face_detector()
        if file is not None:  # dlib saves to a path only: through a private folder, then atomically into the cache
            try:
                with tempfile.TemporaryDirectory(prefix="facegen-dlib-") as tmp:
                    detector.save(f"{tmp}/detector.svm")
                    data = Path(tmp, "detector.svm").read_bytes()
            except (OSError, RuntimeError) as err:  # no usable temp folder (dlib raises RuntimeError)
                cache_unusable(f"cannot save the face detector: {err}")
            else:
                write_cache(file, lambda fh: fh.write(data))
    return detector


@functools.cache
def shape_predictor() -> Any:
    """dlib's 5-point landmark model: both corners of each eye and the base of the nose."""
    return _dlib().shape_predictor(str(model_file(SHAPE_PREDICTOR_5)))


@functools.cache
def face_encoder() -> Any:
    """dlib's ResNet face descriptor (128-d; same person when the distance is below 0.6)."""
    return _dlib().face_recognition_model_v1(str(model_file(FACE_DESCRIPTOR)))


def rectangle(box: tuple[float, float, float, float]) -> Any:
    """A dlib.rectangle from a continuous (left, top, right, bottom) box (dlib's right/bottom are inclusive)."""
    left, top, right, bottom = (int(round(v)) for v in box)
    return _dlib().rectangle(left, top, right - 1, bottom - 1)
