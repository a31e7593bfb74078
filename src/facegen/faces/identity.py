"""Is the output still the same person? dlib's 128-d face descriptor distance.

dlib's ResNet descriptor (``dlib_face_recognition_resnet_model_v1``, 99.38% on LFW) maps a face to
a 128-d vector; two photos show the same person when the Euclidean distance is below
:data:`SAME_PERSON_THRESHOLD` = 0.6, the threshold dlib's author published with the model (and
face_recognition's default tolerance). Faces are compared as dlib expects: landmarks predicted in
the given box, a 150 x 150 chip aligned by dlib with 25% padding, one forward pass per chip, all
chips in one batch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from facegen.faces.dlib_models import _dlib, face_encoder, rectangle, shape_predictor

SAME_PERSON_THRESHOLD = 0.6
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what the descriptor network was trained on


def face_chip(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """uint8 (150, 150, 3): the face in ``box`` of ``image`` (uint8 H x W x 3), aligned by dlib."""
    shape = shape_predictor()(image, rectangle(box))
    return _dlib().get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)


def descriptors(chips: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float64 descriptors of face chips from :func:`face_chip`."""
    if not chips:
        return np.zeros((0, 128))
    return np.array([np.array(d) for d in face_encoder().compute_face_descriptor(list(chips))])


def distances(reference: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Euclidean distances (N,) from one descriptor (128,) to each of ``others`` (N, 128)."""
    return np.linalg.norm(others - reference[None], axis=1)
