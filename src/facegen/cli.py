"""The ``facegen`` command: use the trained models on your own photos without writing code.

    facegen sample --family vqvae -n 64 --out grid.png [--attr Smiling=1]
    facegen edit photo.jpg --family vae --attr Smiling --strength 2 --out edited.png
    facegen interpolate a.jpg b.jpg --family beta_vae --steps 10 --out strip.png [--slerp]
    facegen info

Models come from the pipeline's outputs (``models/<family>/model.pt``) or from the ``model/``
artifact of an MLflow training run (``--run-id``). What a model can do is asked through the family
interface and its declared capabilities, and attribute directions are found the way evaluation
finds them for that family, so this module never branches on a family name. Photos go through the
prepare stage's own decode/resize/crop (``prepare.load_image``): a model sees your photo exactly as
it saw its training faces. User mistakes (a missing file, an untrained family, an unknown
attribute...) are one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from facegen import paths, tracking
from facegen.config import EvaluateConfig, RuntimeConfig
from facegen.data.dataset import FaceSplit, load_split
from facegen.data.prepare import load_image
from facegen.errors import DataError, FacegenError
from facegen.latent.attributes import edit, encode_split, mean_difference_vectors
from facegen.latent.interpolation import lerp, slerp
from facegen.models import FAMILIES
from facegen.models.base import EDIT, ENCODE, GenerativeModel
from facegen.reporting.grids import save_grid, save_labelled_rows
from facegen.runtime import Runtime, eval_mode, setup_runtime
from facegen.training.checkpoint import load_model

# Defaults shared with the evaluate stage, so the CLI edits and samples like the report does.
EVAL = EvaluateConfig()
MODEL_ARTIFACT = "model/model.pt"  # where train_family logs the model file inside its MLflow run
TABLE_COLUMNS = ("image_id", "split")  # attrs.csv columns that are not attributes
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")  # formats both PIL grids and matplotlib figures write
# What Pillow raises for a file that is not a readable image (truncated, wrong format, bomb).
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


# ------------------------------------------------------------------------------------------------
# Loading: runtime, model, photos
# ------------------------------------------------------------------------------------------------
def make_runtime(device: str) -> Runtime:
    if device == "cuda" and not torch.cuda.is_available():
        raise FacegenError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return setup_runtime(RuntimeConfig(device=device))


def model_path(models_dir: Path, name: str) -> Path:
    """``<models_dir>/<name>/model.pt``: the pipeline's layout (paths.model_file) under another root."""
    return models_dir / paths.model_file(name).relative_to(paths.MODELS)


def load_family(args: argparse.Namespace, rt: Runtime) -> GenerativeModel:
    """The model named by ``--family`` (pipeline output) or ``--run-id`` (MLflow), with its companions."""
    if args.run_id:
        with tempfile.TemporaryDirectory(prefix="facegen-") as tmp:
            model = load_model(tracking.download_artifact(args.run_id, MODEL_ARTIFACT, Path(tmp)), rt.device)
        if args.family and args.family != model.family:
            raise FacegenError(f"MLflow run {args.run_id} holds a {model.family} model, not {args.family}")
    else:
        if not args.family:
            raise FacegenError(f"say which model to use: --family ({', '.join(FAMILIES)}) or --run-id RUN_ID")
        if args.family not in FAMILIES:
            raise FacegenError(f"unknown family {args.family!r}; known: {', '.join(FAMILIES)}")
        path = model_path(args.models_dir, args.family)
        if not path.is_file():
            raise FacegenError(f"{args.family} is not trained yet ({path} is missing): "
                               f"run `dvc repro train@{args.family}`")
        model = load_model(path, rt.device)
    model.load_companions(args.models_dir)
    return model


def require(model: GenerativeModel, capability: str, action: str) -> None:
    """A one-line refusal naming the families that declare ``capability``."""
    if capability not in model.capabilities:
        able = [name for name, cls in FAMILIES.items() if capability in cls.capabilities]
        raise FacegenError(f"{model.family} cannot {action} (it declares no '{capability}' capability); "
                           f"families that can: {', '.join(able) or 'none'}")


