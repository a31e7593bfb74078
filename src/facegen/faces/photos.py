"""From photo files to aligned model inputs and back: what the CLI (and evaluation) call.

:func:`find_faces` detects and aligns every face of a photo (or the ``--face`` one);
:func:`paste_outputs` puts model outputs back into the photo; :func:`identity_distances` measures
the descriptor distance from each input face to each of its outputs. Already-cropped inputs
(``--aligned``) skip detection and paste-back: :func:`aligned_identity_distances` compares crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from facegen.data.images import read_image
from facegen.errors import FacegenError
from facegen.faces import identity
from facegen.faces.align import AlignedFace, Template, align, paste_back, window_map
from facegen.faces.detect import Face, detect_faces

WINDOW_MARGIN = 1.0  # identity window: the face box grown by this many box sizes on each side
IDENTITY_EYE_PX = 80.0  # identity windows are shrunk to at most this eye distance (chips are 150 px)
ALIGNED_UPSCALE = 256  # --aligned crops are upsampled to this for dlib's landmark model


class NoFaceError(FacegenError):
    """The detector found no face in a photo (or not the one ``--face`` asks for)."""


@dataclass(frozen=True)
class PhotoFace:
    """One face of one photo: where it is (``face``) and its aligned crop (``aligned``)."""

    file: Path
    index: int  # 1-based, left to right
    of: int  # faces found in the photo
    face: Face
    aligned: AlignedFace

    def describe(self) -> str:
        l, t, r, b = self.face.box_ints()
        return f"{self.file.name} face {self.index}/{self.of} at ({l},{t})-({r},{b})"


@dataclass
class Photo:
    """A decoded photo (upright RGB) and the faces that will be edited."""

    file: Path
    image: Image.Image
    faces: list[PhotoFace]


def find_faces(file: Path, template: Template, size: int, face: int | None = None,
               image: Image.Image | None = None) -> Photo:
    """Decode ``file`` (unless ``image``, its decoded RGB, is given), detect its faces and align them
    to ``template`` at ``size`` px.

    ``face``: 1-based index (left to right) of the only face to keep; None keeps all. Raises
    :class:`NoFaceError` (one line: the file, what was tried, what to do) when there is none.
    """
    image = read_image(file) if image is None else image
    array = np.asarray(image)
    faces, tried = detect_faces(array)
    if not faces:
        raise NoFaceError(f"no face found in {file} ({image.size[0]}x{image.size[1]}): tried the {tried}; "
                          "use an upright, frontal photo, or pass --aligned if it is already a face crop "
                          "framed like the training faces")
    if face is not None and face > len(faces):
        boxes = ", ".join(f"{i + 1}: {tuple(f.box_ints())}" for i, f in enumerate(faces))
        raise NoFaceError(f"--face {face}, but {file} has {len(faces)} face(s) (left to right, boxes "
                          f"l,t,r,b: {boxes}); pick one of 1..{len(faces)}")
    chosen = range(len(faces)) if face is None else [face - 1]
    return Photo(file, image, [PhotoFace(file, i + 1, len(faces), faces[i], align(image, faces[i], template, size))
                               for i in chosen])


def small_face_warning(pf: PhotoFace, size: int) -> str | None:
    """A one-line warning when the face has fewer pixels than the model's input (it is upsampled)."""
    if pf.aligned.scale <= 1.0:
        return None
    return (f"{pf.describe()} is small: its eyes are {pf.face.eye_distance:.0f} px apart, the {size} px model "
            f"input needs {pf.face.eye_distance * pf.aligned.scale:.0f}; it is upsampled "
            f"{pf.aligned.scale:.1f}x, so the result is blurrier than the photo (use a larger photo of the face)")


def paste_outputs(photo: Photo, outputs: Sequence[np.ndarray], mask: np.ndarray) -> Image.Image:
    """``photo`` at its own size with ``outputs[i]`` (uint8 (S, S, 3)) pasted back as face ``i``."""
    return paste_back(photo.image, list(outputs), [pf.aligned.matrix for pf in photo.faces], mask)


def _window(photo: Image.Image, pf: PhotoFace) -> tuple[np.ndarray, Image.Image, tuple[float, ...]]:
    """The face's neighbourhood, at most :data:`IDENTITY_EYE_PX` between the eyes: (window -> photo
    map, window image, face box in window pixels). dlib's descriptor sees a 150 px chip, so a
    larger face only costs time (a 12 MP photo: 2.6 s -> 0.3 s for the identity step)."""
    l, t, r, b = pf.face.box
    m = WINDOW_MARGIN * max(r - l, b - t)
    w, h = photo.size
    box = (max(0, int(l - m)), max(0, int(t - m)), min(w, int(r + m) + 1), min(h, int(b + m) + 1))
    window = photo.crop(box)
    scale = min(1.0, IDENTITY_EYE_PX / max(pf.face.eye_distance, 1e-6))
    if scale < 1.0:
        window = window.resize((max(1, round(window.size[0] * scale)), max(1, round(window.size[1] * scale))),
                               Image.BICUBIC)
        scale = window.size[0] / (box[2] - box[0])
    face_box = tuple((v - o) * scale for v, o in zip(pf.face.box, (box[0], box[1], box[0], box[1])))
    return window_map(box[0], box[1], scale), window, face_box


def _distances_per_input(chips: list[np.ndarray], counts: list[int]) -> list[list[float]]:
    """``chips`` = each input's chip followed by its ``counts[i]`` output chips -> ``[i][k]`` distances."""
    desc = identity.descriptors(chips)
    result, at = [], 0
    for n in counts:
        result.append(identity.distances(desc[at], desc[at + 1:at + 1 + n]).tolist())
        at += 1 + n
    return result


def identity_distances(photo: Photo, outputs: Sequence[Sequence[np.ndarray]], mask: np.ndarray) -> list[list[float]]:
    """Descriptor distance from each input face to the same face after pasting back each output.

    ``outputs[i][k]``: face ``i``'s k-th output (uint8 (S, S, 3)). Each output is pasted into a
    window around its face (not the whole photo: the cost follows the face) and dlib's landmarks
    are re-predicted in the face's box, so the output is judged as it appears in the result.
    Returns ``[i][k]`` distances (same person below ``identity.SAME_PERSON_THRESHOLD``).
    """
    chips, counts = [], []
    for pf, outs in zip(photo.faces, outputs):
        to_photo, window, box = _window(photo.image, pf)
        chips.append(identity.face_chip(np.asarray(window), box))
        for out in outs:
            pasted = paste_back(window, [out], [pf.aligned.matrix], mask, window=to_photo)
            chips.append(identity.face_chip(np.asarray(pasted), box))
        counts.append(len(outs))
    return _distances_per_input(chips, counts)


def aligned_identity_distances(inputs: Sequence[np.ndarray], outputs: Sequence[Sequence[np.ndarray]],
                               template: Template) -> list[list[float]]:
    """:func:`identity_distances` for inputs that are already crops (``--aligned``): crop vs crop.

    Crops are upsampled to :data:`ALIGNED_UPSCALE` px and landmarks found in the template's face
    box (the detector is not run: it may not find faces in small or synthetic crops).
    """
    chips, counts = [], []
    box = template.face_box(ALIGNED_UPSCALE)
    for crop, outs in zip(inputs, outputs):
        for img in (crop, *outs):
            big = np.asarray(Image.fromarray(img).resize((ALIGNED_UPSCALE, ALIGNED_UPSCALE), Image.BICUBIC))
            chips.append(identity.face_chip(big, box))
        counts.append(len(outs))
    return _distances_per_input(chips, counts)
