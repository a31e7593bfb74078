"""Seeding, device / precision / thread selection.

Precision is chosen at run time from what the hardware does well: bf16 autocast only pays off on
CPUs with native bf16 matrix instructions, AMX (measured ~1.9x on the notebook VAE, Intel Xeon) or
AVX-512 BF16 (train@vae 124 s -> 90 s and train@dcgan ~150 s -> 114 s on a 2-core AMD EPYC Zen 4),
and is *slower* on AVX2-only CPUs, so ``auto`` checks the CPU flags instead of assuming. On CUDA,
``auto`` uses bf16 where the tensor cores run it natively (compute capability >= 8.0: Ampere and
later), else fp32: ``torch.cuda.is_bf16_supported()`` also says yes on a V100 or T4, where bf16 is
emulated and slower than fp32. fp16 would need loss scaling (a GradScaler between
``loss.backward()`` and ``optimizer.step()``), and those calls live inside each family's
``train_step``, out of the loop's reach.

``deterministic`` (same params -> same metrics): the CPU kernels used here are deterministic as they
are. On CUDA it also turns on ``torch.use_deterministic_algorithms`` (the deterministic variants of
``index_add_``, scatter and cuDNN convolutions; ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` for cuBLAS) with
``warn_only``: the few ops with no deterministic CUDA kernel (the classifier's adaptive average
pool backward) warn once instead of failing a stage. ``deterministic: false`` on CUDA turns cuDNN's
autotuner on (``cudnn.benchmark``: the fastest kernels for the fixed batch shapes, chosen by timing).

Speed knobs the loop gets from here: channels_last modules and batches, fused optimiser kernels
(``Runtime.optimizers``), ``torch.compile`` of each submodule when ``runtime.compile`` is on (mode
``runtime.compile_mode``; ``reduce-overhead`` = CUDA graphs), and one intra-op thread pool per process
sized to the cores this process may use.
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


# What selects the CPU kernels a run executes (oneDNN and ATen dispatch on these ISA extensions).
KIND_FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_tile",
                        "amx_int8", "avx_vnni"})
KIND_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def machine_kind(precision: str = "auto") -> dict[str, object]:
    """This machine's kind for a run at ``runtime.precision`` ``precision``: the ISA flags that pick
    kernels, the torch build, the resolved CPU precision, the thread count and the ISA caps set in the
    environment. Two runs of the same params on the same kind are bit-for-bit identical
    (tests/test_vae.py::test_same_params_same_metrics; fresh clones reproduce every committed metrics file byte for byte), which the CI gate relies on (``comparison.bands``)."""
    flags = cpu_flags()
    resolved = precision if precision != "auto" else ("bf16" if flags & BF16_CPU_FLAGS else "fp32")
    return {"cpu_flags": sorted(flags & KIND_FLAGS), "torch": torch.__version__, "precision": resolved,
            "threads": torch.get_num_threads(), **{k.lower(): os.environ.get(k, "") for k in KIND_ENV}}


@dataclass(frozen=True)
class Runtime:
    """Resolved runtime: concrete device and dtype, ready for the training loop."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = plain fp32
    channels_last: bool
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode: "default" or "reduce-overhead" (CUDA graphs)

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
                child.compile(mode=self.compile_mode)
        return module

    def step_begin(self) -> None:
        """Mark a new training step: with CUDA graphs (``reduce-overhead``) a submodule called several
        times per step (the GAN's D) must not see its previous step's outputs as still in use."""
        if self.compile and self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()

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


NATIVE_BF16_CAPABILITY = (8, 0)  # CUDA compute capability of Ampere, the first with bf16 tensor cores


def auto_precision(device_type: str, capability: tuple[int, int] | None, flags: set[str]) -> torch.dtype | None:
    """What ``precision: auto`` picks: bf16 where the hardware computes it natively, else None (fp32).

    ``capability``: the CUDA device's (major, minor) compute capability (None off CUDA); ``flags``:
    the CPU's usable flags (:func:`cpu_flags`; ignored on CUDA).
    """
    if device_type == "cuda":
        return torch.bfloat16 if capability is not None and capability >= NATIVE_BF16_CAPABILITY else None
    return torch.bfloat16 if BF16_CPU_FLAGS & flags else None


def _resolve_precision(cfg: RuntimeConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "fp16":
        raise ConfigError("params.yaml: runtime.precision fp16 needs loss scaling, which train_step does "
                          "not do; use bf16 (CUDA Ampere+, AMX or AVX-512 BF16 CPUs) or fp32")
    if device.type == "cuda":
        return auto_precision("cuda", torch.cuda.get_device_capability(device), set())
    return auto_precision(device.type, None, cpu_flags())


def set_determinism(deterministic: bool, cuda: bool) -> None:
    """Apply ``runtime.deterministic`` (see the module doc): cuDNN's kernel choice always; on CUDA,
    torch's deterministic algorithms (warn-only) or the autotuner. The CPU path is left as it was:
    its kernels are deterministic, and the global flag would only add checks to every op."""
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cuda and not deterministic
    if cuda:
        if deterministic:
            # Read when cuBLAS creates its handle (the first matmul), so it must be set before any runs.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


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
    if cfg.compile and cfg.compile_mode == "reduce-overhead" and not use_cuda:
        raise ConfigError("params.yaml: runtime.compile_mode reduce-overhead replays CUDA graphs and needs a CUDA "
                          "device; use compile_mode: default on the CPU")
    set_determinism(cfg.deterministic, use_cuda)
    return Runtime(device=device, amp_dtype=_resolve_precision(cfg, device), channels_last=cfg.channels_last,
                   compile=cfg.compile, compile_mode=cfg.compile_mode)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; a host tensor bound for CUDA goes through pinned memory, asynchronously.

    A copy from pageable memory would make the host wait for the device's stream; from pinned
    memory it is queued. The caching host allocator keeps a pinned block until its copy completes.
    """
    if t.device == device:
        return t
    if device.type == "cpu":
        return t.to(device)  # the host reads it next: this copy must have finished
    if t.device.type == "cpu" and device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


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