def load_photos(files: Sequence[Path], size: int, device: torch.device) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1], decoded, resized and centre-cropped exactly as prepare does."""
    arrays = []
    for file in files:
        try:
            arrays.append(load_image(file, size))
        except UNREADABLE as err:
            raise FacegenError(f"{file} is not an image Pillow can read ({type(err).__name__})") from None
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255).to(device)


def training_table(prepared: Path) -> pd.DataFrame:
    """The prepared training split's attribute table (columns: image_id, split, attributes...)."""
    csv = prepared / "attrs.csv"
    if not csv.is_file():
        raise DataError(f"{csv} is missing: the training faces' attributes are needed here; "
                        "run `dvc repro prepare` or point --prepared-dir at them")
    table = pd.read_csv(csv)
    return table[table["split"] == "train"]


def check_attribute(name: str, known: Sequence[str], source: str) -> None:
    if name not in known:
        raise FacegenError(f"attribute {name!r} is unknown to {source}; known: {', '.join(known)}")


# ------------------------------------------------------------------------------------------------
# Progress and model calls
# ------------------------------------------------------------------------------------------------
@contextmanager
def step(desc: str) -> Iterator[None]:
    """A one-step progress line for slow work with no finer hook (GAN inversion, boundary fits)."""
    with tqdm(total=1, desc=desc, bar_format="{desc}... {elapsed}", disable=None, leave=False) as bar:
        yield
        bar.update(1)


def encode_photos(model: GenerativeModel, x: torch.Tensor, rt: Runtime) -> torch.Tensor:
    with step(f"encoding {len(x)} image(s) by {model.reconstruction_method}"), eval_mode(model), rt.autocast():
        return model.encode(x).float()


def decode(model: GenerativeModel, z: torch.Tensor, rt: Runtime) -> torch.Tensor:
    with eval_mode(model), rt.autocast():
        return model.decode(z).float().clamp(0, 1).cpu()


def encode_training_faces(model: GenerativeModel, split: FaceSplit, batch_size: int, rt: Runtime) -> torch.Tensor:
    """encode_split in chunks, so the progress bar moves while the whole train split is encoded."""
    chunk = batch_size * 8
    codes = []
    with tqdm(total=len(split), desc="encoding training faces", unit="img", disable=None, leave=False) as bar:
        for start in range(0, len(split), chunk):
            part = FaceSplit(split.images[start:start + chunk], split.attrs[start:start + chunk], split.attr_names)
            codes.append(encode_split(model, part, batch_size, rt))
            bar.update(len(part))
    return torch.cat(codes)


def attribute_direction(model: GenerativeModel, attr: str, args: argparse.Namespace,
                        rt: Runtime) -> tuple[torch.Tensor, str, float]:
    """``attr``'s latent direction as evaluation finds it for this family, its unit, and a default strength."""
    if model.edit_directions == "classifier_boundary":
        from facegen.latent.boundaries import classifier_boundaries  # GAN-only dependency: load on demand
        from facegen.models.classifier import load_classifier

        path = model_path(args.models_dir, "classifier")
        if not path.is_file():
            raise FacegenError(f"{model.family} edits along attribute-classifier boundaries but {path} is "
                               "missing: run `dvc repro train_classifier`")
        classifier = load_classifier(path, rt.device)
        check_attribute(attr, classifier.attributes, f"the attribute classifier ({path})")
        with step(f"fitting the {attr} boundary on {args.boundary_samples} samples"):
            directions = classifier_boundaries(model, classifier, (attr,), args.boundary_samples,
                                               torch.Generator().manual_seed(args.seed), args.batch_size)
        unit, strength = "steps along the unit boundary normal", EVAL.boundary_edit_strength
    else:
        table = training_table(args.prepared_dir)
        check_attribute(attr, [c for c in table.columns if c not in TABLE_COLUMNS],
                        f"the prepared data ({args.prepared_dir / 'attrs.csv'})")
        split = load_split(args.prepared_dir, "train", (attr,))
        directions = mean_difference_vectors(encode_training_faces(model, split, args.batch_size, rt),
                                             split.attrs, (attr,))
        unit, strength = "multiples of the mean-difference vector", EVAL.edit_strength
    if attr not in directions:
        raise FacegenError(f"no {attr} direction: it needs faces both with and without {attr}")
    return directions[attr], unit, strength


