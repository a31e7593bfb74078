"""Warp a face onto the training framing, and the model's output back into the photo.

A *template* is where the 5 landmarks sit in a training crop (unit coordinates: x / size,
y / size). :func:`similarity` fits rotation + uniform scale + translation from a face's landmarks to
the template (least squares, Umeyama 1991), so the crop is framed like the training faces without
shearing the face. All matrices are 3x3 homogeneous maps between continuous pixel coordinates
(pixel i spans [i, i+1)), the convention PIL's affine warp uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from facegen.faces.detect import LEFT_EYE, NOSE, RIGHT_EYE, Face

# The mask covers the face oval: centred between the eyes' midpoint and the nose base, in units of
# the eye distance d; CelebA-framed faces span ~1.1 d either side of centre and ~1.5 d from the
# brows to the chin. A slightly larger ellipse keeps the edited mouth, cheeks and brows, while
# hair and background (which the model reproduces blurrily) keep the photo's own pixels.
MASK_HALF_WIDTH = 1.25  # in eye distances
MASK_HALF_HEIGHT = 1.6
MASK_FEATHER = 0.2  # Gaussian blur sigma, in eye distances: no visible seam at the mask's edge


@dataclass(frozen=True)
class Template:
    """Where a training crop's 5 landmarks sit: (5, 2) unit coordinates, dlib's 5-point order.

    ``source`` says how it was obtained (measured on which faces, how many).
    """

    points: np.ndarray
    source: str

    def pixels(self, size: int) -> np.ndarray:
        """(5, 2) landmark positions in a ``size`` x ``size`` crop, continuous pixels."""
        return self.points * size

    def eye_distance(self, size: int) -> float:
        p = self.pixels(size)
        return float(np.linalg.norm(p[list(RIGHT_EYE)].mean(0) - p[list(LEFT_EYE)].mean(0)))

    def face_box(self, size: int) -> tuple[float, float, float, float]:
        """The box dlib's HOG detector would draw around the template face in a ``size`` crop.

        Measured on real detections (e.g. skimage's astronaut): the box is ~2.0 eye distances
        wide, centred 0.55 eye distances below the eyes' midpoint. Used to find landmarks on
        crops the detector is not run on (``--aligned`` inputs, model outputs).
        """
        p = self.pixels(size)
        eyes = (p[list(RIGHT_EYE)].mean(0) + p[list(LEFT_EYE)].mean(0)) / 2
        d = self.eye_distance(size)
        cx, cy = eyes[0], eyes[1] + 0.55 * d
        return (cx - d, cy - d, cx + d, cy + d)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 least-squares similarity (rotation, uniform scale, translation) mapping ``src`` -> ``dst``.

    ``src``, ``dst``: (K, 2) corresponding points, K >= 2. Umeyama's closed form; no reflection.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sv) @ sign) / s.var(0).sum())
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def _warp(image: Image.Image, out_to_in: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``image`` sampled at ``out_to_in`` @ (output pixel): PIL's affine takes the inverse map."""
    return image.transform(size, Image.AFFINE, tuple(out_to_in[:2].ravel()), resample=Image.BICUBIC)


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to the training framing: ``crop`` uint8 (size, size, 3) and ``matrix``, the
    3x3 map from photo pixels to crop pixels (its inverse pastes the crop back)."""

    crop: np.ndarray
    matrix: np.ndarray

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel: above 1 the crop is upsampled (the face is small in the photo)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))


def align(photo: Image.Image, face: Face, template: Template, size: int) -> AlignedFace:
    """Warp ``face`` of ``photo`` (RGB) onto ``template`` in a ``size`` x ``size`` crop.

    Large faces are first shrunk with Pillow's antialiased resize to twice the crop's scale, so
    the bicubic warp never samples a much larger face sparsely (which would alias).
    """
    m = similarity(face.landmarks, template.pixels(size))
    inv = np.linalg.inv(m)
    corners = inv @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], float)
    left, top = np.floor(corners[:2].min(1)).astype(int) - 2
    right, bottom = np.ceil(corners[:2].max(1)).astype(int) + 2
    region = photo.crop((left, top, right, bottom))  # outside the photo: black, as in a border
    to_region = _translate(-left, -top)
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    if scale < 0.5:  # shrink first: the warp then scales by about 2x at most
        pre = 2 * scale
        w, h = region.size
        region = region.resize((max(1, round(w * pre)), max(1, round(h * pre))), Image.BICUBIC)
        to_region = np.diag([region.size[0] / w, region.size[1] / h, 1.0]) @ to_region
    crop = _warp(region, to_region @ inv, (size, size))
    return AlignedFace(np.asarray(crop), m)


def face_mask(template: Template, size: int) -> np.ndarray:
    """float32 (size, size) in [0, 1]: a feathered ellipse over the template face (see MASK_*)."""
    p = template.pixels(size)
    eyes = (p[list(RIGHT_EYE)].mean(0) + p[list(LEFT_EYE)].mean(0)) / 2
    d = template.eye_distance(size)
    cx, cy = eyes[0], (eyes[1] + p[NOSE][1]) / 2 + 0.25 * d
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    inside = ((xx - cx) / (MASK_HALF_WIDTH * d)) ** 2 + ((yy - cy) / (MASK_HALF_HEIGHT * d)) ** 2 <= 1
    mask = Image.fromarray((inside * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(MASK_FEATHER * d))
    return np.asarray(mask, np.float32) / 255


def window_map(left: int, top: int, scale: float = 1.0) -> np.ndarray:
    """3x3 map from the pixels of a window of a photo (its (left, top) corner, resized by ``scale``)
    to the photo's pixels: what :func:`paste_back` needs to paste into that window."""
    return _translate(left, top) @ np.diag([1 / scale, 1 / scale, 1.0])


def paste_back(photo: Image.Image, crops: list[np.ndarray], matrices: list[np.ndarray], mask: np.ndarray,
               window: np.ndarray | None = None) -> Image.Image:
    """``photo`` with each crop warped back by its matrix's inverse and blended under ``mask``.

    ``crops``: uint8 (S, S, 3) model outputs in the training framing; ``matrices``: photo -> crop
    maps from :func:`align`; ``mask``: float (S, S) from :func:`face_mask`. ``window``: when
    ``photo`` is a (resized) window of the photo the matrices refer to, the map from its pixels to
    that photo's (:func:`window_map`). Only each face's bounding region is warped, so the cost
    follows the face, not the photo. Returns a new image at ``photo``'s size.
    """
    out = photo.copy()
    size = mask.shape[0]
    alpha = Image.fromarray(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    for crop, m in zip(crops, matrices):
        if window is not None:
            m = m @ window  # window pixels -> crop pixels
        inv = np.linalg.inv(m)
        corners = inv @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], float)
        left, top = np.maximum(np.floor(corners[:2].min(1)).astype(int), 0)
        right, bottom = np.minimum(np.ceil(corners[:2].max(1)).astype(int), out.size)
        if right <= left or bottom <= top:
            continue
        to_crop = m @ _translate(left, top)  # region pixels -> crop pixels
        region = (right - left, bottom - top)
        face = _warp(Image.fromarray(crop), to_crop, region)
        weight = _warp(alpha, to_crop, region)
        out.paste(face, (left, top), weight)
    return out
