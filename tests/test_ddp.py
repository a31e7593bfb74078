"""Data-parallel training on CPU (gloo): torchrun end to end, and every family kept in sync.

* ``torchrun --nproc_per_node=2 stages/train.py`` on a tiny config follows the single-process
  run with the same global batch. Not bit-for-bit: ranks draw their own noise (the VAE's ε).
* Two spawned ranks train each family through ``fit``; they must end with identical weights and
  buffers (the GAN's two optimisers, the VQ-VAE's EMA codebook and dead-code restarts included),
  and the DCGAN with R1, DiffAugment and TTUR on.
* Two ranks equal one process on the global batch, tensor by tensor, where a step draws no noise:
  BatchNorm statistics and weights (the attribute classifier), the EMA codebook and its restarts
  (the VQ-VAE). Before synchronised BatchNorm and the all-reduced codebook update this failed:
  the classifier's weights differed by up to 1.2e-2 and its running variances by 2e-3, the
  VQ-VAE's codebook by 3.2e-2 and its EMA counts by 3.8 (per-rank counts averaged, not summed).
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from facegen import distributed
from facegen.config import ClassifierConfig, DCGANConfig, RuntimeConfig, TrainConfig, VAEConfig, VQVAEConfig
from facegen.distributed import Distributed
from facegen.errors import ConfigError
from facegen.models import build
from facegen.runtime import seed_everything, setup_runtime
from facegen.models.checkpoint import safe_load
from facegen.models.classifier import AttributeClassifier
from facegen.training.loop import fit
from tests.conftest import ATTRS, make_split
from tests.host_sync import HostSyncRecorder
from tests.stage_repo import make_repo, run_stage, stage_cmd, stage_env

TRAIN = TrainConfig(epochs=2, batch_size=32, lr=3e-3)  # 16 per rank: the least data parallelism accepts
CONFIGS = {
    "vae": VAEConfig(latent_dim=4, widths=(8, 16), train=TRAIN),
    "vqvae": VQVAEConfig(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, num_embeddings=16,
                         embedding_dim=4, train=TRAIN),
    "dcgan": DCGANConfig(nz=8, ngf=8, ndf=8, ema_decay=0.9, train=TRAIN),
}
# The small-data GAN methods off by default: R1 takes a second-order gradient through D (which
# DistributedDataParallel's wrapper would not average; our optimiser pre-hook does), DiffAugment draws
# per-rank augmentations, TTUR gives D its own learning rate.
DCGAN_METHODS = dataclasses.replace(CONFIGS["dcgan"], diffaugment="color,translation,cutout", r1_gamma=1.0,
                                    d_lr_ratio=2.0)
SYNC_RUNS = {**{family: (family, cfg) for family, cfg in CONFIGS.items()}, "dcgan_methods": ("dcgan", DCGAN_METHODS)}


@pytest.mark.slow  # torchrun + a single-process run: ~40 s on the 2-core machine
def test_torchrun_matches_single_process(tmp_path):
    batch = {"models": {"vae": {"train": {"batch_size": 32}}}}  # 16 per rank
    single, ddp = make_repo(tmp_path / "single", batch), make_repo(tmp_path / "ddp", batch)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              *stage_cmd("train", "--family", "vae")[1:]]
    proc = subprocess.Popen(launch, cwd=ddp, env=stage_env(ddp), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ref = run_stage(single, "train", "--family", "vae")
    out, _ = proc.communicate(timeout=300)
    assert ref.returncode == 0, ref.stderr
    assert proc.returncode == 0, out

    a = pd.read_csv(single / "metrics" / "vae_train.csv")
    b = pd.read_csv(ddp / "metrics" / "vae_train.csv")
    assert list(b["epoch"]) == [1, 2, 3]
    for column in ("train/loss", "train/recon", "val/loss", "val/recon"):
        assert b[column].tolist() == pytest.approx(a[column].tolist(), rel=0.05), column
    assert b["train/loss"].iloc[-1] < b["train/loss"].iloc[0]
    # Rank 0 alone wrote the model and finished the state file; one MLflow run, not two.
    assert safe_load(ddp / "models" / "vae" / "model.pt")["family"] == "vae"
    assert not list((ddp / ".facegen_state").glob("*.pt"))
    assert out.count("Creating initial MLflow database tables") <= 1


def _train_rank(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        rt = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1))
        for name, (family, cfg) in SYNC_RUNS.items():
            generator = seed_everything(11)
            model = rt.prepare(build(family, cfg, 16))
            fit(model, make_split(64), None, cfg.train, rt, generator, dist=Distributed(rank, world_size))
            torch.save(model.state_dict(), f"{out_dir}/{name}-{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # two spawned ranks x three families and the DCGAN's methods: ~10 s
def test_every_family_stays_in_sync_across_ranks(tmp_path):
    mp.spawn(_train_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    for run in SYNC_RUNS:
        r0 = torch.load(tmp_path / f"{run}-0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{run}-1.pt", weights_only=True)
        for name in r0:
            assert torch.equal(r0[name], r1[name]), f"{run}: {name}"


def test_global_batch_must_split_evenly_and_leave_each_rank_16_images():
    with pytest.raises(ConfigError, match="models.vae.train.batch_size 64 must be divisible"):
        Distributed(rank=0, world_size=3).local_batch(64, "models.vae.train.batch_size")
    assert Distributed(rank=1, world_size=4).local_batch(64) == 16
    with pytest.raises(ConfigError) as err:
        Distributed(rank=0, world_size=8).local_batch(64, "models.dcgan.train.batch_size")
    assert str(err.value) == ("params.yaml: models.dcgan.train.batch_size 64 over 8 processes leaves 8 images per "
                              "process, below 16: start fewer processes (torchrun --nproc_per_node) or raise the "
                              "batch size (docs/distributed.md)")
    assert Distributed().local_batch(8) == 8  # one process: any batch


def test_ranks_take_contiguous_slices_of_each_global_batch():
    split = make_split(22)
    order = torch.randperm(22, generator=torch.Generator().manual_seed(0))[:22]
    seen = [[b.attrs for b in split.batches(4, torch.device("cpu"), shuffle=True, rank=r, world_size=2,
                                            generator=torch.Generator().manual_seed(0))] for r in range(2)]
    single = list(split.batches(8, torch.device("cpu"), shuffle=True, generator=torch.Generator().manual_seed(0)))
    for k, batch in enumerate(single[:2]):  # full global batches: rank 0's 4 images, then rank 1's
        assert torch.equal(torch.cat([seen[0][k], seen[1][k]]), batch.attrs)
    # the short last global batch (22 - 16 = 6 images) splits 3 + 3
    assert [len(seen[r][-1]) for r in range(2)] == [3, 3]
    assert torch.equal(torch.cat([seen[0][-1], seen[1][-1]]), split.attrs[order[16:]])


# -- W ranks == one process on the global batch ------------------------------------------------------
EXACT = TrainConfig(epochs=1, batch_size=32, lr=3e-3, max_steps_per_epoch=2)
EXACT_CONFIGS = {
    # BatchNorm statistics and weights (no noise in its step, so one process is the exact reference)
    "classifier": ClassifierConfig(width=4, train=EXACT),
    # the EMA codebook and dead-code restarts (every code is dead at the first step: all restart)
    "vqvae": VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, num_embeddings=16,
                         embedding_dim=4, train=EXACT),
}


def _exact_model(name: str) -> torch.nn.Module:
    cfg = EXACT_CONFIGS[name]
    return AttributeClassifier(ATTRS, cfg, 16) if name == "classifier" else build(name, cfg, 16)


def _fit_exact(rank: int, world_size: int, out_dir: str) -> None:
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1))
    for name, cfg in EXACT_CONFIGS.items():
        generator = seed_everything(5)
        model = rt.prepare(_exact_model(name))
        fit(model, make_split(64), None, cfg.train, rt, generator, dist=Distributed(rank, world_size))
        torch.save(model.state_dict(), f"{out_dir}/{name}-{world_size}-{rank}.pt")


def _record_step(rank: int, world_size: int) -> None:
    """One data-parallel step per trainable: synchronised BatchNorm, the codebook's all-reduces and
    restarts included, without an operator that would make the host wait for a GPU."""
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1))
    for name in EXACT_CONFIGS:
        model = rt.prepare(_exact_model(name))
        opts = rt.optimizers(model)
        distributed.prepare_training(model, opts.values(), Distributed(rank, world_size))
        batch = next(make_split(64).batches(16, rt.device, rank=rank, world_size=world_size))
        with HostSyncRecorder() as rec:
            model.train_step(batch, opts)
        assert "c10d::allreduce_" in rec.ops and rec.syncs == [], (name, rec.syncs)


def _exact_rank(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        _fit_exact(rank, world_size, out_dir)
        _record_step(rank, world_size)
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # two spawned ranks and a single process, two families: ~20 s
def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    """Two gloo ranks, 16 images each, end two steps where one process on the same 32 ends: BatchNorm
    running statistics (synchronised BatchNorm), weights, and the EMA codebook with its restarts;
    and a data-parallel step makes no host sync."""
    mp.spawn(_exact_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    torch.set_num_threads(1)
    _fit_exact(0, 1, str(tmp_path))
    for name in EXACT_CONFIGS:
        single = torch.load(tmp_path / f"{name}-1-0.pt", weights_only=True)
        for rank in range(2):
            ranked = torch.load(tmp_path / f"{name}-2-{rank}.pt", weights_only=True)
            for key, value in single.items():
                torch.testing.assert_close(ranked[key], value, rtol=1e-4, atol=1e-5,
                                           msg=lambda m, k=key: f"{name} rank {rank}: {k}: {m}")
