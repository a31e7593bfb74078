"""The ``facegen`` command: use the trained models on your own photos without writing code.

    facegen sample --family vqvae -n 64 --out grid.png [--attr Smiling=1]
    facegen edit photo.jpg --family vae --attr Smiling --strength 2 --out edited.png [--strip] [--face N]
    facegen interpolate a.jpg b.jpg --family beta_vae --steps 10 --out strip.png [--slerp]
    facegen info [--model models:/facegen-vae@current]
    facegen explore [--port 8765] [--host 0.0.0.0]

Models come from the pipeline's outputs (``models/<family>/model.pt``), from the ``model/``
artifact of an MLflow training run (``--run-id``), or from the MLflow Model Registry (``--model
models:/facegen-<family>@current``: every training registers a version, resolved to its run).
What a model can do is asked through the family interface and its declared capabilities, and attribute directions are found the way evaluation
finds them for that family, so this module never branches on a family name. Photos are decoded by
the prepare stage's own loader (``facegen.data.images``), then every face is detected and aligned
to the training faces' measured framing (``facegen.faces``), so a model sees your face as it saw
its training faces; the result is pasted back into the photo, with an identity check. ``--aligned``
inputs (already crops) get prepare's resize + centre crop instead. User mistakes (a missing file, an untrained family, an unknown
attribute...) are one line on stderr and exit code 2, never a traceback; so are faults of the
environment (an unwritable, full or size-limited ``--out``: every output is written atomically, so
nothing is left half-written). The caches (attribute directions, face template, face detector) are
only an optimisation: a damaged entry is recomputed, an unusable cache folder costs one warning.
"""
from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before the heavy imports below: the "imports" timing starts here

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, NoReturn, Sequence  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from facegen import artifacts, tracking  # noqa: E402
from facegen.errors import (FacegenError, exit_code, interrupt_on_termination, interrupted,  # noqa: E402
                            os_error_message, show_warning_one_line)
from facegen.latent.attributes import edit  # noqa: E402
from facegen.latent.interpolation import lerp, slerp  # noqa: E402
from facegen.models import FAMILIES  # noqa: E402
from facegen.models.base import EDIT, ENCODE  # noqa: E402
from facegen.models.checkpoint import safe_load  # noqa: E402
from facegen.runtime import eval_mode  # noqa: E402
# Loading models, photos and attribute directions: shared with `facegen explore` (facegen.trained).
from facegen.trained import (DEFAULT_STRENGTH, EVAL, MODEL_ARTIFACT, attribute_conditions,  # noqa: E402
                             cached_attribute_direction, decode, encode_photos, load_family, load_inputs,
                             make_runtime, model_path, require, resolve_registered, sample_conditions, to_tensor,
                             to_uint8)

# facegen.reporting.grids (matplotlib, ~2 s of imports on 2 cores) and facegen.faces
# (dlib) are imported where used: `edit` with paste-back needs no grid, `sample` no dlib.

OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg")  # formats both PIL grids and matplotlib figures write
MODEL_HELP = (f"use a registered model (store as for --run-id): models:/{tracking.registered_name('vae')}@"
              f"{tracking.MODEL_ALIAS} (the newest training), models:/{tracking.registered_name('vae')}/3 or "
              f"models:/{tracking.registered_name('vae')}@latest (the highest version)")


