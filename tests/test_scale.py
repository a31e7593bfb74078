"""Where users run it (full CelebA on GPUs), proven on the CPU as far as a CPU can:

* a training step of every trainable, and a batch of the prior's sampler, run no operator that makes
  the host wait for a GPU (``tests/host_sync.py``), and the recorder does see such operators;
* prepared splits are memory-mapped, not read; attribute directions are streamed sums that equal
  the all-at-once means;
* the decisions taken from the hardware (bf16 on CUDA only from compute capability 8.0, whether a
  split is copied to the GPU) and the refusal of CUDA graphs without CUDA;
* the prepared GPU check (``benchmarks/gpu_check.py``) refuses without CUDA and runs every stage's
  logic at toy sizes on the CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facegen.config import (ClassifierConfig, DCGANConfig, PriorConfig, RuntimeConfig, TrainConfig, VAEConfig,
                            VQVAEConfig)
from facegen.data.codes import CodeSplit
from facegen.data.dataset import fits_on_device, load_split
from facegen.errors import ConfigError
from facegen.latent.attributes import attribute_directions, encode_split
from facegen.models import build
from facegen.models.classifier import AttributeClassifier
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import auto_precision, setup_runtime
from benchmarks import gpu_check
from tests.conftest import ATTRS, make_split
from tests.host_sync import HostSyncRecorder

REPO = Path(__file__).resolve().parents[1]

TRAIN = TrainConfig(batch_size=8, lr=1e-3)
SIZE = 16


def _trainable(name: str) -> torch.nn.Module:
    if name == "classifier":
        return AttributeClassifier(ATTRS, ClassifierConfig(width=4, train=TRAIN), SIZE)
    if name.startswith("prior"):
        return PixelCNNPrior(PriorConfig(arch=name.split("-")[1], hidden=8, layers=2, train=TRAIN), 16, (4, 4), ATTRS,
                             *PixelCNNPrior.attribute_table(make_split(16).attrs))
    cfg = {"vae": VAEConfig(latent_dim=4, widths=(8, 16), train=TRAIN),
           "vqvae": VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, num_embeddings=16,
                                embedding_dim=4, train=TRAIN),
           "vqvae-codebook-loss": VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_embeddings=16, embedding_dim=4,
                                              ema=False, train=TRAIN),
           "dcgan": DCGANConfig(nz=8, ngf=8, ndf=8, loss="bce", train=TRAIN)}[name]
    return build(name.split("-")[0], cfg, SIZE)


@pytest.mark.parametrize("name", ["vae", "vqvae", "vqvae-codebook-loss", "dcgan", "classifier", "prior-gated",
                                  "prior-masked"])
def test_a_training_step_never_waits_for_the_host(name, rt):
    model = rt.prepare(_trainable(name))
    opts = rt.optimizers(model)
    faces = make_split(16)
    split = CodeSplit(torch.randint(0, 16, (16, 4, 4), dtype=torch.int16), faces.attrs, ATTRS) \
        if name.startswith("prior") else faces
    for _ in range(2):  # the first VQ step restarts every code, later ones only the dead
        with HostSyncRecorder() as rec:
            batch = split.batch(torch.randperm(16)[:8], rt.device, rt.channels_last)
            with rt.autocast():
                model.train_step(batch, opts)
        assert len(rec.ops) > 50  # it did record the step: forward, backward and the optimiser
        assert rec.syncs == [], rec.syncs


@pytest.mark.parametrize("arch", ["gated", "masked"])
def test_a_prior_sampling_batch_never_waits_for_the_host(arch):
    prior = _trainable(f"prior-{arch}").eval()
    with HostSyncRecorder() as rec:
        codes = prior.sample_codes(4, torch.Generator().manual_seed(0))
    assert codes.shape == (4, 4, 4) and len(rec.ops) > 100
    assert rec.syncs == [], rec.syncs


def test_the_recorder_sees_what_makes_the_host_wait():
    x = torch.tensor([0.0, 2.0, 3.0])
    with HostSyncRecorder() as rec:
        float(x.sum())
        x.nonzero()
        x[x > 1]
        torch.bincount(x.long())
        x.cpu()
        x.tolist()
        x.to("cpu")
        x.to(torch.device("cpu"))
    assert rec.syncs == ["aten::_local_scalar_dense", "aten::nonzero", "aten::index", "aten::bincount",
                         "Tensor.cpu", "Tensor.tolist", "Tensor.to(device) without non_blocking",
                         "Tensor.to(device) without non_blocking"]
    with HostSyncRecorder() as rec:
        x.to(torch.float64)
        x.to("cpu", non_blocking=True)
        x[torch.tensor([0, 2])] = 1.0
    assert rec.syncs == [] and "aten::index_put_" in rec.ops


def _mapped(ptr: int) -> str | None:
    """The file mapped at address ``ptr`` in this process (from /proc/self/maps), or None."""
    for line in open("/proc/self/maps"):
        fields = line.split()
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= ptr < hi:
            return fields[5] if len(fields) > 5 else None
    return None


def test_load_split_maps_the_file_instead_of_reading_it(tmp_path):
    faces = make_split(40)
    np.save(tmp_path / "train.npy", faces.images.numpy())
    table = pd.DataFrame(faces.attrs.numpy().astype(int), columns=list(ATTRS))
    table.insert(0, "split", "train")
    table.insert(0, "image_id", [f"{i:06d}.jpg" for i in range(40)])
    table.to_csv(tmp_path / "attrs.csv", index=False)
    split = load_split(tmp_path, "train", ATTRS)
    assert _mapped(split.images.data_ptr()) == str(tmp_path / "train.npy")
    assert torch.equal(split.images, faces.images) and torch.equal(split.attrs, faces.attrs)
    batch = split.batch(torch.tensor([3, 1]), torch.device("cpu"))
    assert torch.equal(batch.images, faces.images[[3, 1]].permute(0, 3, 1, 2).float() / 255)
    split.images[0, 0, 0, 0] += 1  # copy-on-write: the array on disk never changes
    assert np.array_equal(np.load(tmp_path / "train.npy"), faces.images.numpy())


def test_streamed_attribute_directions_equal_the_means_of_all_encodings(rt):
    torch.manual_seed(0)
    model = rt.prepare(_trainable("vqvae")).eval()
    train = make_split(37)  # 37 faces in batches of 8: a short last batch
    train.attrs[:, 1] = 1.0  # Male on every face: no negatives, so no vector
    got = attribute_directions(model, ATTRS, train, 8, rt)
    codes = encode_split(model, train, 8, rt).double()
    pos = train.attrs[:, 0] > 0.5
    expected = (codes[pos].mean(0) - codes[~pos].mean(0)).float()
    assert list(got) == ["Smiling"] and got["Smiling"].shape == (4 * 4 * 4,)
    torch.testing.assert_close(got["Smiling"], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("capability, expected", [
    ((7, 0), None), ((7, 5), None),                        # V100, T4: bf16 only emulated
    ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16)])  # A100, L4, H100
def test_auto_precision_on_cuda_is_bf16_from_compute_capability_8(capability, expected):
    assert auto_precision("cuda", capability, {"amx_bf16"}) is expected  # CPU flags do not matter there


def test_a_split_goes_to_the_gpu_when_it_takes_at_most_half_its_free_memory():
    celeba_128 = 162_770 * 128 * 128 * 3
    assert fits_on_device(celeba_128, 23 * 2**30)       # a 24 GB card
    assert not fits_on_device(celeba_128, 14 * 2**30)   # a 16 GB card: batches are copied as needed
    assert fits_on_device(162_770 * 64 * 64 * 3, 14 * 2**30)


def test_cuda_graphs_are_refused_without_cuda():
    with pytest.raises(ConfigError, match="compile_mode reduce-overhead replays CUDA graphs and needs a CUDA device"):
        setup_runtime(RuntimeConfig(device="cpu", precision="fp32", compile=True, compile_mode="reduce-overhead"))
    assert setup_runtime(RuntimeConfig(device="cpu", precision="fp32", compile_mode="reduce-overhead")).device.type == "cpu"


def test_gpu_check_refuses_in_one_line_without_cuda():
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no CUDA device is visible")


def test_gpu_check_runs_every_stage_at_toy_sizes_on_the_cpu(tmp_path):
    result = gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == result
    stages = [(s["stage"], s.get("family"), s.get("image_size")) for s in result["stages"]]
    assert stages == [("train", f, size) for size in gpu_check.TINY_SIZES for f in gpu_check.FAMILIES] + [
        ("prior_sampling", None, 16), ("prior_sampling", None, 32), ("inception", None, 16), ("ddp", None, None)]
    for s in result["stages"][:-1]:
        assert s["img_per_s"] > 0 and s["seconds"] > 0 and s["peak_gpu_mb"] is None
    assert result["stages"][-1] == {"stage": "ddp", "skipped": "needs 2 CUDA devices, found 0"}
    assert result["machine"]["device"] == "cpu" and result["tiny"] and result["steps"] == 2


def test_deterministic_changes_nothing_on_the_cpu_path():
    """CPU kernels are deterministic as they are: torch's global deterministic mode (which would add
    checks to every op) is turned on for CUDA only; cuDNN never autotunes when deterministic."""
    setup_runtime(RuntimeConfig(device="cpu", precision="fp32", deterministic=True))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