def sample_conditions(model: GenerativeModel, wanted: dict[str, float], args: argparse.Namespace) -> torch.Tensor:
    """(n, A) attribute rows for a conditional sampler: the ``--attr`` values, the rest as in real faces.

    A model whose ``sample`` uses ``attrs`` says so with ``sample_attributes`` (the names, in column
    order; empty: it ignores them). Unnamed attributes are copied from randomly drawn
    training faces, so asking for Smiling=1 keeps every other attribute at its natural frequency
    instead of forcing it off.
    """
    names = model.sample_attributes
    if not names:
        raise FacegenError(f"{model.family} samples cannot be conditioned on attributes (its sampler takes "
                           "none); conditional sampling needs a vqvae with a conditional prior (prior.conditional)")
    for name in wanted:
        check_attribute(name, names, f"the {model.family} sampler")
    rows = training_table(args.prepared_dir).sample(args.n, replace=True, random_state=args.seed)
    attrs = torch.from_numpy(rows[list(names)].to_numpy(np.float32))
    for name, value in wanted.items():
        attrs[:, names.index(name)] = value
    return attrs


# ------------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> None:
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    attrs = sample_conditions(model, dict(args.attr), args) if args.attr else None
    generator = torch.Generator().manual_seed(args.seed)
    images = []
    with tqdm(total=args.n, desc=f"sampling {model.family}", unit="img", disable=None) as bar, \
            eval_mode(model), rt.autocast():
        for start in range(0, args.n, args.batch_size):
            k = min(args.batch_size, args.n - start)
            cond = None if attrs is None else attrs[start:start + k].to(rt.device)
            images.append(model.sample(k, generator, cond).float().cpu())
            bar.update(k)
    save_grid(torch.cat(images), args.out, nrow=args.nrow or math.ceil(math.sqrt(args.n)))
    print(f"wrote {args.n} {model.family} samples to {args.out}")


def cmd_edit(args: argparse.Namespace) -> None:
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    require(model, ENCODE, "encode a photo")
    require(model, EDIT, "edit attributes")
    x = load_photos(args.photos, model.image_size, rt.device)
    direction, unit, default_strength = attribute_direction(model, args.attr, args, rt)
    strength = default_strength if args.strength is None else args.strength
    scales = tuple(torch.linspace(0, strength, args.steps).tolist())
    z = encode_photos(model, x, rt)
    shape = z.shape[1:]
    edited = decode(model, edit(z.flatten(1), direction, scales).view(-1, *shape), rt)
    rows = [torch.cat([x[i:i + 1].cpu(), edited[i::len(x)]]) for i in range(len(x))]  # edit() is scale-major
    save_labelled_rows(rows, args.out, row_labels=[p.stem[:14] for p in args.photos],
                       col_labels=["input", *(f"{s:+.2g}" for s in scales)],
                       title=f"{model.family}: {args.attr} ({unit})")
    print(f"wrote {args.attr} edits of {len(x)} photo(s) at strengths {', '.join(f'{s:.2g}' for s in scales)} "
          f"to {args.out}")