class Timings:
    """Wall-clock seconds per step of one command, printed by --timings and kept in the sidecar."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"imports": time.perf_counter() - _STARTED}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap to ``name`` (accumulating repeated names)."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now

    def line(self) -> str:
        total = time.perf_counter() - _STARTED
        return "time: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items()) + f"; total {total:.2f} s"



# ------------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> None:
    from facegen.reporting.grids import save_grid

    check_outputs(args.out.parent)
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    attrs = sample_conditions(model, attribute_conditions(args.attr), args) if args.attr else None
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


def output_for(out: Path, photo: Path, many: bool) -> Path:
    """``--out`` itself for one photo; ``<out stem>_<photo stem><out suffix>`` for each of several."""
    return out.with_name(f"{out.stem}_{photo.stem}{out.suffix}") if many else out


def write_sidecar(out: Path, record: dict[str, Any]) -> Path:
    """``<out>.json`` beside the output image: faces, boxes, identity distances, template, timings."""
    return artifacts.write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")


def check_outputs(*directories: Path) -> None:
    """Refuse an output folder that cannot take a file before any model is loaded (one line, exit 2)."""
    artifacts.ensure_writable(*directories, fix="make it writable, or choose another --out")


def identity_record(distances: list[float], labels: list[str]) -> dict[str, float]:
    return {label: round(d, 4) for label, d in zip(labels, distances)}


def cmd_edit(args: argparse.Namespace) -> None:
    from facegen.faces import identity
    from facegen.faces.align import face_mask
    from facegen.faces.photos import aligned_identity_distances, identity_distances, paste_outputs

    timings = Timings()
    check_outputs(args.out.parent)
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    require(model, ENCODE, "encode a photo")
    require(model, EDIT, "edit attributes")
    timings.lap("load model")
    inputs = load_inputs(args.photos, model.image_size, args, timings)
    x = to_tensor(inputs.crops, rt.device)
    direction, unit, default_strength = cached_attribute_direction(model, args.attr, args, rt)
    timings.lap("attribute direction")
    strength = default_strength if args.strength is None else args.strength
    scales = tuple(torch.linspace(0, strength, args.steps).tolist())
    z = encode_photos(model, x, rt)
    shape = z.shape[1:]
    edited = decode(model, edit(z.flatten(1), direction, scales).view(-1, *shape), rt)
    timings.lap("encode + edit + decode")
    n = len(x)
    per_face = [to_uint8(edited[i::n]) for i in range(n)]  # edit() is scale-major: face i's strengths
    labels = [f"{s:+.2g}" for s in scales]
    mask = face_mask(inputs.template, model.image_size)
    if args.aligned:
        dists = aligned_identity_distances(inputs.crops, per_face, inputs.template)
    else:
        dists, at = [], 0
        for photo in inputs.photos:
            k = len(photo.faces)
            dists += identity_distances(photo, per_face[at:at + k], mask)
            at += k
    timings.lap("identity")

    written = []
    if args.strip or args.aligned:
        from facegen.reporting.grids import save_labelled_rows

        rows = [torch.cat([x[i:i + 1].cpu(), edited[i::n]]) for i in range(n)]
        save_labelled_rows(rows, args.out, row_labels=inputs.labels, col_labels=["input", *labels],
                           title=f"{model.family}: {args.attr} ({unit})")
        written.append(args.out)
    else:
        at = 0
        for photo in inputs.photos:
            k = len(photo.faces)
            out = output_for(args.out, photo.file, len(inputs.photos) > 1)
            # The photo is re-encoded: high JPEG quality keeps its untouched pixels close to the input.
            artifacts.write_image(out, paste_outputs(photo, [per_face[at + j][-1] for j in range(k)], mask),
                                  quality=95)
            written.append(out)
            at += k
    timings.lap("write")

    faces_record, i = [], 0
    for label in inputs.labels:
        print(f"identity {label}: descriptor distance to the input "
              + ", ".join(f"{lab} {d:.2f}" for lab, d in zip(labels, dists[i]))
              + f" (same person below {identity.SAME_PERSON_THRESHOLD})")
        i += 1
    if args.aligned:
        faces_record = [{"file": str(f), "identity_distance": identity_record(d, labels)}
                        for f, d in zip(args.photos, dists)]
    else:
        i = 0
        for photo in inputs.photos:
            for pf in photo.faces:
                faces_record.append({"file": str(photo.file), "photo_size": list(photo.image.size),
                                     "face": pf.index, "faces_in_photo": pf.of, "box_ltrb": pf.face.box_ints(),
                                     "detector_score": round(pf.face.score, 3),
                                     "eye_distance_px": round(pf.face.eye_distance, 1),
                                     "identity_distance": identity_record(dists[i], labels)})
                i += 1
    record = {"command": "edit", "family": model.family, "attribute": args.attr, "unit": unit,
              "strengths": [round(s, 6) for s in scales], "outputs": [str(w) for w in written],
              "pasted_strength": None if (args.strip or args.aligned) else round(scales[-1], 6),
              "identity": {"metric": "Euclidean distance between dlib 128-d face descriptors "
                                     "(dlib_face_recognition_resnet_model_v1)",
                           "same_person_below": identity.SAME_PERSON_THRESHOLD},
              "template": inputs.template.source, "faces": faces_record,
              "timings_s": {k: round(v, 3) for k, v in timings.seconds.items()}}
    sidecar = write_sidecar(args.out, record)
    what = "aligned strip" if (args.strip or args.aligned) else f"photo(s) with the {scales[-1]:.2g} edit pasted back"
    print(f"wrote {args.attr} edits of {n} face(s) at strengths {', '.join(f'{s:.2g}' for s in scales)}: "
          f"{what} to {', '.join(str(w) for w in written)}; details in {sidecar}")
    if args.timings:
        print(timings.line(), file=sys.stderr)


def cmd_interpolate(args: argparse.Namespace) -> None:
    from facegen.faces.photos import paste_outputs
    from facegen.reporting.grids import save_labelled_rows

    timings = Timings()
    if args.frames and args.aligned:  # refused before any work or output
        raise FacegenError("--frames pastes the path into photo A, which needs its face detected: drop --aligned")
    check_outputs(args.out.parent, *([args.frames] if args.frames else []))
    rt = make_runtime(args.device)
    model = load_family(args, rt)
    require(model, ENCODE, "encode photos")
    timings.lap("load model")
    if not args.aligned and args.face is None:
        args.face = 1  # one face per photo: the leftmost unless --face says otherwise
    inputs = load_inputs([args.a, args.b], model.image_size, args, timings)
    x = to_tensor(inputs.crops, rt.device)
    z = encode_photos(model, x, rt)
    path = (slerp if args.slerp else lerp)(z[0], z[1], args.steps)
    row = torch.cat([x[:1].cpu(), decode(model, path, rt), x[1:].cpu()])
    timings.lap("encode + interpolate + decode")
    t = torch.linspace(0, 1, args.steps)
    save_labelled_rows([row], args.out, row_labels=[""], col_labels=["A", *(f"{v:.2f}" for v in t), "B"],
                       title=f"{model.family}: {'spherical' if args.slerp else 'linear'} interpolation "
                             f"{args.a.name} (A) to {args.b.name} (B)")
    if args.frames:
        from facegen.faces.align import face_mask

        mask = face_mask(inputs.template, model.image_size)
        photo_a = inputs.photos[0]
        for k, face in enumerate(to_uint8(row[1:-1])):
            artifacts.write_image(args.frames / f"frame_{k:03d}.jpg", paste_outputs(photo_a, [face], mask), quality=95)
    timings.lap("write")
    print(f"wrote a {args.steps}-step interpolation to {args.out}"
          + (f" and {args.steps} frames (photo A, each step pasted back) to {args.frames}" if args.frames else ""))
    if args.timings:
        print(timings.line(), file=sys.stderr)


def family_info(family: str, args: argparse.Namespace, run: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``facegen info`` shows for one family; ``run`` is its newest MLflow training run, if known."""
    path = model_path(args.models_dir, family)
    if not path.is_file():
        return {"trained": False, "train_command": f"dvc repro train@{family}"}
    stat = path.stat()
    metrics_file = args.metrics_dir / artifacts.metrics_file(family).relative_to(artifacts.METRICS)
    info: dict[str, Any] = {
        "trained": True, "model_file": str(path), "size_mb": round(stat.st_size / 2**20, 2),
        "modified": datetime.fromtimestamp(stat.st_mtime).isoformat(timespec="seconds"),
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
    }
    if run is not None:
        info["mlflow_run"] = {k: run.get(k, "") for k in ("run_id", "git_commit", "params_hash")}
    return info


