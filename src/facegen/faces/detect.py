"""Face detection and 5-point landmarks in a photo.

Detection runs on a copy whose long side is at most :data:`DETECT_MAX_SIDE` (HOG cost grows with
the pixel count and a 12 MP phone photo needs none of them to find a face), first at the detector's
native scale (faces from ~80 px), then, only if nothing was found, upsampled once (faces from
~40 px; 4x the work). Landmarks are then predicted on the full-resolution photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from facegen.faces.dlib_models import face_detector, rectangle, shape_predictor

DETECT_MAX_SIDE = 1024  # px: long side of the copy the detector sees
MIN_FACE_PX = 40  # smallest face (box side, in the detection copy) HOG finds when upsampled once
# Detections with a smaller SVM margin are dropped. dlib's own default (0) lets through weak
# candidates: on skimage's astronaut her mission patch scores 0.06, while real faces score > 1.
MIN_SCORE = 0.2
# dlib's 5-point order: image-right eye (outer, inner corner), image-left eye (outer, inner), nose base.
RIGHT_EYE, LEFT_EYE, NOSE = (0, 1), (2, 3), 4


@dataclass(frozen=True)
class Face:
    """One detected face. Coordinates are photo pixels, continuous (pixel i spans [i, i+1)).

    ``box``: (left, top, right, bottom) of the detector's square; ``score``: the HOG SVM margin
    (higher is surer); ``landmarks``: (5, 2) x, y in dlib's 5-point order (see ``RIGHT_EYE`` ...).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def eye_distance(self) -> float:
        """Distance between the two eye centres, in photo pixels: the face's scale."""
        right = self.landmarks[list(RIGHT_EYE)].mean(0)
        left = self.landmarks[list(LEFT_EYE)].mean(0)
        return float(np.linalg.norm(right - left))

    def box_ints(self) -> list[int]:
        return [int(round(v)) for v in self.box]


def landmarks(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(5, 2) continuous landmark coordinates of the face in ``box`` of ``image`` (uint8 H x W x 3)."""
    shape = shape_predictor()(image, rectangle(box))
    # dlib returns integer pixel indices; +0.5 puts them at pixel centres, the convention the
    # affine warps (PIL) use, so a landmark maps to the same spot at every scale.
    return np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], np.float64)


def detect_faces(image: np.ndarray) -> tuple[list[Face], str]:
    """All frontal faces in ``image`` (uint8 H x W x 3), left to right, and a line saying what was tried.

    The second value describes the attempts (sizes, upsampling), for the message when none is found.
    """
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = image if scale == 1.0 else np.asarray(
        Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    sh, sw = small.shape[:2]
    tried = []
    found: list = []
    weak = 0
    for upsample in (0, 1):
        rects, scores, _ = face_detector().run(small, upsample, 0.0)
        tried.append(f"{sw}x{sh}" + (f" upsampled {2 ** upsample}x" if upsample else ""))
        found = [(r, s) for r, s in zip(rects, scores) if s >= MIN_SCORE]
        weak = len(rects) - len(found)
        if found:
            break
    what = (f"dlib HOG frontal-face detector at {', then '.join(tried)} "
            f"(finds frontal faces of at least ~{MIN_FACE_PX / scale:.0f} px; score >= {MIN_SCORE}"
            + (f", {weak} weaker candidate(s) dropped" if weak else "") + ")")
    faces = []
    for rect, score in found:
        box = tuple(v / scale for v in (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1))
        faces.append(Face(box, float(score), landmarks(image, box)))
    return sorted(faces, key=lambda f: f.box[0]), what
