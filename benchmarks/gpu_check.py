"""The GPU check: the GPU profile's code paths on CUDA, timed, in one command of at most ~8 minutes.

Usage (repository root, a CUDA machine): ``python benchmarks/gpu_check.py`` -> prints one line per
stage and writes ``benchmarks/results/gpu.json``. ``--device cpu --tiny`` runs the same stages at
toy sizes on the CPU in seconds (what the unit tests run: the logic, not the speed). Without a CUDA
device and without ``--device cpu`` it refuses in one line (exit 2).

Stages, each at ``params-celeba-gpu.yaml``'s settings (precision ``auto``, channels_last, batch 64,
the notebook's widths) unless ``--tiny``:

* ``train``: each family (vae, beta_vae, vqvae, dcgan) at 64 and 128 px, ``--warmup`` untimed then
  ``--steps`` timed training steps, batches drawn as the loop draws them (a uint8 split copied to the
  GPU once, shuffled there); plus the VAE at 64 px compiled with ``compile_mode: reduce-overhead``
  (CUDA graphs; its warm-up includes the compilation). During timed CUDA steps
  ``torch.cuda.set_sync_debug_mode("warn")`` counts operations that made the host wait (0 expected:
  ``tests/test_scale.py`` checks the same on the CPU by operator).
* ``prior_sampling``: one batch of ``evaluate.sample_batch_size`` code maps from the profile's
  PixelCNN (untrained: the cost does not depend on the weights) at 64 and 128 px.
* ``inception``: Inception-v3 features of ``--inception-images`` faces (the FID/KID network).
* ``ddp``: where two GPUs exist, ``torchrun --nproc_per_node=2`` of this script's worker: the VAE and
  the VQ-VAE at 64 px on two ranks (global batch 64), synchronised BatchNorm and codebook included,
  ranks checked to agree at the end.

Each stage reports img/s, peak GPU memory (``torch.cuda.max_memory_allocated``) and seconds. A
stage that would start after ``--budget-s`` is skipped and says so, so the command stays bounded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from facegen import distributed
from facegen.config import Params, load_params
from facegen.data.dataset import FaceSplit
from facegen.errors import FacegenError
from facegen.evaluation.inception import inception_features
from facegen.models import build
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import Runtime, seed_everything, setup_runtime

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "params-celeba-gpu.yaml"
RESULTS = REPO / "benchmarks" / "results" / "gpu.json"
FAMILIES = ("vae", "beta_vae", "vqvae", "dcgan")
SIZES = (64, 128)
TINY_SIZES = (16, 32)
MB = 2**20


def profile(tiny: bool) -> Params:
    """The GPU profile's params; ``tiny`` shrinks widths and batches to toy sizes (same code paths)."""
    params = load_params(PROFILE)
    if not tiny:
        return params
    models = {
        "vae": dataclasses.replace(params.model("vae"), latent_dim=8, widths=(8, 16)),
        "beta_vae": dataclasses.replace(params.model("beta_vae"), latent_dim=8, widths=(8, 16)),
        "vqvae": dataclasses.replace(params.model("vqvae"), num_hiddens=8, num_residual_hiddens=4, num_embeddings=16,
                                     embedding_dim=4),
        "dcgan": dataclasses.replace(params.model("dcgan"), nz=8, ngf=8, ndf=8),
    }
    models = {k: dataclasses.replace(v, train=dataclasses.replace(v.train, batch_size=4)) for k, v in models.items()}
    return dataclasses.replace(params, models=models, prior=dataclasses.replace(params.prior, hidden=8, layers=2),
                               evaluate=dataclasses.replace(params.evaluate, sample_batch_size=2))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / MB, 1) if device.type == "cuda" else None


def _timed(device: torch.device, fn: Callable[[], Any], count_syncs: bool = False) -> tuple[float, int | None]:
    """Seconds ``fn`` takes to run and finish on the device; with ``count_syncs`` on CUDA, also how many
    operations inside made the host wait for the GPU (CUDA's sync debug mode)."""
    _sync(device)
    syncs = None
    t0 = time.perf_counter()
    if count_syncs and device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    else:
        fn()
    _sync(device)
    return time.perf_counter() - t0, syncs


def _faces(n: int, size: int, attributes: int, seed: int = 0) -> FaceSplit:
    g = torch.Generator().manual_seed(seed)
    return FaceSplit(torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
                     (torch.rand(n, attributes, generator=g) > 0.5).float(), tuple(f"a{i}" for i in range(attributes)))


