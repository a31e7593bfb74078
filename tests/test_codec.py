"""Known answers for the lossless-codec baselines of the likelihood row (evaluation/codec.py)."""
from __future__ import annotations

import numpy as np
import pytest

from facegen.data.synthetic import render, sample_params
from facegen.evaluation.codec import CODECS, codec_baselines, codec_bits_per_dim
from tests.conftest import make_split


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_constant_image_costs_far_below_one_bit_per_dim(codec):
    images = np.full((2, 64, 64, 3), 137, np.uint8)
    assert 0 < codec_bits_per_dim(images, codec) < 0.2  # headers only: the pixels say nothing new


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_uniform_noise_is_incompressible(codec):
    """Independent uniform bytes carry 8 bits each: no lossless code does better (plus headers)."""
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert 7.95 < codec_bits_per_dim(images, codec) < 8.5


def test_a_face_costs_between_a_constant_image_and_noise_and_webp_beats_png():
    """Two faces of the embedded set, rendered (before its JPEG step) and cropped to 64 px."""
    faces = np.ascontiguousarray(render(sample_params(0, 2))[:, 20:84, 12:76])
    got = codec_baselines(faces)
    assert set(got) == {"codec_png_bits_per_dim", "codec_webp_bits_per_dim"}
    assert 1 < got["codec_webp_bits_per_dim"] < got["codec_png_bits_per_dim"] < 6


def test_every_image_is_coded_on_its_own():
    """The sum over images: two copies cost exactly twice one (no cross-image context)."""
    image = make_split(1, 32).images.numpy()
    assert codec_bits_per_dim(np.concatenate([image, image]), "png") == pytest.approx(codec_bits_per_dim(image, "png"))


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((0, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 1), np.uint8)])
def test_rejects_what_is_not_a_uint8_rgb_batch(bad):
    with pytest.raises(ValueError, match="uint8"):
        codec_bits_per_dim(bad, "png")
