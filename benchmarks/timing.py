"""Interleaved throughput timing, shared by the benchmark scripts.

The benchmark machine is shared: other jobs come and go, so two contenders timed one after the
other can see very different machines. Each round therefore times every contender once, back to
back and in a freshly shuffled order (no contender always runs first, or right after a slow one),
and we report per-contender medians plus the median of the per-round *ratios* to a baseline (all
runs of a round saw nearly the same load). CPU seconds per image (this process, all threads) are
recorded too; with one intra-op thread they hardly move with other processes' load, while with
several, threads spinning on a descheduled sibling inflate them.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from typing import Callable

Step = Callable[[], None]


def interleaved(contenders: dict[str, Step], images_per_step: int, *, warmup: int, rounds: int,
                steps: int, baseline: str) -> dict[str, dict[str, float]]:
    """Time ``steps`` calls of every contender per round; return img/s stats and ratios to ``baseline``."""
    for step in contenders.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            step = contenders[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            wall[name].append(steps * images_per_step / (time.perf_counter() - t0))
            cpu[name].append(steps * images_per_step / (time.process_time() - c0))
    out = {}
    for name in contenders:
        ratios = [a / b for a, b in zip(wall[name], wall[baseline])]
        out[name] = {"img_per_s_median": statistics.median(wall[name]), "img_per_s_best": max(wall[name]),
                     "img_per_cpu_s_median": statistics.median(cpu[name]),
                     "speedup_median": statistics.median(ratios),
                     "speedup_cpu": statistics.median(cpu[name]) / statistics.median(cpu[baseline])}
    return out


def step_flops(step: Step) -> float:
    """FLOPs of one call of ``step`` (convolutions and matmuls, forward and backward), counted by
    ``torch.utils.flop_counter.FlopCounterMode``; elementwise ops are not counted (they are memory-bound)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


# Operators that run the convolutions and matmuls themselves (``aten::_convolution`` included: its self
# time is the transposed convolutions' oneDNN call, which has no operator of its own).
GEMM_OPS = frozenset({"aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution",
                      "aten::addmm", "aten::mm", "aten::bmm"})


def gemm_share(step: Step, repeats: int = 3) -> float:
    """Fraction of ``step``'s wall time (``repeats`` calls after one warm-up) spent inside convolution and
    matmul operators (their self time, ``torch.profiler``).

    Amdahl's law makes ``1 / share`` the most any change can gain that leaves those operators as they
    are (same layers, precision and kernel library): even with BatchNorm, activations, losses, the
    optimiser and Python made free. Used to state the ceiling of an equal-architecture speed-up. The
    wall time includes the profiler's own per-operator cost, which lowers the share slightly, so the
    ceiling errs high, never low.
    """
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        wall_us = (time.perf_counter() - t0) * 1e6
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS) / wall_us


def fp32_peak_flops(threads: int) -> float:
    """The cores' fp32 peak, FLOP/s: threads x clock x FLOPs per cycle per core.

    Per cycle: 2 FMA pipes x SIMD lanes x 2 (multiply + add) = 64 with 512-bit FMA units (Intel
    AVX-512), 32 with 256-bit ones (AVX2 + FMA, and AMD Zen 4, whose AVX-512 runs on 256-bit pipes),
    16 otherwise. Clock: the largest ``cpu MHz`` in /proc/cpuinfo (nominal in a VM; turbo can exceed it).
    """
    from facegen.runtime import cpu_flags

    flags, mhz, vendor = cpu_flags(), 0.0, ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":", 1)[1]))
            elif line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags and vendor == "GenuineIntel" else 32 if {"avx2", "fma"} <= flags else 16
    return threads * mhz * 1e6 * per_cycle


def machine() -> dict[str, object]:
    """What the numbers were measured on, and how busy it was."""
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from facegen.runtime import BF16_CPU_FLAGS, cpu_flags  # the flags precision=auto decides on

    import torch

    flags = cpu_flags()  # already without the flags above an ISA cap
    shown = sorted(flags & (BF16_CPU_FLAGS | {"avx2", "avx512f", "amx_tile", "fma"}))
    # ISA caps, set to run an older CPU's kernels on this one: oneDNN's (convolutions, matmuls) and
    # ATen's (its vectorised elementwise kernels, ATEN_CPU_CAPABILITY).
    caps = {"onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return {"cpu": model, "cpu_count": os.cpu_count(), "cpu_flags": shown, **caps,
            "auto_precision": "bf16" if flags & BF16_CPU_FLAGS else "fp32",
            "load_average_1min": round(os.getloadavg()[0], 2)}


def end_to_end(train_img_s: float, load_img_s: float) -> float:
    """img/s of an epoch that loads, then trains on, each batch in one process: the times add up."""
    return 1.0 / (1.0 / train_img_s + 1.0 / load_img_s)