def train_stage(params: Params, rt: Runtime, family: str, size: int, warmup: int, steps: int) -> dict[str, Any]:
    """``warmup`` + ``steps`` training steps of ``family`` at ``size`` px, as the loop runs them."""
    cfg = params.model(family)
    batch = cfg.train.batch_size
    generator = seed_everything(params.seed)
    model = rt.prepare(build(family, cfg, size))
    opts = rt.optimizers(model)
    split = _faces(batch * (warmup + steps), size, len(params.data.attributes)).on_device(rt.device)
    batches = split.batches(batch, rt.device, shuffle=True, generator=generator, channels_last=rt.channels_last,
                            drop_last=True)

    def run(n: int) -> None:
        for _ in range(n):
            rt.step_begin()
            with rt.autocast():
                model.train_step(next(batches), opts)

    _reset_peak(rt.device)
    warm_s, _ = _timed(rt.device, lambda: run(warmup))
    seconds, syncs = _timed(rt.device, lambda: run(steps), count_syncs=True)
    return {"img_per_s": round(batch * steps / seconds, 1), "seconds": round(warm_s + seconds, 2),
            "warmup_seconds": round(warm_s, 2), "batch": batch, "steps": steps, "host_syncs": syncs,
            "peak_gpu_mb": _peak_mb(rt.device)}


