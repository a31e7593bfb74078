"""Training speed: facegen's VAE and VQ-VAE steps vs the notebook's, same process, same batches.

The references are the notebook's Part A (VAE) and Part C (VQ-VAE) training code re-implemented
faithfully: its modules (layer for layer), its losses (summed MSE + KL; mean MSE + the one-hot
``VectorQuantizer`` loss), ``Adam(lr=1e-3)``, fp32, contiguous NCHW, batch 64, and the ``.item()``
reads it does every step. facegen runs the architecture-equal config through what its training
loop runs: ``FaceSplit.batch`` (uint8 NHWC -> float channels_last), ``Runtime.autocast`` and the
family's ``train_step`` with ``Runtime.optimizers``. Contenders are interleaved round by round
(benchmarks/timing.py) because the machine is shared.

facegen is measured as a ladder, each rung adding one optimisation to the previous, so the JSON
says what each one gave: fp32 NCHW + default Adam -> channels_last -> fused Adam (what ships)
-> ``torch.compile`` of the submodules (``--compile``; ``runtime.compile`` in params).

Data loading is compared separately, because the notebook decodes JPEGs every epoch: its
``DataLoader`` (PIL open, ``Resize((64, 64))``, ``ToTensor``, ``num_workers=0``) over synthetic
CelebA-format JPEGs vs ``FaceSplit.batches`` over the same images after ``prepare``. Loading and
training run one after the other in both loops, so an epoch's img/s is 1 / (1/train + 1/load);
``python -m benchmarks --table`` derives it (benchmarks/timing.py::end_to_end).

Run: ``python -m benchmarks.bench_training [--compile]`` -> benchmarks/results/training.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmarks.timing import fp32_peak_flops, gemm_share, interleaved, machine, step_flops
from facegen.config import DataConfig, SyntheticConfig, VAEConfig, VQVAEConfig, load_params
from facegen.data.dataset import FaceSplit, load_split
from facegen.data.prepare import prepare
from facegen.models import build
from facegen.runtime import Runtime, seed_everything, setup_runtime

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
BATCH, SIZE = 64, 64


class NotebookRecipe(NamedTuple):
    """A notebook training recipe: ``step(data)`` takes one optimiser step on a batch (N, 3, 64, 64) in
    [0, 1], as the notebook's loop does; ``model`` is what it then reconstructs or samples with."""

    model: nn.Module
    step: Callable[[torch.Tensor], None]


