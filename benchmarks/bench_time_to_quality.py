"""Time to quality: wall seconds for facegen's trainer to reach the notebook recipe's final validation quality.

What it measures. For each family (VAE, VQ-VAE, DCGAN) two training runs on the same prepared faces,
in the same process on the same CPU: the notebook's recipe and facegen's trainer. After every epoch
each run's validation quality is measured with the training clock stopped, giving two curves
``[(training seconds, quality)]``: PSNR (dB, higher is better) of reconstructions of a fixed
validation subset for the VAE and VQ-VAE; KID (lower is better) of a fixed number of samples against
as many validation faces for the DCGAN, on the attribute classifier's features when a trained
classifier exists (``models/classifier``: ``facegen.evaluation.distribution.kernel_distance``, as
``kid_facegen``), else on Inception features of a small fixed number of samples. The result is the
notebook's final quality, the wall time facegen first reaches it (null, with the best it reached,
when it never does) and the ratio of that time to the notebook's total.

Why (issue 28). At equal architecture a training step is bound by its convolutions (82-93 % of the
step), so the retired target of 1.3x the notebook's step cannot be met by step speed alone. What a
user feels is the time until the model is as good as the notebook's, which also counts sample
efficiency (learning-rate schedule, optimiser settings, EMA codebook, loss) and precision. Target:
facegen reaches the notebook's final quality in <= 1/3 of its wall time where bf16 is fast and
<= 1/2 on AVX2-only fp32 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``). Recorded here,
never asserted.

The contenders.
* The notebook: its modules, losses and optimisers as re-implemented in ``bench_training``
  (Part A VAE, Part C VQ-VAE: ``Adam(1e-3)``) and ``bench_dcgan`` (Part D: ``Adam(2e-4, (0.5, 0.999))``,
  BCE, real faces in [0, 1] as its ``ToTensor`` gives them), fp32, contiguous NCHW, batch 64 with the
  last short batch kept (``DataLoader(shuffle=True)``), ``--epochs`` (its 5) epochs. Its faces come
  from the same uint8 split as facegen's (not its per-epoch JPEG decoding, which ``bench_training``
  times separately), so only the recipes differ. Its DCGAN samples the way the notebook's cell does
  (generator in training mode, batches of 64), clamped to [0, 1], the range its D was shown.
* facegen: ``training.loop.fit`` with the family's ``params.yaml`` config (its schedule, learning
  rate, batch size, epochs, optimisers, EMA, loss), ``runtime`` settings (precision ``auto``,
  channels_last), evaluated through the family interface (``reconstruct``, ``sample``).
* ``--widths notebook`` (default): both at the notebook's architectures (VAE latent 128, widths
  32-256; VQ-VAE 128 hidden, no residual stack, K 512, D 64; DCGAN nz 100, ngf = ndf = 64).
  ``--widths default``: facegen's default config as is; the notebook's recipe at those sizes (VAE
  latent, VQ-VAE hidden / K / D, DCGAN nz / ngf / ndf; its VQ-VAE has no residual stack).

Fairness. The two runs are interleaved epoch by epoch (round r = each run's epoch r, in an order
drawn afresh per round, as ``benchmarks.timing.interleaved`` does for steps), so load on a shared
machine hits both alike. Each clock counts only its own training: the notebook's epochs, and
facegen's ``fit`` (set-up included) minus the time spent in its per-epoch callback, where the
evaluations and the notebook's epochs run. Both are evaluated in fp32 with the same code, so the
curves compare trained weights, not inference precision. Times are resolved to epochs: "first
reaches" is the first epoch-end measurement at or beyond the target.

Run: ``python -m benchmarks.bench_time_to_quality [--families vae vqvae dcgan] [--epochs 5]
[--max-images N] [--widths notebook|default]`` -> ``benchmarks/results/time_to_quality.json``
(``time_to_quality_default.json`` for ``--widths default``). Needs ``data/prepared`` (``dvc repro
prepare``). Long: the notebook's DCGAN at width 64 takes ~1.6 s per step on 2 cores, so it is not
among the benchmarks ``python -m benchmarks`` runs by default (``--only time_to_quality``).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks.bench_dcgan import notebook_dcgan
from benchmarks.bench_training import BATCH, EQUAL, NotebookRecipe, notebook_vae, notebook_vqvae
from benchmarks.timing import machine
from facegen import artifacts
from facegen.config import DCGANConfig, load_params, to_dict
from facegen.data.dataset import FaceSplit, load_split
from facegen.errors import FacegenError
from facegen.evaluation.distribution import kernel_distance
from facegen.evaluation.inception import inception_features
from facegen.models import build
from facegen.models.base import GenerativeModel
from facegen.models.checkpoint import load_attribute_classifier
from facegen.models.classifier import AttributeClassifier
from facegen.runtime import Runtime, eval_mode, seed_everything, setup_runtime
from facegen.training.loop import fit

RESULTS = Path(__file__).resolve().parent / "results" / "time_to_quality.json"
FAMILIES = ("vae", "vqvae", "dcgan")
Curve = list[tuple[float, float]]
# The fields that make a family's architecture (the rest of its config is training method).
ARCH_FIELDS = {"vae": ("latent_dim", "widths"),
               "vqvae": ("num_hiddens", "num_residual_hiddens", "num_residual_layers", "num_embeddings",
                         "embedding_dim"),
               "dcgan": ("nz", "ngf", "ndf")}
# The notebook's architectures: bench_training's architecture-equal configs; DCGANConfig's defaults are
# the notebook's nz = 100, ngf = ndf = 64.
NOTEBOOK_ARCH = {**EQUAL, "dcgan": DCGANConfig()}
# Targets of issue 28: facegen's time to the notebook's final quality over the notebook's time.
TARGET_RATIO = {"bf16": 1 / 3, "fp32": 1 / 2}
KID_SUBSETS = 50  # evaluate.kid_subsets' default; each subset holds all n (the full-set unbiased MMD²)
# Samples (and validation faces) KID is computed on in Inception's feature space (~11 img/s on 2 cores):
# evaluate.inception_samples' default.
INCEPTION_IMAGES = 256
EVAL_BATCH = 128


# -- the measure -----------------------------------------------------------------------------------
def time_to_reach(curve: Sequence[tuple[float, float]], target: float, higher_better: bool) -> float | None:
    """Seconds of the first point of ``curve`` (``(seconds, quality)`` in time order) whose quality is at
    least as good as ``target`` (``>=`` when ``higher_better``, else ``<=``); None if none is."""
    for seconds, quality in curve:
        if (quality >= target) if higher_better else (quality <= target):
            return seconds
    return None


def summarise(notebook: Curve, facegen: Curve, higher_better: bool, precision: str) -> dict[str, Any]:
    """The comparison of two curves: the notebook's final quality and wall time, facegen's time to that
    quality (or None and its best), their ratio and whether it meets the target for ``precision``."""
    target, notebook_seconds = notebook[-1][1], notebook[-1][0]
    reached = time_to_reach(facegen, target, higher_better)
    best = (max if higher_better else min)(q for _, q in facegen)
    ratio = None if reached is None else reached / notebook_seconds
    goal = TARGET_RATIO["fp32" if precision == "fp32" else "bf16"]  # CUDA's bf16 / fp16: fast half precision
    return {"notebook_final": target, "notebook_seconds": notebook_seconds, "facegen_seconds_to_notebook_final": reached,
            "facegen_best": best, "ratio": ratio, "target_ratio": goal,
            "met": None if ratio is None else ratio <= goal}


def psnr_db(x: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of reconstructions of ``x``, both (N, 3, H, W) in [0, 1], as
    ``evaluation.analyses.reconstruction`` reports ``recon_psnr``."""
    per_image_mse = ((recon.clamp(0, 1) - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * torch.log10(per_image_mse)).mean())


