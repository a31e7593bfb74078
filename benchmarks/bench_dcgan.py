"""DCGAN training speed: facegen's ``DCGAN.train_step`` vs the notebook's training step.

The reference is the notebook's Part D code re-implemented faithfully: its Generator /
Discriminator module layout (sigmoid at D's end), ``weights_init``, ``nn.BCELoss``, Adam(2e-4,
β=(0.5, 0.999)), fp32, plain contiguous NCHW, two D backward passes and the ``.item()`` reads of
D(x) and D(G(z)) it does every step. Both run in the same process, interleaved round by round so
that load from other jobs on the machine hits both alike; we report the median and best round.

Run: ``python benchmarks/bench_dcgan.py`` -> prints and writes benchmarks/results/dcgan.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from facegen.config import DCGANConfig, load_params
from facegen.models import build
from facegen.models.base import Batch
from facegen.runtime import Runtime, seed_everything, setup_runtime

RESULTS = Path(__file__).parent / "results" / "dcgan.json"


# -- the notebook's DCGAN (Part D), verbatim in structure ----------------------------------------
def weights_init(m: nn.Module) -> None:
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


def notebook_step_fn(nz: int, ngf: int, ndf: int, device: torch.device) -> Callable[[torch.Tensor], None]:
    netG, netD = Generator(nz, ngf).to(device), Discriminator(ndf=ndf).to(device)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))

    def step(data: torch.Tensor) -> None:
        netD.zero_grad()
        real_cpu = data.to(device)
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), 1.0, dtype=torch.float, device=device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        output.mean().item()  # D_x
        noise = torch.randn(b_size, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(0.0)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        output.mean().item()  # D_G_z1
        optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        output.mean().item()  # D_G_z2
        optimizerG.step()

    return step


def facegen_step_fn(cfg: DCGANConfig, image_size: int, rt: Runtime) -> Callable[[torch.Tensor], None]:
    model = rt.prepare(build("dcgan", cfg, image_size)).train()
    opts = model.optimizers()
    attrs = torch.zeros(0)

    def step(data: torch.Tensor) -> None:
        # What the loop feeds: FaceSplit batches are channels_last views of NHWC uint8 data.
        x = data.to(rt.device).contiguous(memory_format=torch.channels_last) if rt.channels_last else data
        with rt.autocast():
            model.train_step(Batch(x, attrs), opts)

    return step


def images_per_second(steps: dict[str, Callable[[torch.Tensor], None]], batch: torch.Tensor, *, warmup: int,
                      rounds: int, steps_per_round: int) -> dict[str, dict[str, float]]:
    """Interleaved timing: each round times every contender once, in the same conditions.

    ``median``/``best`` are wall-clock images/s. ``per_cpu_second`` divides by this process's CPU
    time instead: on a machine shared with other jobs it is the steadier number, and with one
    thread it approximates the wall-clock rate of an idle machine.
    """
    for fn in steps.values():
        for _ in range(warmup):
            fn(batch)
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    images = steps_per_round * batch.shape[0]
    for _ in range(rounds):
        for name, fn in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps_per_round):
                fn(batch)
            wall[name].append(images / (time.perf_counter() - t0))
            cpu[name].append(images / (time.process_time() - c0))
    return {name: {"median": statistics.median(wall[name]), "best": max(wall[name]),
                   "per_cpu_second": statistics.median(cpu[name])} for name in steps}


def comparison(timing: dict[str, dict[str, float]]) -> dict[str, float]:
    """facegen / notebook throughput ratios (> 1: facegen is faster)."""
    f, n = timing["facegen"], timing["notebook"]
    return {"speedup_median": f["median"] / n["median"],
            "speedup_per_cpu_second": f["per_cpu_second"] / n["per_cpu_second"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="train steps per round and contender")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = runtime.threads from params")
    args = ap.parse_args()
    params = load_params(args.params)
    default = params.model("dcgan")
    seed_everything(params.seed)
    rt = setup_runtime(params.runtime)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = torch.rand(args.batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(params.seed))
    results: dict[str, object] = {
        "device": str(rt.device), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "precision": rt.precision, "channels_last": rt.channels_last, "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    equal = DCGANConfig(nz=100, ngf=64, ndf=64, loss="bce", spectral_norm=False, ema_decay=default.ema_decay)
    timing = images_per_second(
        {"notebook": notebook_step_fn(100, 64, 64, rt.device),
         "facegen": facegen_step_fn(equal, 64, rt)},
        batch, warmup=2, rounds=args.rounds, steps_per_round=args.steps)
    results["equal_width"] = {"nz": 100, "ngf": 64, "ndf": 64, **timing, **comparison(timing)}
    timing = images_per_second(
        {"notebook": notebook_step_fn(default.nz, default.ngf, default.ndf, rt.device),
         "facegen": facegen_step_fn(default, params.data.image_size, rt)},
        batch, warmup=2, rounds=args.rounds, steps_per_round=args.steps)
    # facegen runs its default config (loss, spectral norm, EMA); the notebook its own step at that width.
    results["default_width"] = {"nz": default.nz, "ngf": default.ngf, "ndf": default.ndf, "loss": default.loss,
                                "spectral_norm": default.spectral_norm, "ema_decay": default.ema_decay, **timing,
                                **comparison(timing)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