def registered_info(args: argparse.Namespace) -> None:
    """``facegen info --model URI``: the registered version, the run behind it and the model it holds."""
    version = resolve_registered(args)
    with tempfile.TemporaryDirectory(prefix="facegen-") as tmp:
        path = tracking.download_artifact(args.run_id, MODEL_ARTIFACT, Path(tmp))
        ckpt = safe_load(path)  # any facegen checkpoint: a family, the classifier or the prior
        version["model"] = {"format": ckpt["format"], "family": ckpt.get("family", version["tags"].get("family")),
                            "image_size": ckpt.get("image_size"), "size_mb": round(path.stat().st_size / 2**20, 2)}
    if args.json:
        print(json.dumps(version, indent=2))
        return
    tags, held = version["tags"], version["model"]
    aliases = f" (@{', @'.join(version['aliases'])})" if version["aliases"] else ""
    print(f"{args.model}: {version['name']} version {version['version']}{aliases}")
    size = f"{held['image_size']} px, " if held["image_size"] else ""
    print(f"  model: {held['family']} ({held['format']}), {size}{held['size_mb']} MB")
    print(f"  from: MLflow run {version['run_id']} ({tags.get('stage', '?')}, git {tags.get('git_commit', '?')[:10]}, "
          f"params hash {tags.get('params_hash', '?')}"
          + (f", DVC experiment {tags['dvc_experiment']}" if tags.get("dvc_experiment") else "") + ")")