@torch.inference_mode()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i:i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])


class Realism:
    """KID of ``n`` samples against the first ``n`` of fixed validation faces, in one feature space for
    every run: the attribute classifier's when there is one, else Inception's (``n`` capped at
    :data:`INCEPTION_IMAGES`)."""

    def __init__(self, real: torch.Tensor, classifier: AttributeClassifier | None, seed: int) -> None:
        self.classifier, self.seed = classifier, seed
        self.space = "classifier" if classifier is not None else "inception"
        self.n = len(real) if classifier is not None else min(len(real), INCEPTION_IMAGES)
        self.real = self.features(real[:self.n])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.classifier is not None:
            return self.classifier.features(images).cpu()
        return inception_features(images, device=images.device)

    def __call__(self, fake: torch.Tensor) -> float:
        return kernel_distance(self.real, self.features(fake.clamp(0, 1)), KID_SUBSETS, self.n, self.seed)[0]


# -- the contenders --------------------------------------------------------------------------------
def notebook_sizes(family: str, cfg: Any) -> dict[str, int]:
    """The sizes of ``cfg`` (a facegen config) the notebook's model for ``family`` can take: its
    constructor's arguments (its VAE's widths are fixed; its VQ-VAE has no residual stack)."""
    if family == "vae" and tuple(cfg.widths) != EQUAL["vae"].widths:
        raise FacegenError(f"the notebook's VAE has widths {list(EQUAL['vae'].widths)}, not {list(cfg.widths)}")
    names = {"vae": ("latent_dim",), "vqvae": ("num_hiddens", "num_embeddings", "embedding_dim"),
             "dcgan": ("nz", "ngf", "ndf")}[family]
    return {k: getattr(cfg, k) for k in names}