def cmd_interpolate(args: argparse.Namespace) -> None:
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    require(model, ENCODE, "encode photos")
    x = load_photos([args.a, args.b], model.image_size, rt.device)
    z = encode_photos(model, x, rt)
    path = (slerp if args.slerp else lerp)(z[0], z[1], args.steps)
    row = torch.cat([x[:1].cpu(), decode(model, path, rt), x[1:].cpu()])
    t = torch.linspace(0, 1, args.steps)
    save_labelled_rows([row], args.out, row_labels=[""], col_labels=["A", *(f"{v:.2f}" for v in t), "B"],
                       title=f"{model.family}: {'spherical' if args.slerp else 'linear'} interpolation "
                             f"{args.a.name} (A) to {args.b.name} (B)")
    print(f"wrote a {args.steps}-step interpolation to {args.out}")


def family_info(family: str, args: argparse.Namespace, run: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``facegen info`` shows for one family; ``run`` is its newest MLflow training run, if known."""
    path = model_path(args.models_dir, family)
    if not path.is_file():
        return {"trained": False, "train_command": f"dvc repro train@{family}"}
    stat = path.stat()
    metrics_file = args.metrics_dir / paths.metrics_file(family).relative_to(paths.METRICS)
    info: dict[str, Any] = {
        "trained": True, "model_file": str(path), "size_mb": round(stat.st_size / 2**20, 2),
        "modified": datetime.fromtimestamp(stat.st_mtime).isoformat(timespec="seconds"),
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
    }
    if run is not None:
        info["mlflow_run"] = {k: run.get(k, "") for k in ("run_id", "git_commit", "params_hash")}
    return info


def cmd_info(args: argparse.Namespace) -> None:
    # One lookup for all families: an unreachable tracking server costs one timeout, and then
    # every family says so instead of claiming it has no run.
    runs, problem = tracking.latest_runs("train", list(FAMILIES))
    families = {family: family_info(family, args, runs.get(family)) for family in FAMILIES}
    others = sorted(d.name for d in args.models_dir.glob("*") if d.name not in FAMILIES and (d / "model.pt").is_file())
    if args.json:
        print(json.dumps({"families": families, "other_models": others, "tracking_problem": problem}, indent=2))
        return
    for family, info in families.items():
        if not info["trained"]:
            print(f"{family}: not trained yet (run `{info['train_command']}`)")
            continue
        print(f"{family}: {info['model_file']} ({info['size_mb']} MB, modified {info['modified']})")
        run = info.get("mlflow_run")
        if run:
            print(f"  from: MLflow run {run['run_id']} (git {run['git_commit'][:10]}, params hash {run['params_hash']})")
        else:
            print(f"  from: {problem}" if problem else "  from: no MLflow training run found in the tracking store")
        metrics = info["metrics"]
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                         for k, v in sorted(metrics.items())) if metrics else \
            f"none yet (run `dvc repro evaluate@{family}`)"
        print(textwrap.fill(f"metrics: {text}", width=100, initial_indent="  ", subsequent_indent="    "))
    if others:
        print(f"other trained models: {', '.join(others)}")


# ------------------------------------------------------------------------------------------------
# Argument parsing
# ------------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors, like every other facegen error (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def input_file(text: str) -> Path:
    """Checked while parsing, so a typo in a file name fails before a model is loaded."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def output_image(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text}: the output must end in {', '.join(OUTPUT_SUFFIXES)}")
    return path


def attribute_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or value not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=1 (present) or NAME=0 (absent), e.g. Smiling=1")
    return name, float(value)


def wrap(text: str) -> str:
    """Descriptions are wrapped here because the formatter keeps the examples' line breaks verbatim."""
    return textwrap.fill(text, width=88)


