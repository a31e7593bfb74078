"""Lossless-codec baselines for the likelihood row: what PNG and lossless WebP spend on the test faces.

A lossless codec is itself a likelihood model (its file size is a code length, −log2 p(x) up to a
few header bytes; Shannon), so its bits per dimension sit on the same scale as
``evaluation.likelihood``'s ``nll_bits_per_dim`` and the uniform model's 8.0. A generative model
whose bound is above a general-purpose codec has not learned the images' statistics better than
"neighbouring pixels are alike" (Theis et al. 2016, "A note on the evaluation of generative models",
sec. 3.2 and Table 1, compare models with such codecs in bits/dim).

Both codecs are Pillow's (``libpng`` / ``libwebp``), at their strongest lossless settings, on each
image separately: bits/dim = 8 · Σ file bytes / (N · H · W · 3). Headers are counted, as the model
bounds pay for everything they encode; on 64 px faces they are a few per cent of a file.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Pillow save options, strongest lossless setting of each codec.
CODECS: dict[str, dict[str, object]] = {
    "png": {"format": "PNG", "optimize": True, "compress_level": 9},
    "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 6},
}


def _encoded_bytes(image: np.ndarray, options: dict[str, object]) -> int:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, **options)
    return buffer.tell()


def codec_bits_per_dim(images: np.ndarray, codec: str) -> float:
    """Lossless code length of ``images`` in bits per dimension under ``codec`` (a key of ``CODECS``).

    ``images``: uint8 (N, H, W, 3), every image compressed on its own; returns
    8 · Σ bytes / (N · H · W · 3). Raises ``ValueError`` for another dtype or shape, or an empty batch.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise ValueError(f"codec_bits_per_dim needs uint8 (N, H, W, 3) images with N > 0, got {images.dtype} "
                         f"{images.shape}")
    total = sum(_encoded_bytes(np.ascontiguousarray(image), CODECS[codec]) for image in images)
    return 8.0 * total / images.size


def codec_baselines(images: np.ndarray) -> dict[str, float]:
    """``codec_<name>_bits_per_dim`` for every codec of ``CODECS``, on uint8 (N, H, W, 3) ``images``."""
    return {f"codec_{name}_bits_per_dim": codec_bits_per_dim(images, name) for name in CODECS}