def prior_stage(params: Params, rt: Runtime, size: int) -> dict[str, Any]:
    """One batch of ``evaluate.sample_batch_size`` code maps (after a 2-map warm-up)."""
    vq = params.model("vqvae")
    grid = (size // 4, size // 4)
    attrs = params.data.attributes
    rows = (torch.rand(64, len(attrs), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    prior = PixelCNNPrior(params.prior, vq.num_embeddings, grid, attrs, *PixelCNNPrior.attribute_table(rows))
    prior = prior.to(rt.device).eval()
    n = params.evaluate.sample_batch_size
    generator = torch.Generator().manual_seed(0)
    _reset_peak(rt.device)
    with rt.autocast():
        warm_s, _ = _timed(rt.device, lambda: prior.sample_codes(2, generator))
        seconds, syncs = _timed(rt.device, lambda: prior.sample_codes(n, generator), count_syncs=True)
    return {"img_per_s": round(n / seconds, 2), "seconds": round(warm_s + seconds, 2), "batch": n, "grid": list(grid),
            "host_syncs": syncs, "peak_gpu_mb": _peak_mb(rt.device)}


def inception_stage(rt: Runtime, size: int, n: int) -> dict[str, Any]:
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    inception_features(images[:2], device=rt.device)  # loads, checks and folds the network once
    _reset_peak(rt.device)
    seconds, _ = _timed(rt.device, lambda: inception_features(images, device=rt.device))
    return {"img_per_s": round(n / seconds, 1), "seconds": round(seconds, 2), "images": n,
            "peak_gpu_mb": _peak_mb(rt.device)}


def ddp_worker(out: Path, warmup: int, steps: int) -> None:
    """One torchrun rank: the VAE and VQ-VAE at 64 px on its slice of the global batch."""
    params = profile(tiny=False)
    rt = setup_runtime(params.runtime)
    with distributed.session(rt.device) as dist:
        result = {}
        for family in ("vae", "vqvae"):
            cfg = params.model(family)
            local = dist.local_batch(cfg.train.batch_size, f"models.{family}.train.batch_size")
            generator = seed_everything(params.seed)
            model = rt.prepare(build(family, cfg, 64))
            opts = rt.optimizers(model)
            distributed.prepare_training(model, opts.values(), dist)
            split = _faces(cfg.train.batch_size * (warmup + steps), 64, len(params.data.attributes)).on_device(rt.device)
            batches = split.batches(local, rt.device, shuffle=True, generator=generator, drop_last=True,
                                    rank=dist.rank, world_size=dist.world_size)

            def run(n: int) -> None:
                for _ in range(n):
                    with rt.autocast():
                        model.train_step(next(batches), opts)

            _reset_peak(rt.device)
            _timed(rt.device, lambda: run(warmup))
            seconds, syncs = _timed(rt.device, lambda: run(steps), count_syncs=True)
            distributed.check_in_sync(model)
            result[family] = {"img_per_s": round(cfg.train.batch_size * steps / seconds, 1), "seconds": round(seconds, 2),
                              "global_batch": cfg.train.batch_size, "ranks": dist.world_size, "host_syncs": syncs,
                              "peak_gpu_mb_rank0": _peak_mb(rt.device)}
        if dist.is_main:
            out.write_text(json.dumps(result))


def ddp_stage(warmup: int, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               __file__, "--ddp-worker", str(out), "--warmup", str(warmup), "--steps", str(steps)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        if proc.returncode:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
        return {**json.loads(out.read_text()), "seconds": round(time.perf_counter() - t0, 1)}


def machine(rt: Runtime) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(rt.device), "precision": rt.precision, "torch": torch.__version__,
                            "cuda": torch.version.cuda, "platform": platform.platform()}
    if rt.device.type == "cuda":
        props = torch.cuda.get_device_properties(rt.device)
        info.update(gpu=props.name, capability=list(torch.cuda.get_device_capability(rt.device)),
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (16 and 32 px, width 8, batch 4): the logic only")
    ap.add_argument("--warmup", type=int, help="untimed steps per training stage (default 5; --tiny: 1)")
    ap.add_argument("--steps", type=int, help="timed steps per training stage (default 30; --tiny: 2)")
    ap.add_argument("--inception-images", type=int, default=2048)
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no stage after this many seconds")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else 1 if args.tiny else 5
    args.steps = args.steps if args.steps is not None else 2 if args.tiny else 30
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.warmup, args.steps)
        return {}
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible (torch " + torch.__version__ + "): this check times the GPU profile "
              "on a GPU; run it on a CUDA machine, or `--device cpu --tiny` to exercise its logic", file=sys.stderr)
        sys.exit(2)
    if args.device == "cpu" and not args.tiny:
        print("error: --device cpu runs only with --tiny (the GPU profile's sizes take hours on a CPU)", file=sys.stderr)
        sys.exit(2)

    params = profile(args.tiny)
    params = dataclasses.replace(params, runtime=dataclasses.replace(params.runtime, device=args.device))
    try:
        rt = setup_runtime(params.runtime)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sizes = TINY_SIZES if args.tiny else SIZES
    t_start = time.perf_counter()
    stages: list[dict[str, Any]] = []

    def stage(name: str, fn: Callable[[], dict[str, Any]], **labels: Any) -> None:
        entry = {"stage": name, **labels}
        if time.perf_counter() - t_start > args.budget_s:
            entry["skipped"] = f"the {args.budget_s:.0f} s budget was spent"
        else:
            entry.update(fn())
        stages.append(entry)
        shown = {k: v for k, v in entry.items() if k in ("img_per_s", "peak_gpu_mb", "seconds", "host_syncs",
                                                        "skipped", "error")}
        print(f"{name:15s} {' '.join(f'{k}={v}' for k, v in labels.items()):28s} {json.dumps(shown)}", flush=True)

    for size in sizes:
        for family in FAMILIES:
            stage("train", lambda f=family, s=size: train_stage(params, rt, f, s, args.warmup, args.steps),
                  family=family, image_size=size)
    if rt.device.type == "cuda":  # CUDA graphs exist on CUDA only
        compiled = Runtime(rt.device, rt.amp_dtype, rt.channels_last, compile=True, compile_mode="reduce-overhead")
        stage("train", lambda: train_stage(params, compiled, "vae", sizes[0], args.warmup, args.steps),
              family="vae", image_size=sizes[0], compile_mode="reduce-overhead")
    for size in sizes:
        stage("prior_sampling", lambda s=size: prior_stage(params, rt, s), image_size=size)
    n_inception = 2 if args.tiny else args.inception_images
    stage("inception", lambda: inception_stage(rt, sizes[0], n_inception), image_size=sizes[0])
    gpus = torch.cuda.device_count() if rt.device.type == "cuda" else 0
    if gpus >= 2:
        stage("ddp", lambda: ddp_stage(args.warmup, args.steps), family="vae,vqvae", image_size=64)
    else:
        stages.append({"stage": "ddp", "skipped": f"needs 2 CUDA devices, found {gpus}"})
    result = {"machine": machine(rt), "tiny": args.tiny, "warmup": args.warmup, "steps": args.steps,
              "total_seconds": round(time.perf_counter() - t_start, 1), "stages": stages}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_seconds']} s)")
    return result


if __name__ == "__main__":
    main()