def model_options(default_out: str) -> argparse.ArgumentParser:
    """Options shared by the commands that run a model."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("model")
    g.add_argument("--family", help=f"model family: {', '.join(FAMILIES)}")
    g.add_argument("--run-id", help="use the model logged by this MLflow training run instead of --models-dir "
                                    "(store: $MLFLOW_TRACKING_URI, else ./mlruns.db)")
    g.add_argument("--models-dir", type=Path, default=paths.MODELS, help="pipeline models folder (default: %(default)s)")
    g.add_argument("--prepared-dir", type=Path, default=paths.PREPARED,
                   help="prepared data, for attribute directions and attribute frequencies (default: %(default)s)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument("--batch-size", type=at_least(1), default=EVAL.batch_size, help="default: %(default)s")
    g.add_argument("--out", type=output_image, default=Path(default_out),
                   help="output image, .png or .jpg (default: %(default)s)")
    return common


def build_parser() -> Parser:
    parser = Parser(prog="facegen", description=wrap(
        "Use the trained facegen models: sample new faces, edit an attribute of your own photo, interpolate "
        "between two photos, or list what is trained. Run from the repository root (or pass --models-dir / "
        "--prepared-dir). `facegen COMMAND --help` shows each command's options and examples."))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("sample", parents=[model_options("samples.png")], formatter_class=fmt,
                       help="a grid of new faces", description=wrap("Draw new faces from a model's prior into a grid."),
                       epilog="examples:\n  facegen sample --family vae -n 64 --out grid.png\n"
                              "  facegen sample --family vqvae -n 16 --attr Smiling=1 --attr Male=0")
    p.add_argument("-n", type=at_least(1), default=64, help="number of faces (default: %(default)s)")
    p.add_argument("--nrow", type=at_least(1), help="faces per grid row (default: square grid)")
    p.add_argument("--attr", type=attribute_value, action="append", metavar="NAME=0|1",
                   help="condition on an attribute (repeatable); only samplers that take attributes "
                        "(vqvae with a conditional prior). Unnamed attributes follow the training data")
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("edit", parents=[model_options("edited.png")], formatter_class=fmt,
                       help="add or remove an attribute on your own photo(s)",
                       description=wrap("Encode photo(s), move the code along an attribute direction and decode: "
                                        "one row per photo, the input then strengths from 0 to --strength. Photos "
                                        "of any size and format get the prepare stage's resize + centre crop."),
                       epilog="examples:\n  facegen edit photo.jpg --family vae --attr Smiling --strength 2\n"
                              "  facegen edit a.jpg b.png --family beta_vae --attr Eyeglasses --strength -2")
    p.add_argument("photos", type=input_file, nargs="+", metavar="PHOTO", help="image file(s)")
    p.add_argument("--attr", required=True, help="attribute to change, e.g. Smiling (see data.attributes)")
    p.add_argument("--strength", type=float, help="largest edit; negative removes the attribute (default: "
                   f"{EVAL.edit_strength} mean-difference vectors, GAN: {EVAL.boundary_edit_strength} boundary steps)")
    p.add_argument("--steps", type=at_least(2), default=5, help="strengths in the strip (default: %(default)s)")
    p.add_argument("--boundary-samples", type=at_least(16), default=EVAL.num_samples,
                   help="samples the GAN's attribute boundary is fitted on (default: %(default)s)")
    p.set_defaults(run=cmd_edit)

    p = sub.add_parser("interpolate", parents=[model_options("interpolation.png")], formatter_class=fmt,
                       help="a strip morphing one photo into another",
                       description=wrap("Encode two photos (any size: resized and centre-cropped like the "
                                        "training faces) and decode points on the path between their codes."),
                       epilog="example:\n  facegen interpolate a.jpg b.jpg --family beta_vae --steps 10 --slerp")
    p.add_argument("a", type=input_file, metavar="A", help="first image")
    p.add_argument("b", type=input_file, metavar="B", help="second image")
    p.add_argument("--steps", type=at_least(2), default=EVAL.interpolation_steps,
                   help="decoded points including both ends (default: %(default)s)")
    p.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    p.set_defaults(run=cmd_interpolate)

    p = sub.add_parser("info", help="which models are trained, their metrics and provenance",
                       description="List every family: trained or not (and the command that trains it), "
                                   "model file and date, metrics/<family>.json, and the MLflow run it came from.")
    p.add_argument("--models-dir", type=Path, default=paths.MODELS, help="default: %(default)s")
    p.add_argument("--metrics-dir", type=Path, default=paths.METRICS, help="default: %(default)s")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