def notebook_recipe(family: str, sizes: dict[str, int], device: torch.device) -> NotebookRecipe:
    """The notebook's recipe for ``family`` at ``sizes`` (``notebook_sizes``)."""
    build_recipe = {"vae": notebook_vae, "vqvae": notebook_vqvae, "dcgan": notebook_dcgan}[family]
    return build_recipe(device=device, **sizes)


def notebook_quality(family: str, sizes: dict[str, int], model: torch.nn.Module, val: torch.Tensor,
                     realism: Realism | None, generator: torch.Generator) -> float:
    """Validation quality of a notebook model built at ``sizes``: PSNR, or KID for the DCGAN."""
    if family == "dcgan":
        assert realism is not None
        # As the notebook's sample cell: the generator as training left it (no .eval()), batches of 64.
        z = torch.randn(realism.n, sizes["nz"], 1, 1, generator=generator).to(val.device)
        with torch.no_grad():
            return realism(torch.cat([model(chunk) for chunk in z.split(BATCH)]))
    with eval_mode(model):
        if family == "vae":
            return psnr_db(val, batched(lambda x: model(x)[0], val))
        return psnr_db(val, batched(lambda x: model(x)[1], val))


def facegen_quality(model: GenerativeModel, val: torch.Tensor, realism: Realism | None,
                    generator: torch.Generator) -> float:
    """Validation quality of a facegen model: KID of its samples with ``realism``, else PSNR."""
    with eval_mode(model):
        if realism is not None:
            return realism(torch.cat([model.sample(min(EVAL_BATCH, realism.n - i), generator).float()
                                      for i in range(0, realism.n, EVAL_BATCH)]))
        return psnr_db(val, batched(model.reconstruct, val))


def notebook_epochs(recipe: NotebookRecipe, train: FaceSplit, device: torch.device, seed: int
                    ) -> Callable[[], float]:
    """A callable that trains one notebook epoch and returns its wall seconds."""
    generator = torch.Generator().manual_seed(seed)

    def epoch() -> float:
        t0 = time.perf_counter()
        for batch in train.batches(BATCH, device, shuffle=True, generator=generator, channels_last=False):
            recipe.step(batch.images)
        return time.perf_counter() - t0

    return epoch


def race(family: str, nb_cfg: Any, fg_cfg: Any, train: FaceSplit, val: FaceSplit, rt: Runtime, *, epochs: int,
         seed: int, classifier: AttributeClassifier | None) -> dict[str, Any]:
    """Train the notebook's recipe and facegen's trainer for ``family``, interleaved epoch by epoch;
    return both curves and their summary (``summarise``)."""
    val_x = val.batch(torch.arange(len(val)), rt.device, channels_last=False).images
    realism = Realism(val_x, classifier, seed) if family == "dcgan" else None
    seed_everything(seed)
    sizes = notebook_sizes(family, nb_cfg)
    recipe = notebook_recipe(family, sizes, rt.device)
    model = rt.prepare(build(family, fg_cfg, train.images.shape[1]))
    tcfg = fg_cfg.train
    # Round r holds epoch r of each run, in a per-round random order; fit runs facegen's epochs, so the
    # notebook's run in between them, from fit's per-epoch callback.
    order = random.Random(seed)
    events = [name for r in range(max(epochs, tcfg.epochs)) for name in order.sample(("notebook", "facegen"), 2)
              if r < (epochs if name == "notebook" else tcfg.epochs)]
    curves: dict[str, Curve] = {"notebook": [], "facegen": []}
    clock = {"notebook": 0.0, "facegen": 0.0, "resumed": 0.0}
    notebook_epoch = notebook_epochs(recipe, train, rt.device, seed)

    def quality(name: str) -> float:
        generator = torch.Generator().manual_seed(seed)  # the same z for every evaluation of both runs
        if name == "notebook":
            return notebook_quality(family, sizes, recipe.model, val_x, realism, generator)
        return facegen_quality(model, val_x, realism, generator)

    def until_facegen() -> None:
        """Run the notebook's epochs up to facegen's next one (which fit then runs)."""
        while events and events[0] == "notebook":
            events.pop(0)
            clock["notebook"] += notebook_epoch()
            curves["notebook"].append((clock["notebook"], quality("notebook")))
        if events:
            events.pop(0)

    def on_epoch(epoch: int, row: dict[str, float], monitor: dict[str, torch.Tensor]) -> None:
        clock["facegen"] += time.perf_counter() - clock["resumed"]
        curves["facegen"].append((clock["facegen"], quality("facegen")))
        until_facegen()
        clock["resumed"] = time.perf_counter()

    until_facegen()
    clock["resumed"] = time.perf_counter()
    fit(model, train, None, tcfg, rt, torch.Generator().manual_seed(seed), on_epoch=on_epoch,
        params_key=f"models.{family}.train")
    until_facegen()  # the notebook's epochs beyond facegen's
    higher_better = family != "dcgan"
    return {"metric": "kid" if family == "dcgan" else "psnr_db", "higher_better": higher_better,
            **({"kid_features": realism.space, "kid_images": realism.n} if realism is not None else {}),
            "notebook": {"architecture": sizes, "epochs": epochs, "batch_size": BATCH,
                         "precision": "fp32", "curve": curves["notebook"]},
            "facegen": {"config": to_dict(fg_cfg), "precision": rt.precision, "curve": curves["facegen"]},
            **summarise(curves["notebook"], curves["facegen"], higher_better, rt.precision)}


