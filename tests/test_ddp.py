"""Data-parallel training on CPU (gloo): torchrun end to end, and every family kept in sync.

* ``torchrun --nproc_per_node=2 stages/train.py`` on a tiny config follows the single-process
  run with the same global batch. Not bit-for-bit: BatchNorm normalises each rank's half batch
  with that half's statistics and ranks draw their own noise, as with DistributedDataParallel.
* Two spawned ranks train each family through ``fit``; they must end with identical weights and
  buffers (the GAN's two optimisers, the VQ-VAE's EMA codebook and dead-code restarts included).
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from facegen.config import DCGANConfig, RuntimeConfig, TrainConfig, VAEConfig, VQVAEConfig
from facegen.distributed import Distributed
from facegen.errors import ConfigError
from facegen.models import build
from facegen.runtime import seed_everything, setup_runtime
from facegen.models.checkpoint import safe_load
from facegen.training.loop import fit
from tests.conftest import make_split
from tests.stage_repo import make_repo, run_stage, stage_cmd, stage_env

TRAIN = TrainConfig(epochs=2, batch_size=16, lr=3e-3)
CONFIGS = {
    "vae": VAEConfig(latent_dim=4, widths=(8, 16), train=TRAIN),
    "vqvae": VQVAEConfig(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, num_embeddings=16,
                         embedding_dim=4, train=TRAIN),
    "dcgan": DCGANConfig(nz=8, ngf=8, ndf=8, ema_decay=0.9, train=TRAIN),
}


@pytest.mark.slow  # torchrun + a single-process run: ~40 s on the 2-core machine
def test_torchrun_matches_single_process(tmp_path):
    single, ddp = make_repo(tmp_path / "single"), make_repo(tmp_path / "ddp")
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
        for family, cfg in CONFIGS.items():
            generator = seed_everything(11)
            model = rt.prepare(build(family, cfg, 16))
            fit(model, make_split(64), None, cfg.train, rt, generator, dist=Distributed(rank, world_size))
            torch.save(model.state_dict(), f"{out_dir}/{family}-{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # two spawned ranks x three families: ~30 s
def test_every_family_stays_in_sync_across_ranks(tmp_path):
    mp.spawn(_train_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    for family in CONFIGS:
        r0 = torch.load(tmp_path / f"{family}-0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{family}-1.pt", weights_only=True)
        for name in r0:
            assert torch.equal(r0[name], r1[name]), f"{family}: {name}"


def test_global_batch_must_split_evenly():
    with pytest.raises(ConfigError, match="divisible"):
        Distributed(rank=0, world_size=3).local_batch(64)
    assert Distributed(rank=1, world_size=4).local_batch(64) == 16