def cmd_info(args: argparse.Namespace) -> None:
    if args.model:
        registered_info(args)
        return
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


def cmd_explore(args: argparse.Namespace) -> None:
    from facegen.explore.server import serve  # FastAPI and uvicorn load only for this command

    serve(args)


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


def port_number(text: str) -> int:
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


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
    g.add_argument("--model", metavar="URI", help=MODEL_HELP)
    g.add_argument("--models-dir", type=Path, default=artifacts.MODELS, help="pipeline models folder (default: %(default)s)")
    g.add_argument("--prepared-dir", type=Path, default=artifacts.PREPARED,
                   help="prepared data, for attribute directions and attribute frequencies (default: %(default)s)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument("--batch-size", type=at_least(1), default=EVAL.batch_size, help="default: %(default)s")
    g.add_argument("--out", type=output_image, default=Path(default_out),
                   help="output image, .png or .jpg (default: %(default)s)")
    return common


def face_options() -> argparse.ArgumentParser:
    """Options of the commands that take photos: which face, already aligned, timings."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("faces")
    g.add_argument("--face", type=at_least(1), metavar="N",
                   help="use only the N-th face found in each photo, counted left to right from 1 "
                        "(default: edit every face; interpolate uses the first)")
    g.add_argument("--aligned", action="store_true",
                   help="the photos are already face crops framed like the training faces (e.g. CelebA's "
                        "img_align_celeba): skip detection, resize + centre-crop as prepare does")
    g.add_argument("--timings", action="store_true", help="print where the time went (stderr)")
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

    p = sub.add_parser("edit", parents=[model_options("edited.png"), face_options()], formatter_class=fmt,
                       help="add or remove an attribute on your own photo(s)",
                       description=wrap("Find the face(s) in each photo, align them like the training faces, "
                                        "move their codes along an attribute direction, decode, and paste the "
                                        "--strength edit back into the photo (at its own size). --strip writes "
                                        "the aligned faces instead: one row per face, the input then strengths "
                                        "from 0 to --strength. Prints, and writes to <out>.json, each face's box "
                                        "and the face-descriptor distance from input to output (identity)."),
                       epilog="examples:\n  facegen edit photo.jpg --family vae --attr Smiling --strength 2\n"
                              "  facegen edit group.jpg --family vae --attr Smiling --face 2 --timings\n"
                              "  facegen edit a.jpg b.png --family beta_vae --attr Eyeglasses --strength -2 --strip\n"
                              "  facegen edit 000029.jpg --family vae --attr Smiling --aligned   # a CelebA crop")
    p.add_argument("photos", type=input_file, nargs="+", metavar="PHOTO", help="image file(s)")
    p.add_argument("--attr", required=True, help="attribute to change, e.g. Smiling (see data.attributes)")
    p.add_argument("--strength", type=float, help="largest edit; negative removes the attribute (default: "
                   f"{DEFAULT_STRENGTH['mean_difference']} mean-difference vectors, GAN: "
                   f"{DEFAULT_STRENGTH['classifier_boundary']} boundary steps)")
    p.add_argument("--steps", type=at_least(2), default=5, help="strengths in the strip (default: %(default)s)")
    p.add_argument("--boundary-samples", type=at_least(16), default=EVAL.num_samples,
                   help="samples the GAN's attribute boundary is fitted on (default: %(default)s)")
    p.add_argument("--strip", action="store_true",
                   help="write the aligned faces at every strength as a strip instead of the pasted-back photo")
    p.set_defaults(run=cmd_edit)

    p = sub.add_parser("interpolate", parents=[model_options("interpolation.png"), face_options()],
                       formatter_class=fmt, help="a strip morphing one photo into another",
                       description=wrap("Find the face in each of two photos (the leftmost, or --face N), align "
                                        "them like the training faces, and decode points on the path between "
                                        "their codes."),
                       epilog="example:\n  facegen interpolate a.jpg b.jpg --family beta_vae --steps 10 --slerp")
    p.add_argument("a", type=input_file, metavar="A", help="first image")
    p.add_argument("b", type=input_file, metavar="B", help="second image")
    p.add_argument("--steps", type=at_least(2), default=EVAL.interpolation_steps,
                   help="decoded points including both ends (default: %(default)s)")
    p.add_argument("--slerp", action="store_true", help="spherical instead of linear interpolation")
    p.add_argument("--frames", type=Path, metavar="DIR",
                   help="also write photo A with each step pasted back, DIR/frame_000.jpg ... (e.g. for a video)")
    p.set_defaults(run=cmd_interpolate)

    p = sub.add_parser("info", help="which models are trained, their metrics and provenance",
                       description="List every family: trained or not (and the command that trains it), "
                                   "model file and date, metrics/<family>.json, and the MLflow run it came from.")
    p.add_argument("--models-dir", type=Path, default=artifacts.MODELS, help="default: %(default)s")
    p.add_argument("--metrics-dir", type=Path, default=artifacts.METRICS, help="default: %(default)s")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", metavar="URI", help="show this registered model version instead (models:/NAME@ALIAS "
                                                 "or models:/NAME/VERSION): its run, tags and the model it holds")
    p.set_defaults(run=cmd_info, run_id=None)

    p = sub.add_parser("explore", formatter_class=fmt, help="a local web page: every family side by side, live",
                       description=wrap("Serve a web page over the trained models: pick a test face or upload a "
                                        "photo, see each family's reconstruction (PSNR, identity distance), move "
                                        "one slider per attribute to edit every family at once, traverse the VAEs' "
                                        "most active dimensions, interpolate between two faces, draw samples; each "
                                        "family's headline metrics from the last run beside its column. Listens on "
                                        "127.0.0.1 only (a free port unless --port); Ctrl-C stops it."),
                       epilog="examples:\n  facegen explore                       # then open the printed URL\n"
                              "  facegen explore --port 8765 --faces 48\n"
                              "  facegen explore --run-id 3f2c9e...    # that run's model for its family\n"
                              "  facegen explore --host 0.0.0.0        # reachable from other machines: no login!")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=port_number, default=0, help="port (default: 0 = a free one, printed)")
    p.add_argument("--run-id", action="append", metavar="ID",
                   help="use the model this MLflow training run logged for its family (repeatable; store: "
                        "$MLFLOW_TRACKING_URI, else ./mlruns.db)")
    p.add_argument("--model", action="append", metavar="URI",
                   help="use this registered model version for its family (repeatable; models:/NAME@ALIAS or "
                        "models:/NAME/VERSION, store as for --run-id)")
    p.add_argument("--latest-runs", action="store_true",
                   help="use every family's newest finished training run in the MLflow store instead of --models-dir")
    p.add_argument("--models-dir", type=Path, default=artifacts.MODELS, help="default: %(default)s")
    p.add_argument("--prepared-dir", type=Path, default=artifacts.PREPARED,
                   help="test faces to pick from, and attribute directions (default: %(default)s)")
    p.add_argument("--metrics-dir", type=Path, default=artifacts.METRICS,
                   help="<family>.json of the last run; metrics_noise.json and metrics_tolerances.yaml are read "
                        "from its parent (default: %(default)s)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="data.source says whether the test faces are real photos (default: %(default)s)")
    p.add_argument("--faces", type=at_least(2), default=24, help="test faces in the picker (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="GAN boundary samples and edit unit (default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=EVAL.batch_size, help="default: %(default)s")
    p.add_argument("--boundary-samples", type=at_least(16), default=EVAL.num_samples,
                   help="samples the GAN's attribute boundaries are fitted on (default: %(default)s)")
    p.set_defaults(run=cmd_explore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0, or 2 after one ``error:`` line (user mistake, or the system refused a file:
    read-only, full, size-limited), or 128 + the signal's number after Ctrl-C / SIGTERM / SIGHUP."""
    args = build_parser().parse_args(argv)
    # matplotlib (imported later, for labelled figures) logs two warnings when $HOME cannot hold its
    # font cache and builds one in a temp folder: like facegen's caches, only an optimisation.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # one-line warnings for this command, the caller's formatting after
        warnings.showwarning = show_warning_one_line
        try:
            with interrupt_on_termination():
                args.run(args)
        except FacegenError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"error: {os_error_message(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            print(f"error: {interrupted(stop)}", file=sys.stderr)
            return exit_code(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
