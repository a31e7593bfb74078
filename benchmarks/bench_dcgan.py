"""DCGAN training speed: facegen's ``DCGAN.train_step`` vs the notebook's training step.

The reference is the notebook's Part D code re-implemented faithfully: its Generator /
Discriminator module layout (sigmoid at D's end), ``weights_init``, ``nn.BCELoss``, Adam(2e-4,
β=(0.5, 0.999)), fp32, plain contiguous NCHW, two D backward passes and the ``.item()`` reads of
D(x) and D(G(z)) it does every step. Both run in the same process, timed by the shared
``benchmarks.timing.interleaved`` (rounds in shuffled order; medians, best round, CPU-time rates
and the median of per-round ratios to the notebook).

Run: ``python benchmarks/bench_dcgan.py`` -> prints and writes benchmarks/results/dcgan.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmarks.bench_training import NotebookRecipe
from benchmarks.timing import fp32_peak_flops, gemm_share, interleaved, machine, step_flops
from facegen.config import DCGANConfig, load_params
from facegen.models import build
from facegen.data.dataset import Batch
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


def notebook_dcgan(nz: int, ngf: int, ndf: int, device: torch.device) -> NotebookRecipe:
    """The notebook's Part D training step; the recipe's model is its generator."""
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

    return NotebookRecipe(netG, step)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="train steps per round and contender")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = runtime.threads from params")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    params = load_params(args.params)
    default = params.model("dcgan")
    seed_everything(params.seed)
    rt = setup_runtime(params.runtime)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = torch.rand(args.batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(params.seed))
    results: dict[str, object] = {
        "machine": machine(), "device": str(rt.device), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "precision": rt.precision, "channels_last": rt.channels_last, "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    equal = DCGANConfig(nz=100, ngf=64, ndf=64, loss="bce", spectral_norm=False, ema_decay=default.ema_decay)
    def timed(notebook: Callable[[torch.Tensor], None], facegen: Callable[[torch.Tensor], None]
              ) -> dict[str, dict[str, float]]:
        return interleaved({"notebook": lambda: notebook(batch), "facegen": lambda: facegen(batch)},
                           args.batch_size, warmup=2, rounds=args.rounds, steps=args.steps, baseline="notebook")

    notebook = notebook_dcgan(100, 64, 64, rt.device).step
    facegen = facegen_step_fn(equal, 64, rt)
    timing = timed(notebook, facegen)
    # FLOPs of the (equal) architecture, counted on the notebook's step: D twice on real+fake, G once.
    flops = step_flops(lambda: notebook(batch)) / args.batch_size
    # As in bench_training: the notebook's conv + matmul share, and the bound from facegen's own step
    # (its speed-up if all but its convolutions and matmuls took no time).
    share = gemm_share(lambda: notebook(batch))
    shipped_share = gemm_share(lambda: facegen(batch))
    peak = fp32_peak_flops(torch.get_num_threads())
    for t in timing.values():
        t["fraction_of_fp32_peak"] = t["img_per_s_median"] * flops / peak if peak else None
    results["equal_width"] = {"nz": 100, "ngf": 64, "ndf": 64, "gflop_per_image_step": flops / 1e9,
                              "fp32_peak_gflops": peak / 1e9, "notebook_gemm_share": share,
                              "shipped_gemm_share": shipped_share,
                              "equal_architecture_ceiling": timing["facegen"]["speedup_median"] / shipped_share,
                              **timing}
    timing = timed(notebook_dcgan(default.nz, default.ngf, default.ndf, rt.device).step,
                   facegen_step_fn(default, params.data.image_size, rt))
    # facegen runs its default config (loss, spectral norm, EMA); the notebook its own step at that width.
    results["default_width"] = {"nz": default.nz, "ngf": default.ngf, "ndf": default.ndf, "loss": default.loss,
                                "spectral_norm": default.spectral_norm, "ema_decay": default.ema_decay, **timing}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
