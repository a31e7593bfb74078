"""Memory at full CelebA size: does it grow with a batch or with the dataset?

Usage: ``python -m benchmarks.bench_memory [--rows 202599] [--sizes 64 128] [--dir /tmp]``
(writes ``benchmarks/results/memory.json``; needs ``rows x size² x 3`` bytes free under ``--dir``
for the largest size: 9.3 GiB at 128 px, deleted afterwards).

For each image size a CelebA-shaped prepared split is written without decoding a JPEG: a
``train.npy`` of ``--rows`` uint8 faces (202,599 = all of CelebA, more than its 162,770 training
faces) through a memory map, and its ``attrs.csv``. Then, each in a fresh process so no measurement
inherits another's high-water mark:

* ``attribute_directions`` (the mean-difference vectors of evaluation and ``facegen edit``) of a
  VQ-VAE with the GPU profile's latent (64 x (size/4)² floats per face; narrow convolutions, which
  change nothing about the memory of the sums) at ``evaluate.batch_size`` 128;
* a training epoch's data path: ``FaceSplit.batches`` shuffled, batch 64, ``drop_last``, every batch
  converted to float as the loop receives it.

Each is measured at the full row count and at ``--small`` rows. Reported per run: the peak of the
process's private memory (``RssAnon`` of /proc/self/status, sampled every millisecond by a thread),
which is what cannot be given back and what grew with N before (a split read into memory, every
encoding kept); and ``VmHWM``, the peak resident set including the memory-mapped file's pages,
which are page cache: shared by every process that maps the file (all torchrun ranks on a node),
evictable under memory pressure, and counted once a batch has touched them. What the old code held
is computed (not run: at 128 px it would not fit this machine): the split read into memory
(rows x size² x 3 bytes) and every encoding kept as float32 (rows x D x 4 bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facegen.config import CELEBA_ATTRIBUTES, DataConfig, RuntimeConfig, VQVAEConfig
from facegen.data.dataset import FaceSplit, load_split
from facegen.latent.attributes import attribute_directions
from facegen.models import build
from facegen.runtime import seed_everything, setup_runtime

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
CELEBA_ROWS = 202_599
BLOCK = 2048  # rows written per chunk (one random block, repeated: content does not matter here)
ATTRIBUTES = DataConfig().attributes
GPU_PROFILE_LATENT = VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=0,
                                 num_embeddings=512, embedding_dim=64)
DIRECTIONS_BATCH = 128  # evaluate.batch_size
TRAIN_BATCH = 64        # models.*.train.batch_size of the GPU profile
MB = 2**20


def write_split(prepared: Path, rows: int, size: int) -> None:
    """train.npy (rows, size, size, 3) uint8 through a memory map, and attrs.csv: what prepare writes."""
    prepared.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(prepared / "train.npy", mode="w+", dtype=np.uint8, shape=(rows, size, size, 3))
    block = np.random.default_rng(0).integers(0, 256, (BLOCK, size, size, 3), dtype=np.uint8)
    for start in range(0, rows, BLOCK):
        images[start:start + BLOCK] = block[:min(BLOCK, rows - start)]
    images.flush()
    del images
    attrs = np.random.default_rng(1).integers(0, 2, (rows, len(CELEBA_ATTRIBUTES)), dtype=np.int8)
    table = pd.DataFrame(attrs, columns=list(CELEBA_ATTRIBUTES))
    table.insert(0, "split", "train")
    table.insert(0, "image_id", [f"{i + 1:06d}.jpg" for i in range(rows)])
    table.to_csv(prepared / "attrs.csv", index=False)


def _status() -> dict[str, int]:
    """RssAnon, RssFile and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


class PeakSampler:
    """Peak RssAnon over a block, sampled every millisecond by a background thread."""

    def __init__(self) -> None:
        self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, _status()["RssAnon"])
            time.sleep(0.001)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon = max(self.peak_anon, _status()["RssAnon"])


def measure(what: str, prepared: Path, rows: int) -> dict[str, float]:
    """One measurement in this (fresh) process; the split is the first ``rows`` faces of train.npy."""
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"))
    generator = seed_everything(0)
    full = load_split(prepared, "train", ATTRIBUTES)
    split = FaceSplit(full.images[:rows], full.attrs[:rows], full.attr_names)
    size = split.images.shape[1]
    model = rt.prepare(build("vqvae", GPU_PROFILE_LATENT, size)).eval() if what == "directions" else None
    before = _status()
    t0 = time.perf_counter()
    with PeakSampler() as peak:
        if model is not None:
            vectors = attribute_directions(model, ATTRIBUTES, split, DIRECTIONS_BATCH, rt)
            assert len(vectors) == len(ATTRIBUTES)
        else:
            for batch in split.batches(TRAIN_BATCH, rt.device, shuffle=True, generator=generator, drop_last=True):
                assert batch.images.dtype == torch.float32
    after = _status()
    return {"rows": rows, "image_size": size, "seconds": round(time.perf_counter() - t0, 1),
            "private_mb_before": round(before["RssAnon"] / MB, 1),
            "peak_private_mb": round(peak.peak_anon / MB, 1),
            "peak_private_growth_mb": round((peak.peak_anon - before["RssAnon"]) / MB, 1),
            "peak_resident_mb_incl_mapped_file": round(after["VmHWM"] / MB, 1),
            # file-backed pages: the libraries' (before) plus the split's pages a batch has touched
            "file_pages_resident_mb_before": round(before["RssFile"] / MB, 1),
            "file_pages_resident_mb_at_end": round(after["RssFile"] / MB, 1)}


def _run_measurement(what: str, prepared: Path, rows: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--measure", what, "--prepared",
                           str(prepared), "--rows", str(rows)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError(f"{what} at {rows} rows failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=CELEBA_ROWS)
    ap.add_argument("--small", type=int, default=20_000, help="the smaller row count each measurement is repeated at")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the memory-mapped split is written")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--measure", choices=["directions", "epoch"], help=argparse.SUPPRESS)
    ap.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.prepared, args.rows)))
        return
    result: dict = {"rows": args.rows, "small_rows": args.small, "directions_batch": DIRECTIONS_BATCH,
                    "train_batch": TRAIN_BATCH, "attributes": len(ATTRIBUTES), "sizes": {},
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "torch": torch.__version__}}
    for size in args.sizes:
        need = args.rows * size * size * 3
        free = shutil.disk_usage(args.dir).free
        if free < need * 1.1:
            sys.exit(f"error: {args.dir} has {free / 2**30:.1f} GiB free; the {size} px split needs {need / 2**30:.1f} GiB")
        with tempfile.TemporaryDirectory(prefix="bench_memory_", dir=args.dir) as tmp:
            prepared = Path(tmp) / "prepared"
            t0 = time.perf_counter()
            write_split(prepared, args.rows, size)
            latent = GPU_PROFILE_LATENT.embedding_dim * (size // 4) ** 2
            entry = {"split_bytes": need, "write_seconds": round(time.perf_counter() - t0, 1), "latent_floats": latent,
                     "old_split_in_memory_mb": round(need / MB), "old_encodings_kept_mb": round(args.rows * latent * 4 / MB)}
            for what in ("directions", "epoch"):
                entry[what] = {str(rows): _run_measurement(what, prepared, rows) for rows in (args.small, args.rows)}
                print(f"{size} px {what}: {json.dumps(entry[what])}", flush=True)
            result["sizes"][str(size)] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
