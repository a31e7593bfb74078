"""Shared fixtures: tiny random face splits and tiny configs, so unit tests train in seconds."""
from __future__ import annotations

import os

import pytest
import torch

from facegen.config import RuntimeConfig, TrainConfig, VAEConfig
from facegen.data.dataset import FaceSplit
from facegen.runtime import Runtime, setup_runtime

ATTRS = ("Smiling", "Male")


def make_split(n: int = 64, size: int = 16, seed: int = 0) -> FaceSplit:
    """Random but learnable data: smooth blobs whose brightness depends on the attributes."""
    g = torch.Generator().manual_seed(seed)
    attrs = (torch.rand(n, len(ATTRS), generator=g) > 0.5).float()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-(xx ** 2 + yy ** 2) * 3)
    base = 0.3 + 0.4 * attrs[:, 0, None, None] * blob + 0.2 * attrs[:, 1, None, None]
    imgs = (base.unsqueeze(-1).expand(n, size, size, 3) + 0.05 * torch.rand(n, size, size, 3, generator=g))
    return FaceSplit((imgs.clamp(0, 1) * 255).to(torch.uint8), attrs, ATTRS)


@pytest.fixture(autouse=True)
def _isolated_tracking(tmp_path, monkeypatch):
    """Never touch the repo's mlruns.db from unit tests."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.setenv("FACEGEN_REPO_ROOT", str(tmp_path))
    monkeypatch.setenv("FACEGEN_CACHE_DIR", str(tmp_path / "cache"))  # the CLI's caches, never ~/.cache
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """For tests on tiny tensors: a second intra-op thread only adds sync cost (9x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def split() -> FaceSplit:
    return make_split()


@pytest.fixture
def rt() -> Runtime:
    return setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=2))


@pytest.fixture
def tiny_vae_cfg() -> VAEConfig:
    return VAEConfig(latent_dim=4, widths=(8, 16), beta=1.0, train=TrainConfig(epochs=2, batch_size=16, lr=3e-3))


def recorded(per_key: dict[str, list[float]], **kwargs) -> "Noise":
    """A Noise from ``{"vae.json:recon_psnr": [one value per run]}`` (runs seeded 0, 1, ...; run 0 committed)."""
    from facegen.comparison.noise import Noise

    n = len(next(iter(per_key.values()))) if per_key else 0
    return Noise(per_key, [{"seed": i, "precision": "bf16"} for i in range(n)], committed=0, **kwargs)


def write_recorded_runs(path, runs: list[dict[str, dict[str, float]]], params=None) -> None:  # noqa: ANN001
    """Write a noise file of ``runs`` (``[{file: {metric: value}}]``, run 0 committed) as bench_noise does;
    with ``params``, its fingerprint (the report then trusts the runs for those params)."""
    import json

    from facegen.comparison.noise import fingerprint, summarise

    doc = {"command": "test", "runs": [{"seed": i, "precision": "bf16"} for i in range(len(runs))],
           "committed": {"seed": 0, "precision": "bf16", "kind": {}}, "metrics": summarise(runs)}
    if params is not None:
        doc["params_fingerprint"] = fingerprint(params)
    path.write_text(json.dumps(doc))
