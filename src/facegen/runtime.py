"""Seeding, device / precision / thread selection.

Precision is chosen at run time from what the hardware does well: bf16 autocast only pays off on
CPUs with native bf16 matrix instructions, AMX (measured ~1.9x on the notebook VAE, Intel Xeon) or
AVX-512 BF16 (train@vae 124 s -> 90 s and train@dcgan ~150 s -> 114 s on a 2-core AMD EPYC Zen 4),
and is *slower* on AVX2-only CPUs, so ``auto`` checks the CPU flags instead of assuming. On CUDA, ``auto`` uses bf16 where supported, else fp32:
fp16 would need loss scaling (a GradScaler between ``loss.backward()`` and ``optimizer.step()``),
and those calls live inside each family's ``train_step``, out of the loop's reach.

Speed knobs the loop gets from here: channels_last modules and batches, fused optimiser kernels
(``Runtime.optimizers``), ``torch.compile`` of each submodule when ``runtime.compile`` is on, and
one intra-op thread pool per process sized to the cores this process may use.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from facegen.config import RuntimeConfig
from facegen.distributed import from_env, local_world_size
from facegen.errors import ConfigError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order and sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def available_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# /proc/cpuinfo flags of CPUs with native bf16 dot products, where bf16 autocast is faster than fp32.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


# oneDNN's ISA levels (its ONEDNN_MAX_CPU_ISA values), lowest first, and the /proc/cpuinfo flags whose
# kernels each level is the first to allow.
_ONEDNN_ISA_LEVELS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                      "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16")
_ONEDNN_ISA_FLAGS = {"AVX2": {"avx2", "fma"}, "AVX512_CORE": {"avx512f"}, "AVX512_CORE_BF16": {"avx512_bf16"},
                     "AVX512_CORE_AMX": {"amx_bf16", "amx_tile"}}


def _hardware_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_flags() -> set[str]:
    """The CPU's /proc/cpuinfo flags that torch's convolution and matmul kernels may use.

    Flags above oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, or the older ``DNNL_MAX_CPU_ISA``) are
    dropped: with ``ONEDNN_MAX_CPU_ISA=AVX2`` an AMX Xeon runs an AVX2-only CPU's kernels, where bf16
    is slow, so ``precision: auto`` must pick fp32 there too (benchmarks use the cap to measure the
    AVX2 code path on newer CPUs). An unknown cap value is ignored, as oneDNN ignores it.
    """
    flags = _hardware_flags()
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ONEDNN_ISA_LEVELS:
        allowed = _ONEDNN_ISA_LEVELS.index(cap)
        for level, gated in _ONEDNN_ISA_FLAGS.items():
            if _ONEDNN_ISA_LEVELS.index(level) > allowed:
                flags -= gated
    return flags


@dataclass(frozen=True)
class Runtime:
    """Resolved runtime: concrete device and dtype, ready for the training loop."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = plain fp32
    channels_last: bool
    compile: bool = False

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a module to the device (and to channels_last memory format where enabled).

        With ``compile``, each direct submodule is compiled in place: families call their
        submodules (encoder, decoder, G, D) directly, never the top-level ``forward``, and
        in-place compilation keeps state_dict keys (checkpoints) unchanged.
        """
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.compile:
            for child in module.children():
                child.compile()
        return module

    def optimizers(self, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
        """``model.optimizers()`` switched to fused kernels where the optimiser and device have them.

        A fused Adam updates each parameter in one pass instead of ~10 elementwise kernels. It
        must be chosen before the first step (the step counter's placement depends on it), which
        is why the loop calls this instead of ``model.optimizers()``.
        """
        opts = model.optimizers()
        for opt in opts.values():
            if "fused" not in opt.defaults or opt.defaults.get("differentiable"):
                continue
            params = [p for group in opt.param_groups for p in group["params"]]
            if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
                for group in (opt.defaults, *opt.param_groups):
                    group["fused"], group["foreach"] = True, False
        return opts


def _resolve_precision(cfg: RuntimeConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "fp16":
        raise ConfigError("params.yaml: runtime.precision fp16 needs loss scaling, which train_step does "
                          "not do; use bf16 (CUDA Ampere+, AMX or AVX-512 BF16 CPUs) or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if BF16_CPU_FLAGS & cpu_flags() else None


def setup_runtime(cfg: RuntimeConfig) -> Runtime:
    """Apply thread/determinism settings and pick device and precision."""
    # torchrun processes on one machine share its cores: 2 processes x 2 threads on 2 cores thrash.
    threads = cfg.threads or max(1, available_cores() // local_world_size())
    torch.set_num_threads(threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: runtime.device is cuda but no CUDA device is available; use auto or cpu")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        device = torch.device("cuda", from_env().local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if cfg.deterministic:
        # Same params -> same metrics. cuDNN autotuning would pick kernels non-deterministically.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return Runtime(device=device, amp_dtype=_resolve_precision(cfg, device), channels_last=cfg.channels_last,
                   compile=cfg.compile)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily switch to eval mode (BatchNorm running stats, no dropout) without grads."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            yield module
    finally:
        module.train(was_training)