# -- notebook Part A: the VAE -------------------------------------------------------------------
class NotebookVAE(nn.Module):
    def __init__(self, latent_dim: int = 128) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 128, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 256, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, inplace=True))
        self.fc_mu = nn.Linear(256 * 4 * 4, latent_dim)
        self.fc_logvar = nn.Linear(256 * 4 * 4, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, 256 * 4 * 4)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(256, 128, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 3, kernel_size=4, stride=2, padding=1), nn.Sigmoid())

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if self.training:
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std
        return mu

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(x)
        x = x.view(x.size(0), -1)
        return self.fc_mu(x), self.fc_logvar(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder_input(z)
        x = x.view(x.size(0), 256, 4, 4)
        return self.decoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def notebook_vae_loss(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mse = F.mse_loss(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return mse + kld


def notebook_vae(device: torch.device, latent_dim: int = 128) -> NotebookRecipe:
    model = NotebookVAE(latent_dim=latent_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    totals = {"loss": 0.0}

    def step(data: torch.Tensor) -> None:
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = notebook_vae_loss(recon_batch, data, mu, logvar)
        loss.backward()
        totals["loss"] += loss.item()
        optimizer.step()

    return NotebookRecipe(model, step)


# -- notebook Part C: the VQ-VAE ----------------------------------------------------------------
class NotebookVectorQuantizer(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, commitment_cost: float = 0.25) -> None:
        super().__init__()
        self._embedding_dim = embedding_dim
        self._num_embeddings = num_embeddings
        self._commitment_cost = commitment_cost
        self._embedding = nn.Embedding(self._num_embeddings, self._embedding_dim)
        self._embedding.weight.data.uniform_(-1 / self._num_embeddings, 1 / self._num_embeddings)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = inputs.permute(0, 2, 3, 1).contiguous()
        input_shape = inputs.shape
        flat_input = inputs.view(-1, self._embedding_dim)
        distances = (torch.sum(flat_input ** 2, dim=1, keepdim=True) + torch.sum(self._embedding.weight ** 2, dim=1)
                     - 2 * torch.matmul(flat_input, self._embedding.weight.t()))
        encoding_indices = torch.argmin(distances, dim=1).unsqueeze(1)
        encodings = torch.zeros(encoding_indices.shape[0], self._num_embeddings, device=inputs.device)
        encodings.scatter_(1, encoding_indices, 1)
        quantized = torch.matmul(encodings, self._embedding.weight).view(input_shape)
        e_latent_loss = F.mse_loss(quantized.detach(), inputs)
        q_latent_loss = F.mse_loss(quantized, inputs.detach())
        loss = q_latent_loss + self._commitment_cost * e_latent_loss
        quantized = inputs + (quantized - inputs).detach()
        avg_probs = torch.mean(encodings, dim=0)
        perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))
        return loss, quantized.permute(0, 3, 1, 2).contiguous(), perplexity, encoding_indices


class NotebookVQVAE(nn.Module):
    def __init__(self, num_hiddens: int, num_residual_hiddens: int, num_embeddings: int, embedding_dim: int,
                 commitment_cost: float = 0.25) -> None:
        super().__init__()
        self._encoder = nn.Sequential(
            nn.Conv2d(3, num_hiddens // 2, kernel_size=4, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(num_hiddens // 2, num_hiddens, kernel_size=4, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(num_hiddens, num_hiddens, kernel_size=3, stride=1, padding=1), nn.ReLU(True),
            nn.Conv2d(num_hiddens, embedding_dim, kernel_size=1, stride=1))
        self._pre_vq_conv = nn.Conv2d(embedding_dim, embedding_dim, 1)
        self._vq_vae = NotebookVectorQuantizer(num_embeddings, embedding_dim, commitment_cost)
        self._decoder = nn.Sequential(
            nn.Conv2d(embedding_dim, num_hiddens, kernel_size=3, stride=1, padding=1), nn.ReLU(True),
            nn.ConvTranspose2d(num_hiddens, num_hiddens // 2, kernel_size=4, stride=2, padding=1), nn.ReLU(True),
            nn.ConvTranspose2d(num_hiddens // 2, 3, kernel_size=4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self._encoder(x)
        z = self._pre_vq_conv(z)
        loss, quantized, perplexity, _ = self._vq_vae(z)
        return loss, self._decoder(quantized), perplexity


def notebook_vqvae(device: torch.device, num_hiddens: int = 128, num_embeddings: int = 512,
                   embedding_dim: int = 64) -> NotebookRecipe:
    model = NotebookVQVAE(num_hiddens=num_hiddens, num_residual_hiddens=32, num_embeddings=num_embeddings,
                          embedding_dim=embedding_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = {"loss": 0.0, "recon": 0.0, "vq": 0.0}

    def step(data: torch.Tensor) -> None:
        data = data.to(device)
        optimizer.zero_grad()
        vq_loss, data_recon, perplexity = model(data)
        recon_loss = F.mse_loss(data_recon, data)
        loss = recon_loss + vq_loss
        loss.backward()
        optimizer.step()
        totals["loss"] += loss.item()
        totals["recon"] += recon_loss.item()
        totals["vq"] += vq_loss.item()

    return NotebookRecipe(model, step)


# -- facegen ------------------------------------------------------------------------------------
# Architecture-equal configs. The notebook's VQ-VAE has no residual stack (it declares
# num_residual_hiddens but never builds one), a codebook trained by its loss (no EMA, no restarts)
# and two back-to-back 1x1 convs before quantising, which facegen folds into one.
EQUAL = {
    "vae": VAEConfig(latent_dim=128, widths=(32, 64, 128, 256), beta=1.0),
    "vqvae": VQVAEConfig(num_hiddens=128, num_residual_hiddens=32, num_residual_layers=0, num_embeddings=512,
                         embedding_dim=64, commitment_cost=0.25, ema=False, restart_dead_codes=False),
}
NOTEBOOK = {"vae": notebook_vae, "vqvae": notebook_vqvae}


def facegen_step(family: str, rt: Runtime, split: FaceSplit, *, fused: bool) -> Callable[[], None]:
    """One training step exactly as ``training.loop.fit`` takes it, on a fresh random batch."""
    model = rt.prepare(build(family, EQUAL[family], SIZE)).train()
    opts = rt.optimizers(model) if fused else model.optimizers()
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = split.batch(torch.randint(len(split), (BATCH,), generator=generator), rt.device, rt.channels_last)
        with rt.autocast():
            model.train_step(batch, opts)

    return step


def ladder(rt: Runtime, with_compile: bool) -> dict[str, tuple[Runtime, bool]]:
    """facegen contenders, each adding one optimisation: name -> (runtime, fused optimiser)."""
    plain = dataclasses.replace(rt, amp_dtype=None, channels_last=False, compile=False)
    rungs = {"facegen fp32 NCHW": (plain, False),
             "+ channels_last": (dataclasses.replace(plain, channels_last=True), False),
             "+ fused Adam": (dataclasses.replace(plain, channels_last=True), True)}
    if rt.amp_dtype is not None:  # what precision: auto picked on this machine (bf16 CPUs, CUDA)
        rungs["+ bf16 autocast"] = (dataclasses.replace(plain, amp_dtype=rt.amp_dtype, channels_last=True), True)
    if with_compile:  # fp32 (the AVX2 CPUs' path), then with the precision auto picked, if that differs
        rungs["+ torch.compile fp32"] = (dataclasses.replace(plain, channels_last=True, compile=True), True)
        if rt.amp_dtype is not None:
            rungs["+ bf16 + torch.compile"] = (dataclasses.replace(rt, channels_last=True, compile=True), True)
    return rungs


def bench_family(family: str, rt: Runtime, split: FaceSplit, args: argparse.Namespace) -> dict[str, object]:
    reference_batch = split.images[:BATCH].permute(0, 3, 1, 2).float().div(255).contiguous()
    notebook = NOTEBOOK[family](rt.device).step
    contenders: dict[str, Callable[[], None]] = {"notebook": lambda: notebook(reference_batch)}
    warmup_s = {}
    for name, (runtime, fused) in ladder(rt, args.compile).items():
        step = facegen_step(family, runtime, split, fused=fused)
        t0 = time.perf_counter()
        step()  # first call: allocations, oneDNN primitive creation, compilation
        warmup_s[name] = round(time.perf_counter() - t0, 2)
        contenders[name] = step
    timing = interleaved(contenders, BATCH, warmup=args.warmup, rounds=args.rounds, steps=args.steps,
                         baseline="notebook")
    # Same FLOPs for every contender (equal architecture): count the notebook's step once.
    flops = step_flops(lambda: notebook(reference_batch)) / BATCH
    share = gemm_share(lambda: notebook(reference_batch))
    peak = fp32_peak_flops(torch.get_num_threads())
    for name, t in timing.items():
        t["fraction_of_fp32_peak"] = t["img_per_s_median"] * flops / peak if peak else None
    # What the pipeline runs with these params: the last rung that the runtime settings switch on.
    if rt.compile and args.compile:
        shipped = "+ bf16 + torch.compile" if rt.amp_dtype is not None else "+ torch.compile fp32"
    else:
        shipped = "+ bf16 autocast" if rt.amp_dtype is not None else "+ fused Adam"
    fp32 = "+ torch.compile fp32" if rt.compile and args.compile else "+ fused Adam"
    # Convolutions and matmuls as they run: layout (channels_last) changes their own speed too, so the
    # bound that counts is the shipped step's: its speed-up if everything else in it took no time.
    shipped_share = gemm_share(contenders[shipped])
    return {"config": dataclasses.asdict(EQUAL[family]), "first_step_s": warmup_s, "contenders": timing,
            "gflop_per_image_step": flops / 1e9, "fp32_peak_gflops": peak / 1e9,
            "notebook_gemm_share": share, "shipped_gemm_share": shipped_share,
            "equal_architecture_ceiling": timing[shipped]["speedup_median"] / shipped_share,
            "shipped": shipped, "speedup_vs_notebook": timing[shipped]["speedup_median"],
            "fp32_shipped": fp32, "fp32_speedup_vs_notebook": timing[fp32]["speedup_median"]}


# -- data loading -------------------------------------------------------------------------------
class NotebookJpegDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CelebA`` + ``Resize((64, 64))`` + ``ToTensor`` do per item.

    Written out with PIL (torchvision is not installed: see reporting/grids.py): torchvision's
    Resize on a PIL image is ``img.resize((w, h), BILINEAR)`` and ToTensor is HWC uint8 -> CHW / 255.
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[i]) as im:
            pixels = np.array(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255), 0


def bench_data(rt: Runtime, images: int, rounds: int, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        cfg = DataConfig(root=f"{tmp}/synthetic", image_size=SIZE, workers=1,
                         synthetic=SyntheticConfig(num_images=images))
        prepare(cfg, seed, Path(tmp) / "prepared")
        split = load_split(Path(tmp) / "prepared", "train", cfg.attributes)
        loader = torch.utils.data.DataLoader(
            NotebookJpegDataset(sorted(Path(cfg.root, "img_align_celeba").glob("*.jpg"))), batch_size=BATCH,
            shuffle=True)
        generator = torch.Generator().manual_seed(seed)

        def notebook_epoch() -> None:
            for data, _ in loader:
                data.to(rt.device)

        def facegen_epoch() -> None:
            for _ in split.batches(BATCH, rt.device, shuffle=True, generator=generator,
                                   channels_last=rt.channels_last):
                pass

        timing = interleaved({"notebook": notebook_epoch, "facegen": facegen_epoch}, 1, warmup=1, rounds=rounds,
                             steps=1, baseline="notebook")
        return {"notebook_img_per_s": timing["notebook"]["img_per_s_median"] * len(loader.dataset),
                "facegen_img_per_s": timing["facegen"]["img_per_s_median"] * len(split),
                "notebook_images": len(loader.dataset), "facegen_images": len(split)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--families", nargs="+", default=list(EQUAL), choices=list(EQUAL))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="train steps per round and contender")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="add a torch.compile rung (compiling takes minutes)")
    ap.add_argument("--data-images", type=int, default=640, help="JPEGs for the data-loading comparison (0: skip)")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads (default: runtime.threads); 1 makes CPU-time ratios immune to load")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    params = load_params(args.params)
    if args.threads is not None:
        params = dataclasses.replace(params, runtime=dataclasses.replace(params.runtime, threads=args.threads))
    rt = setup_runtime(params.runtime)
    seed_everything(params.seed)
    split = FaceSplit(torch.randint(0, 256, (512, SIZE, SIZE, 3), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(params.seed)),
                      torch.zeros(512, len(params.data.attributes)), params.data.attributes)
    results: dict[str, object] = {"machine": machine(), "device": str(rt.device), "threads": torch.get_num_threads(),
                                  "precision": rt.precision, "batch_size": BATCH, "rounds": args.rounds,
                                  "steps_per_round": args.steps}
    for family in args.families:
        results[family] = bench_family(family, rt, split, args)
        print(json.dumps({family: results[family]}, indent=2), flush=True)
    if args.data_images:
        results["data_loading"] = bench_data(rt, args.data_images, args.rounds, params.seed)
    results["machine_after"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
