"""Runtime speed knobs: fused optimisers, in-place compilation, thread split, precision choices."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from facegen import runtime
from facegen.config import DCGANConfig, RuntimeConfig, TrainConfig, VAEConfig
from facegen.errors import ConfigError
from facegen.models import build
from facegen.runtime import Runtime, available_cores, seed_everything, setup_runtime
from facegen.training.loop import fit
from tests.conftest import make_split


def test_optimizers_are_fused_where_the_device_has_kernels(rt):
    model = rt.prepare(build("dcgan", DCGANConfig(nz=8, ngf=8, ndf=8), 16))
    opts = rt.optimizers(model)
    assert set(opts) == {"d", "g"}
    for opt in opts.values():
        assert all(group["fused"] and not group["foreach"] for group in opt.param_groups)


def test_fused_training_is_deterministic_and_resumable(rt, tmp_path):
    """fit uses Runtime.optimizers: the fused optimiser's state must survive a resume exactly."""
    cfg = VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(epochs=2, batch_size=16, lr=3e-3))

    def train(epochs: int, state=None):
        generator = seed_everything(5)
        model = rt.prepare(build("vae", cfg, 16))
        fit(model, make_split(), None, dataclasses.replace(cfg.train, epochs=epochs), rt, generator, state_path=state)
        return model.state_dict()

    straight = train(2)
    train(1, tmp_path / "s.pt")
    resumed = train(2, tmp_path / "s.pt")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_compile_keeps_checkpoint_keys():
    cfg = VAEConfig(latent_dim=4, widths=(8, 16))
    plain = build("vae", cfg, 16)
    compiled = Runtime(torch.device("cpu"), None, channels_last=True, compile=True).prepare(build("vae", cfg, 16))
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_threads_split_between_torchrun_processes(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=0))
    assert torch.get_num_threads() == max(1, available_cores() // 2)


def test_fp16_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="fp16 needs loss scaling"):
        setup_runtime(RuntimeConfig(device="cpu", precision="fp16"))


@pytest.mark.parametrize("flags, expected", [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512_bf16"}, "bf16"),
                                             ({"avx512f", "amx_bf16", "amx_tile"}, "bf16")])
def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set(flags))
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="auto", threads=1))
    assert rt.precision == expected


AMX_XEON = {"fma", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize("cap, kept, precision", [
    ("AVX2", {"fma", "avx2"}, "fp32"),                              # an AVX2-only CPU's kernels: bf16 is slow
    ("avx512_core_bf16", AMX_XEON - {"amx_bf16", "amx_tile"}, "bf16"),
    ("ALL", AMX_XEON, "bf16"), ("NOT_AN_ISA", AMX_XEON, "bf16"), ("", AMX_XEON, "bf16")])
def test_onednn_isa_cap_removes_the_flags_above_it(monkeypatch, cap, kept, precision):
    monkeypatch.setattr(runtime, "_hardware_flags", lambda: set(AMX_XEON))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert runtime.cpu_flags() == kept
    assert setup_runtime(RuntimeConfig(device="cpu", precision="auto", threads=1)).precision == precision
