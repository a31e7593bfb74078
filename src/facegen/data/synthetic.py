"""Procedural faces written in CelebA's exact on-disk layout.

Why this exists: the pipeline must run end to end (CI, a laptop) without the 1.4 GB CelebA download,
yet go through the *same* reader and transform as real data. So the generator writes
``img_align_celeba/NNNNNN.jpg`` at CelebA's 178x218 plus ``list_attr_celeba.txt`` and
``list_eval_partition.txt`` in CelebA's text format. It also writes ``factors.csv``: continuous
ground-truth factors, sampled independently of each other and of the binary attributes, which real
CelebA lacks and which disentanglement metrics need.

Determinism: every image is a pure function of its parameters, and parameters come from one RNG
stream per fixed-size chunk of image indices (``SEED_CHUNK``), so a seed gives byte-identical files
whatever the worker count or ``num_images`` (image k is the same in a 100- and a 12000-image set).

Speed: a chunk is rendered at once, vectorised over the batch, at half resolution (the images end
at 64 px; half of 178 is still 89) and upscaled by PIL. Every shape is a soft-edged mask built from
separable per-row / per-column terms inside a fixed bounding box, so per-pixel work is a few
array operations per layer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from facegen.config import CELEBA_ATTRIBUTES, SyntheticConfig, to_dict
from facegen.data import task_map

WIDTH, HEIGHT = 178, 218  # CelebA img_align_celeba size
SCALE = 2  # render at 1/SCALE resolution, then upscale
SEED_CHUNK = 64  # images per RNG stream and per worker task
SOFT = 2.0  # edge softness in CelebA pixels (one render pixel): anti-aliasing
GENERATOR_VERSION = 1  # bump when rendering changes, so cached folders are regenerated

#: Continuous ground-truth factors, each uniform on [0, 1], written to factors.csv. In order: features
#: shifted left -> right (a turned head); head half-width 40 -> 52 px; skin light -> dark; hair ending
#: at the ears -> below the shoulders (a quarter of that range for men); hair dark -> light within its
#: colour class; background hue red -> purple; light from the left -> right; mouth frown -> smile
#: (added to the Smiling curve).
FACTORS: tuple[str, ...] = ("head_yaw", "face_width", "skin_tone", "hair_length", "hair_shade",
                            "background_hue", "light_direction", "mouth_curvature")
#: Binary attributes the renderer draws, with their probability of being 1.
ATTRIBUTE_PROBS: dict[str, float] = {"Smiling": 0.45, "Male": 0.45, "Eyeglasses": 0.35,
                                     "Wearing_Hat": 0.35, "Mouth_Slightly_Open": 0.45, "Bangs": 0.4}
#: Hair colour classes: (probability, darkest RGB, lightest RGB). Only blond and black are
#: CelebA attributes here; brown and grey exist so that "not blond and not black" is not one colour.
HAIR_CLASSES: dict[str, tuple[float, tuple[float, float, float], tuple[float, float, float]]] = {
    "blond": (0.35, (0.72, 0.55, 0.25), (0.97, 0.86, 0.52)),
    "black": (0.35, (0.04, 0.035, 0.035), (0.17, 0.14, 0.12)),
    "brown": (0.20, (0.28, 0.16, 0.08), (0.50, 0.31, 0.16)),
    "grey": (0.10, (0.55, 0.55, 0.56), (0.82, 0.82, 0.83)),
}
# Skin from light to dark, interpolated piecewise-linearly by the skin_tone factor.
_SKIN = np.array([(0.98, 0.84, 0.74), (0.86, 0.64, 0.50), (0.62, 0.42, 0.29), (0.36, 0.23, 0.15)],
                 np.float32)
_NAME = re.compile(r"^\d{6}\.jpg$")

Params = dict[str, np.ndarray]  # one (n,) array per parameter


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
def _sample_chunk(seed: int, chunk: int) -> Params:
    """Parameters of images [chunk*SEED_CHUNK, (chunk+1)*SEED_CHUNK): one RNG stream per chunk."""
    rng = np.random.default_rng([seed, chunk])
    n = SEED_CHUNK
    p: Params = {name: rng.random(n) for name in FACTORS}
    for name, prob in ATTRIBUTE_PROBS.items():
        p[name] = rng.random(n) < prob
    probs = np.array([c[0] for c in HAIR_CLASSES.values()])
    p["hair_class"] = rng.choice(len(HAIR_CLASSES), size=n, p=probs / probs.sum())
    # Nuisance variation (not ground truth): eye, hat and clothes colour, sunglasses, hair strands.
    p["eye_hue"] = rng.random(n)
    p["hat_hue"] = rng.random(n)
    p["clothes_hue"] = rng.random(n)
    p["sunglasses"] = rng.random(n) < 0.25
    p["strand_phase"] = rng.random(n) * 2 * np.pi
    return p


def sample_params(seed: int, num_images: int) -> Params:
    """Parameters of the first ``num_images`` images of the set generated with ``seed``."""
    chunks = [_sample_chunk(seed, c) for c in range(-(-num_images // SEED_CHUNK))]
    return {k: np.concatenate([c[k] for c in chunks])[:num_images] for k in chunks[0]}


def attribute_table(p: Params) -> dict[str, np.ndarray]:
    """The 40 CelebA attributes as bool arrays; those the renderer does not draw are all False."""
    n = len(p["Male"])
    hair = list(HAIR_CLASSES)
    drawn = {name: p[name] for name in ATTRIBUTE_PROBS}
    drawn["Blond_Hair"] = p["hair_class"] == hair.index("blond")
    drawn["Black_Hair"] = p["hair_class"] == hair.index("black")
    return {name: drawn.get(name, np.zeros(n, bool)) for name in CELEBA_ATTRIBUTES}


def partition(num_images: int, fractions: tuple[float, float, float]) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per image, interleaved by a golden-ratio sequence.

    Interleaving (rather than CelebA's contiguous blocks) means any prefix of the list keeps the
    split proportions to within a few images, so ``data.max_images`` subsets stay balanced.
    """
    u = np.modf(np.arange(1, num_images + 1) * 0.6180339887498949)[0]
    edges = np.cumsum(fractions)[:-1] / sum(fractions)
    return np.searchsorted(edges, u, side="right").astype(np.int8)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
