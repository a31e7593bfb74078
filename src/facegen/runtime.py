"""Seeding, device / precision / thread selection.

Precision is chosen at run time from what the hardware does well: bf16 autocast only pays off on
CPUs with AMX (measured ~1.9x on the notebook VAE) and is *slower* on AVX2-only CPUs, so ``auto``
checks the CPU flags instead of assuming. On CUDA, ``auto`` uses bf16 where supported, else fp16.
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
from facegen.errors import ConfigError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order and sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@dataclass(frozen=True)
class Runtime:
    """Resolved runtime: concrete device and dtype, ready for the training loop."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = plain fp32
    channels_last: bool

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a module to the device (and to channels_last memory format where enabled)."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module


def _resolve_precision(cfg: RuntimeConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("params.yaml: runtime.precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if "amx_bf16" in cpu_flags() else None


def setup_runtime(cfg: RuntimeConfig) -> Runtime:
    """Apply thread/determinism settings and pick device and precision."""
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: runtime.device is cuda but no CUDA device is available; use auto or cpu")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    if cfg.deterministic:
        # Same params -> same metrics. cuDNN autotuning would pick kernels non-deterministically.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return Runtime(device=device, amp_dtype=_resolve_precision(cfg, device), channels_last=cfg.channels_last)


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