def arch(family: str, cfg: Any) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in ARCH_FIELDS[family]}


def configs(family: str, default: Any, widths: str) -> tuple[Any, Any]:
    """(the sizes the notebook's recipe is built at, facegen's config) for ``--widths``."""
    if widths == "default":
        return default, default
    return NOTEBOOK_ARCH[family], dataclasses.replace(default, **arch(family, NOTEBOOK_ARCH[family]))


def head(split: FaceSplit, n: int) -> FaceSplit:
    """The first ``n`` faces of ``split`` (all when ``n`` is 0)."""
    if not n or n >= len(split):
        return split
    factors = split.factors[:n] if split.factors is not None else None
    return dataclasses.replace(split, images=split.images[:n], attrs=split.attrs[:n], factors=factors)


def run(families: Sequence[str], params: Any, train: FaceSplit, val: FaceSplit, rt: Runtime, *, widths: str,
        epochs: int, facegen_epochs: int | None, classifier: AttributeClassifier | None, out: Path,
        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Race every family in ``families``; write the JSON to ``out`` after each one (so a long run keeps
    what it measured) and return it. ``overrides`` (family -> config) replace the configs ``--widths``
    picks, for both contenders (tests use tiny ones); ``facegen_epochs`` replaces facegen's epochs."""
    results: dict[str, Any] = {"machine": machine(), "torch": torch.__version__, "device": str(rt.device),
                               "threads": torch.get_num_threads(), "precision": rt.precision, "widths": widths,
                               "seed": params.seed, "train_images": len(train), "val_images": len(val)}
    for family in families:
        nb_cfg, fg_cfg = configs(family, params.model(family), widths)
        if overrides and family in overrides:
            nb_cfg = fg_cfg = overrides[family]
        if facegen_epochs:
            fg_cfg = dataclasses.replace(fg_cfg, train=dataclasses.replace(fg_cfg.train, epochs=facegen_epochs))
        results[family] = race(family, nb_cfg, fg_cfg, train, val, rt, epochs=epochs, seed=params.seed,
                               classifier=classifier)
        entry = results[family]
        print(f"{family}: notebook {entry['notebook_final']:.4g} in {entry['notebook_seconds']:.1f} s; facegen "
              f"reached it in {entry['facegen_seconds_to_notebook_final']} s (best {entry['facegen_best']:.4g}), "
              f"ratio {entry['ratio']}", flush=True)
        results["machine_after"] = machine()
        artifacts.write_json(results, out)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--prepared", type=Path, default=artifacts.PREPARED, help="prepare's output folder")
    ap.add_argument("--models-dir", type=Path, default=artifacts.MODELS,
                    help="where a trained attribute classifier is looked for (the DCGAN's KID features)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--epochs", type=int, default=5, help="the notebook's epochs (its recipe: 5)")
    ap.add_argument("--facegen-epochs", type=int, default=None, help="facegen's epochs (default: params.yaml)")
    ap.add_argument("--max-images", type=int, default=0, help="train on the first N training faces (0: all)")
    ap.add_argument("--eval-images", type=int, default=500, help="validation faces scored (and DCGAN samples)")
    ap.add_argument("--widths", choices=("notebook", "default"), default="notebook")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: runtime.threads)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"JSON path (default {RESULTS.name}, or time_to_quality_default.json with --widths default)")
    args = ap.parse_args()
    out = args.out or (RESULTS if args.widths == "notebook" else RESULTS.with_name("time_to_quality_default.json"))
    try:
        params = load_params(args.params)
        if args.threads is not None:
            params = dataclasses.replace(params, runtime=dataclasses.replace(params.runtime, threads=args.threads))
        rt = setup_runtime(params.runtime)
        attrs = params.data.attributes
        train = head(load_split(args.prepared, "train", attrs), args.max_images)
        val = head(load_split(args.prepared, "val", attrs), args.eval_images)
        classifier = load_attribute_classifier(rt.device, args.models_dir) if "dcgan" in args.families else None
        run(args.families, params, train, val, rt, widths=args.widths, epochs=args.epochs,
            facegen_epochs=args.facegen_epochs, classifier=classifier, out=out)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
