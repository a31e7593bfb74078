"""Throughput of the data layer: synthetic face generation and prepare (decode/crop/resize).

Usage: ``python benchmarks/bench_data.py [--images 12000] [--workers 2] [--image-size 64]``
Writes ``benchmarks/results/data.json`` and prints it. Both stages start from scratch in a temp
folder (generation includes JPEG encoding and writing; prepare includes reading the lists and
writing the cache). Wall-clock rates depend on what else the machine runs, so the 1-minute load
average is recorded, and so are images per CPU-second (parent + workers): that figure does not
drop when other processes compete for the cores, and times the worker count it bounds the wall rate.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from facegen.config import DataConfig, SyntheticConfig
from facegen.data.prepare import prepare
from facegen.data.synthetic import generate_celeba_folder

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool workers), user + system."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=SyntheticConfig().num_images)
    parser.add_argument("--workers", type=int, default=DataConfig().workers)
    parser.add_argument("--image-size", type=int, default=DataConfig().image_size)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        cfg = DataConfig(root=str(Path(tmp) / "synthetic"), image_size=args.image_size, workers=args.workers,
                         synthetic=SyntheticConfig(num_images=args.images))
        load_before = os.getloadavg()[0]
        start, cpu = time.perf_counter(), cpu_seconds()
        generate_celeba_folder(Path(cfg.root), cfg.synthetic, args.seed, args.workers)
        generation_s, generation_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        cpu = cpu_seconds()
        summary = prepare(cfg, args.seed, Path(tmp) / "prepared")  # reuses the folder just written
        prepare_cpu = cpu_seconds() - cpu

    result = {
        "images": args.images,
        "workers": args.workers,
        "image_size": args.image_size,
        "synthetic_images_per_s": round(args.images / generation_s, 1),
        "synthetic_seconds": round(generation_s, 2),
        "synthetic_images_per_cpu_s": round(args.images / generation_cpu, 1),
        "prepare_images_per_s": summary.images_per_second,
        "prepare_seconds": summary.seconds,
        "prepare_images_per_cpu_s": round(args.images / prepare_cpu, 1),
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": round(load_before, 2),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