def _col(a: np.ndarray) -> np.ndarray:
    """(n,) -> (n, 1, 1) float32, to broadcast a per-image scalar over (n, h, w)."""
    return np.asarray(a, np.float32).reshape(-1, 1, 1)


def _rgb(a: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """(n, 3) -> (n, 3, 1, 1) float32, to broadcast a per-image colour over planar (n, 3, h, w)."""
    return np.asarray(a, np.float32).reshape(-1, 3, 1, 1)


def _edge(signed_distance: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance in pixels (positive inside): a soft edge."""
    return np.clip(signed_distance * (1.0 / SOFT) + 0.5, 0.0, 1.0)


def _hsv(h: np.ndarray, s: float | np.ndarray, v: float | np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, (n,) -> (n, 3)."""
    h, s, v = (np.broadcast_to(np.asarray(a, np.float32), np.shape(h))[:, None] for a in (h, s, v))
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


@dataclass
class _Region:
    """A fixed bounding box of the canvas: slices plus pixel-centre coordinates in CelebA pixels."""

    rows: slice
    cols: slice
    x: np.ndarray  # (1, 1, w)
    y: np.ndarray  # (1, h, 1)


class _Canvas:
    """A batch of planar float RGB images at render resolution, painted layer by layer.

    Planar (n, 3, h, w) rather than (n, h, w, 3): a mask then broadcasts over whole rows, so
    numpy's inner loops run over contiguous pixels instead of 3-element colour triples (~2x faster).
    """

    def __init__(self, n: int) -> None:
        self.h, self.w = HEIGHT // SCALE, WIDTH // SCALE
        self.xs = ((np.arange(self.w) + 0.5) * WIDTH / self.w).astype(np.float32)
        self.ys = ((np.arange(self.h) + 0.5) * HEIGHT / self.h).astype(np.float32)
        self.img = np.empty((n, 3, self.h, self.w), np.float32)

    def region(self, x0: float, x1: float, y0: float, y1: float) -> _Region:
        """Canvas pixels whose centres lie in [x0, x1) x [y0, y1) (CelebA pixel coordinates)."""
        c0, c1 = np.searchsorted(self.xs, [x0, x1])
        r0, r1 = np.searchsorted(self.ys, [y0, y1])
        return _Region(slice(r0, r1), slice(c0, c1), self.xs[c0:c1].reshape(1, 1, -1),
                       self.ys[r0:r1].reshape(1, -1, 1))

    def paint(self, r: _Region, mask: np.ndarray, colour: np.ndarray) -> None:
        """Alpha-composite ``colour`` (broadcastable to (n, 3, h, w)) with coverage ``mask`` (n, h, w)."""
        sub = self.img[:, :, r.rows, r.cols]
        sub += mask[:, None] * (colour - sub)


def _ellipse(dx: np.ndarray, dy: np.ndarray, rx: np.ndarray | float, ry: np.ndarray | float) -> np.ndarray:
    """Soft ellipse coverage from offsets to its centre.

    ``(1 - q) * min(rx, ry) / 2`` approximates the signed distance near the boundary, which is
    all the anti-aliasing needs, and keeps the per-pixel work to one add of separable terms.
    """
    k = np.asarray(np.minimum(rx, ry), np.float32) * 0.5  # float32 even for scalar radii
    return _edge(k - (dx / rx) ** 2 * k - (dy / ry) ** 2 * k)


def _ring(dx: np.ndarray, dy: np.ndarray, rx: float, ry: float, thickness: float) -> np.ndarray:
    """Soft elliptical outline of the given thickness (glasses frames)."""
    q = (dx / rx) ** 2 + (dy / ry) ** 2
    return _edge(thickness * 0.5 - np.abs(q - 1.0) * (min(rx, ry) * 0.5))


def _nearest(x: np.ndarray, centre: np.ndarray, half_gap: float) -> np.ndarray:
    """Offset to the nearer of two mirrored centres ``centre -/+ half_gap``: draws pairs as one."""
    return np.abs(x - centre) - half_gap


def render(p: Params) -> np.ndarray:
    """Render faces for parameters ``p`` -> uint8 (n, HEIGHT // SCALE, WIDTH // SCALE, 3) (a view).

    Geometry follows CelebA's alignment (eyes at y~112, mouth at y~157 of 218) so that after the
    prepare transform (resize short side, centre crop) the face fills the crop as CelebA's do.
    """
    n = len(p["Male"])
    cv = _Canvas(n)
    male, smile, opened, glasses, hat, bangs = (
        _col(p[k]) for k in ("Male", "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Wearing_Hat", "Bangs"))
    yaw = _col(p["head_yaw"] * 2 - 1)
    rx = 40 + 12 * _col(p["face_width"])  # head half-width
    cx = 89 + 3 * yaw  # the head outline moves a little with yaw ...
    fx = 89 + 10 * yaw  # ... the features more: a turned head
    cy, ry = 118.0, 68.0

    tone = p["skin_tone"] * (len(_SKIN) - 1)
    i = np.minimum(tone.astype(int), len(_SKIN) - 2)
    skin = _rgb(_SKIN[i] + (tone - i)[:, None] * (_SKIN[i + 1] - _SKIN[i]))
    lo, hi = (np.array([c[j] for c in HAIR_CLASSES.values()], np.float32)[p["hair_class"]] for j in (1, 2))
    hair = _rgb(lo + p["hair_shade"][:, None] * (hi - lo))
    strands = (0.86 + 0.14 * np.sin(0.8 * cv.xs + _col(p["strand_phase"])))[:, None]  # (n, 1, 1, W)

    # Background: hue factor over [0, 0.8] (no wrap-around, so the factor is monotone), lit from above.
    bg = _rgb(_hsv(p["background_hue"] * 0.8, 0.45, 0.85))
    cv.img[:] = bg * (1.1 - 0.25 * cv.ys / HEIGHT).reshape(1, 1, -1, 1)

    # Hair behind the head: a cap plus a curtain whose length is the hair_length factor (men's hair
    # is short, so the factor moves it less for them).
    cut = cy - 5 + 100 * _col(p["hair_length"]) * (1 - 0.75 * male)
    r = cv.region(18, 160, 30, HEIGHT)
    curtain = _edge(rx + 11 - np.abs(r.x - cx)) * _edge(r.y - (cy - 10))
    back = np.maximum(_ellipse(r.x - cx, r.y - (cy - 6), rx + 11, ry + 10), curtain) * _edge(cut - r.y)
    cv.paint(r, back, hair * 0.8 * strands[..., r.cols])

    # Shoulders and neck.
    r = cv.region(0, WIDTH, 186, HEIGHT)
    cv.paint(r, _ellipse(r.x - cx, r.y - 250, 82.0, 58.0), _rgb(_hsv(p["clothes_hue"], 0.5, 0.55)))
    r = cv.region(40, 138, 150, 200)
    cv.paint(r, _edge(0.5 * rx - np.abs(r.x - cx)) * _edge(r.y - 150), skin * 0.78)

    # Ears, then the head: an ellipse above the eye line, below it a superellipse, squarer for men.
    r = cv.region(20, 158, 100, 140)
    cv.paint(r, _ellipse(_nearest(r.x, cx, rx - 1), r.y - 120, 7.0, 12.0), skin * 0.88)
    r = cv.region(30, 148, 48, 190)
    power = 2.0 + 1.4 * male
    u, v = np.abs(r.x - cx) / rx, np.abs(r.y - cy) / ry
    q = np.where(r.y < cy, u ** 2 + v ** 2, u ** power + v ** power)
    head = _edge((1.0 - q) * (ry * 0.5))
    cv.paint(r, head, skin * (1.0 - 0.22 * np.minimum(q, 1.0))[:, None])  # darker rim: roundness
    # Men: stubble darkens the lower face.
    beard = head * np.clip((r.y - 128.0) / 24.0, 0.0, 1.0) * (0.55 * male)
    cv.paint(r, beard, skin * _rgb((0.45, 0.42, 0.45)))

    # Hair over the forehead: a high hairline, or bangs down to just above the brows (wavy edge).
    r = cv.region(18, 160, 30, 118)
    du = ((r.x - cx) / rx) ** 2
    wave = 2.5 * np.sin(0.7 * r.x + _col(p["strand_phase"]))
    line = (74 + 34 * du) * (1 - bangs) + (95 + 13 * du + wave) * bangs
    cap = _ellipse(r.x - cx, r.y - (cy - 4), rx + 3, ry + 6) * _edge(line - r.y)
    cv.paint(r, cap, hair * strands[..., r.cols])

    # Brows (thicker for men), eyes: dark outline, white, iris, pupil; smiling narrows the eyes.
    r = cv.region(40, 140, 88, 124)
    dx, dy = _nearest(r.x, fx, 19.0), r.y - 112
    brow_y = 101 + 2.5 * (dx / 11) ** 2 - 1.5 * smile
    cv.paint(r, _edge(1.4 + 1.1 * male - np.abs(r.y - brow_y)) * _edge(11 - np.abs(dx)), hair * 0.55 + 0.02)
    eye_h = 4.4 - 1.2 * smile
    cv.paint(r, _ellipse(dx, dy, 9.8, eye_h + 1.1), np.float32(0.12))
    white = _ellipse(dx, dy, 8.5, eye_h)
    cv.paint(r, white, np.float32(0.95))
    di = _nearest(r.x, fx + 1.5 * yaw, 19.0)  # gaze follows the yaw
    cv.paint(r, _ellipse(di, dy, 3.6, 3.6) * white, _rgb(_hsv(p["eye_hue"] * 0.6, 0.6, 0.45)))
    cv.paint(r, _ellipse(di, dy, 1.6, 1.6) * white, np.float32(0.04))

    # Nose: a shadow under the tip and two nostrils; it sticks out, so it moves most with yaw.
    r = cv.region(55, 123, 126, 148)
    nx = 89 + 13 * yaw
    cv.paint(r, 0.6 * _ellipse(r.x - nx, r.y - 138, 8.0, 4.0), skin * 0.8)
    cv.paint(r, _ellipse(_nearest(r.x, nx, 4.5), r.y - 140, 2.6, 1.6), skin * 0.4)

    # Mouth: lips along a parabola; smiling lifts the corners (plus the continuous curvature factor),
    # widens the mouth and raises the cheeks; open shows a dark inside, with teeth when also smiling.
    r = cv.region(40, 138, 128, 152)
    cv.paint(r, 0.5 * smile * _ellipse(_nearest(r.x, fx, 24.0), r.y - 140, 9.0, 6.0), skin * 1.12)
    r = cv.region(48, 130, 136, 184)
    width = 16 + 5 * smile
    curve = 9 * smile + 6 * (_col(p["mouth_curvature"]) - 0.5)
    uu = (r.x - fx) / width
    env2 = np.clip(1 - uu ** 2, 0, 1)
    ends = _edge((1 - np.abs(uu)) * width)  # fades the lips out at the corners
    env = np.sqrt(env2)
    above = (157 - 0.5 * curve + curve * env2) - r.y  # signed distance above the lip line
    dist = np.abs(above)
    gap = 6.0 * opened * env
    cv.paint(r, _edge(gap + 3.5 * env - dist) * ends, skin * _rgb((0.85, 0.5, 0.5)))
    inside = _edge(gap - dist) * ends  # closed: a thin dark line between the lips
    cv.paint(r, inside, np.float32(0.12))
    cv.paint(r, inside * _edge(above) * (smile * opened), np.float32(0.93))

    # Glasses: tinted lenses (some are sunglasses), frames, bridge and temples to the head edge.
    r = cv.region(26, 152, 94, 130)
    dx, dy = _nearest(r.x, fx, 19.0), r.y - 112
    lens = _ellipse(dx, dy, 13.0, 10.5) * glasses
    dark = _col(p["sunglasses"])
    cv.paint(r, lens * (0.15 + 0.77 * dark), 0.08 + (1 - dark[:, None]) * 0.8)
    side = np.abs(r.x - fx)
    bar = _edge(1.3 - np.abs(r.y - 109.5)) * (_edge(7 - side) + _edge(side - 32) * _edge(rx - np.abs(r.x - cx)))
    cv.paint(r, np.maximum(_ring(dx, dy, 13.0, 10.5, 2.6), bar) * glasses, np.float32(0.1))

    # Hat: crown over the head and a brim across the forehead; bangs still show below it.
    r = cv.region(10, 168, 24, 82)
    crown = _ellipse(r.x - cx, r.y - 72, rx + 6, 44.0) * _edge(72 - r.y)
    brim = _ellipse(r.x - cx, r.y - 72, rx + 22, 6.0)
    colour = _rgb(_hsv(p["hat_hue"], 0.6, 0.55))
    cv.paint(r, np.maximum(crown, brim) * hat, colour)
    cv.paint(r, crown * _edge(2.5 - np.abs(r.y - 64)) * hat, colour * 0.55)  # hat band

    # Light from the side (light_direction factor): brighter on one side, darker on the other.
    side = np.clip((cv.xs - cx) / rx, -1.3, 1.3)
    cv.img *= (255 * (1 + 0.3 * _col(p["light_direction"] * 2 - 1) * side))[:, None]
    cv.img += 0.5
    return np.clip(cv.img, 0, 255, out=cv.img).astype(np.uint8).transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def _image_name(index: int) -> str:
    """CelebA file name of 0-based image ``index``: 000001.jpg, 000002.jpg, ..."""
    return f"{index + 1:06d}.jpg"


def _write_chunk(task: tuple[int, int, int, str, int]) -> int:
    """Render and save one seed chunk; a worker task, so it takes and returns plain values."""
    seed, chunk, count, img_dir, quality = task
    params = {k: v[:count] for k, v in _sample_chunk(seed, chunk).items()}
    for k, face in enumerate(render(params)):
        path = Path(img_dir) / _image_name(chunk * SEED_CHUNK + k)
        Image.fromarray(face).resize((WIDTH, HEIGHT), Image.BILINEAR).save(path, quality=quality)
    return count


def _attr_lines(p: Params) -> list[str]:
    """list_attr_celeba.txt: count, the 40 names, then ``000001.jpg -1  1 ...`` (values as %2d)."""
    table = attribute_table(p)
    values = np.where(np.stack([table[a] for a in CELEBA_ATTRIBUTES], axis=1), " 1", "-1")
    rows = [f"{_image_name(i)} {' '.join(row)}" for i, row in enumerate(values.tolist())]
    return [str(len(rows)), " ".join(CELEBA_ATTRIBUTES), *rows]


def _is_complete(root: Path, manifest: dict, num_images: int) -> bool:
    """True when ``root`` holds a finished folder generated with exactly these settings."""
    try:
        same = json.loads((root / "MANIFEST.json").read_text()) == manifest
        present = {p.name for p in (root / "img_align_celeba").iterdir()}
    except (OSError, ValueError):
        return False
    return same and all(_image_name(i) in present for i in range(num_images))


def generate_celeba_folder(root: Path, cfg: SyntheticConfig, seed: int, workers: int) -> Path:
    """Write ``cfg.num_images`` synthetic faces under ``root`` in CelebA's layout; return ``root``.

    A folder already generated with the same seed and config (``MANIFEST.json``, written last) is
    reused as is, so reruns are instant; anything else is regenerated in place.
    """
    root = Path(root)
    img_dir = root / "img_align_celeba"
    n = cfg.num_images
    manifest = {"generator": GENERATOR_VERSION, "seed": seed, "config": to_dict(cfg)}
    if _is_complete(root, manifest, n):
        return root
    (root / "MANIFEST.json").unlink(missing_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(seed, c, min(SEED_CHUNK, n - c * SEED_CHUNK), str(img_dir), cfg.jpeg_quality)
             for c in range(-(-n // SEED_CHUNK))]
    with task_map(workers) as run, tqdm(total=n, desc="synthetic faces", unit="img") as bar:
        for done in run(_write_chunk, tasks):
            bar.update(done)
    for stale in img_dir.iterdir():  # from an earlier, larger set
        if _NAME.match(stale.name) and int(stale.name[:6]) > n:
            stale.unlink()

    p = sample_params(seed, n)
    names = [_image_name(i) for i in range(n)]
    (root / "list_attr_celeba.txt").write_text("\n".join(_attr_lines(p)) + "\n")
    splits = partition(n, cfg.split_fractions)
    (root / "list_eval_partition.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, splits.tolist())))
    factors = pd.DataFrame({"image_id": names, **{f: p[f] for f in FACTORS}})
    factors.to_csv(root / "factors.csv", index=False, float_format="%.6f")
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return root
