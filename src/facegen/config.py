"""Typed view of params.yaml.

params.yaml is the only source of truth. It is parsed once into frozen dataclasses, and every
problem (unknown key, wrong type, out-of-range value) is reported *before* any work starts, with the
dotted key in the message, so a typo never silently falls back to a default.

Range rules live next to the field (``field(metadata=...)``) so a reader sees the default and the
allowed values in one place.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from facegen.errors import ConfigError

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)


def rng(*, gt: float | None = None, ge: float | None = None, le: float | None = None,
        lt: float | None = None) -> dict[str, float | None]:
    """Field metadata describing the allowed numeric range."""
    return {"gt": gt, "ge": ge, "le": le, "lt": lt}


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if meta.get("gt") is not None and not v > meta["gt"]:
            raise ConfigError(f"params.yaml: {key} must be > {meta['gt']}, got {value!r}")
        if meta.get("ge") is not None and not v >= meta["ge"]:
            raise ConfigError(f"params.yaml: {key} must be >= {meta['ge']}, got {value!r}")
        if meta.get("le") is not None and not v <= meta["le"]:
            raise ConfigError(f"params.yaml: {key} must be <= {meta['le']}, got {value!r}")
        if meta.get("lt") is not None and not v < meta["lt"]:
            raise ConfigError(f"params.yaml: {key} must be < {meta['lt']}, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how tensors are computed. ``auto`` choices are resolved in runtime.py."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int = field(default=0, metadata=rng(ge=0))  # 0 = all cores
    channels_last: bool = True
    deterministic: bool = True
    # Resumable training state lives here, outside DVC outs (dvc deletes outs before a rerun).
    state_dir: str = ".facegen_state"
    compile: bool = False
    # torch.compile mode when compile is on. reduce-overhead replays each compiled submodule as a CUDA
    # graph (one launch instead of hundreds: a batch-64 step at these widths is launch-bound on a GPU);
    # CUDA only, and possible because a training step never waits for the host.
    compile_mode: Literal["default", "reduce-overhead"] = "default"


@dataclass(frozen=True)
class SyntheticConfig:
    num_images: int = field(default=12000, metadata=rng(ge=30))
    split_fractions: tuple[float, float, float] = field(default=(0.8, 0.1, 0.1), metadata=rng(gt=0, lt=1))
    jpeg_quality: int = field(default=90, metadata=rng(ge=50, le=100))

    def __post_init__(self) -> None:
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"params.yaml: data.synthetic.split_fractions must sum to 1, got {self.split_fractions}")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "celeba"] = "synthetic"
    root: str = "data/synthetic"
    image_size: int = field(default=64, metadata=rng(ge=16, le=256))
    max_images: int = field(default=0, metadata=rng(ge=0))
    max_corrupt_fraction: float = field(default=0.01, metadata=rng(ge=0, le=1))
    attributes: tuple[str, ...] = ("Smiling", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair",
                                   "Wearing_Hat", "Mouth_Slightly_Open", "Bangs")
    workers: int = field(default=2, metadata=rng(ge=1))
    synthetic: SyntheticConfig = SyntheticConfig()

    def __post_init__(self) -> None:
        s = self.image_size
        if s & (s - 1):
            raise ConfigError(f"params.yaml: data.image_size must be a power of 2 (16..256), got {s}")
        unknown = [a for a in self.attributes if a not in CELEBA_ATTRIBUTES]
        if unknown:
            raise ConfigError(f"params.yaml: data.attributes has {unknown}, not CelebA attribute names "
                              f"(valid: {', '.join(CELEBA_ATTRIBUTES)})")
        if not self.attributes:
            raise ConfigError("params.yaml: data.attributes must name at least one attribute")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation knobs shared by every trainable family (one loop, one schema)."""

    epochs: int = field(default=10, metadata=rng(ge=1))
    batch_size: int = field(default=64, metadata=rng(ge=1))
    lr: float = field(default=1e-3, metadata=rng(gt=0))
    max_steps_per_epoch: int = field(default=0, metadata=rng(ge=0))  # 0 = full epoch
    # constant: lr throughout (the notebook). onecycle: linear warm-up over the first 30 % of all steps
    # to lr, then cosine annealing to ~0 (Smith & Topin 2019, "Super-convergence"), which reaches a
    # given loss in fewer epochs (measured per family in docs/defaults.md).
    schedule: Literal["constant", "onecycle"] = "constant"


@dataclass(frozen=True)
class VAEConfig:
    """VAE and β-VAE: one architecture, β only weights the KL term (β=1 is the plain VAE).

    ``sigma`` is the Gaussian decoder's scale (models/vae.py): ``optimal`` (σ² = the batch's MSE,
    Rybkin et al. 2021) or ``learned`` (a parameter) make the loss a calibrated ELBO, so β is the
    β-VAE paper's; ``mse`` is the notebook's summed MSE, a fixed σ² = ½, where the β that weighs a
    calibrated likelihood is β_eff = β / (2σ²). ``sigma_per_channel``: one σ per RGB channel.
    """

    latent_dim: int = field(default=128, metadata=rng(ge=1))
    widths: tuple[int, ...] = field(default=(32, 64, 128, 256), metadata=rng(ge=1))
    beta: float = field(default=1.0, metadata=rng(ge=0))
    sigma: Literal["optimal", "learned", "mse"] = "optimal"
    sigma_per_channel: bool = False
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        if not self.widths:
            raise ConfigError("params.yaml: models.<vae>.widths must list at least one width")


@dataclass(frozen=True)
class VQVAEConfig:
    num_hiddens: int = field(default=128, metadata=rng(ge=1))
    num_residual_hiddens: int = field(default=32, metadata=rng(ge=1))
    num_residual_layers: int = field(default=2, metadata=rng(ge=0))
    num_embeddings: int = field(default=512, metadata=rng(ge=2))
    embedding_dim: int = field(default=64, metadata=rng(ge=1))
    commitment_cost: float = field(default=0.25, metadata=rng(ge=0))
    ema: bool = True
    ema_decay: float = field(default=0.99, metadata=rng(gt=0, lt=1))
    ema_epsilon: float = field(default=1e-5, metadata=rng(gt=0))
    restart_dead_codes: bool = True
    train: TrainConfig = TrainConfig()


DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")  # models/diffaugment.py, Zhao et al. 2020


@dataclass(frozen=True)
class DCGANConfig:
    nz: int = field(default=100, metadata=rng(ge=1))
    ngf: int = field(default=64, metadata=rng(ge=1))
    ndf: int = field(default=64, metadata=rng(ge=1))
    loss: Literal["bce", "hinge"] = "bce"
    spectral_norm: bool = False
    ema_decay: float = field(default=0.999, metadata=rng(ge=0, lt=1))  # 0 disables the EMA generator
    beta1: float = field(default=0.5, metadata=rng(ge=0, lt=1))
    # GAN inversion (encode = latent optimisation): Adam steps per restart, random restarts, step size.
    inversion_steps: int = field(default=200, metadata=rng(ge=1))
    inversion_restarts: int = field(default=2, metadata=rng(ge=1))
    inversion_lr: float = field(default=0.1, metadata=rng(gt=0))
    # Small-data GAN methods, off in the notebook (each measured in docs/defaults.md):
    # DiffAugment policy, comma-separated DIFFAUGMENT_POLICIES ("" = none); R1 penalty weight γ on D's
    # gradient at real images (Mescheder et al. 2018; 0 = none); TTUR: D's learning rate as a multiple
    # of train.lr, G's being train.lr (Heusel et al. 2017; 1 = one learning rate).
    diffaugment: str = ""
    r1_gamma: float = field(default=0.0, metadata=rng(ge=0))
    d_lr_ratio: float = field(default=1.0, metadata=rng(gt=0))
    train: TrainConfig = TrainConfig(lr=2e-4)

    def __post_init__(self) -> None:
        unknown = [p for p in self.diffaugment_policy if p not in DIFFAUGMENT_POLICIES]
        if unknown:
            raise ConfigError(f"params.yaml: models.dcgan.diffaugment has {unknown}; valid: "
                              f"{', '.join(DIFFAUGMENT_POLICIES)} (comma-separated) or \"\"")

    @property
    def diffaugment_policy(self) -> tuple[str, ...]:
        """``diffaugment`` as names: ``"color, cutout"`` -> ``("color", "cutout")``."""
        return tuple(p.strip() for p in self.diffaugment.split(",") if p.strip())


@dataclass(frozen=True)
class PriorConfig:
    arch: Literal["gated", "masked"] = "gated"
    hidden: int = field(default=64, metadata=rng(ge=1))
    layers: int = field(default=8, metadata=rng(ge=1))
    kernel_size: int = field(default=3, metadata=rng(ge=3))  # the notebook's masked arch used 7
    positional: bool = True  # gated only: a learned per-layer position bias (faces are aligned)
    conditional: bool = True
    temperature: float = field(default=1.0, metadata=rng(gt=0))
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"params.yaml: prior.kernel_size must be odd, got {self.kernel_size}")


@dataclass(frozen=True)
class ClassifierConfig:
    """The attribute classifier: scores edits and gives the feature space of FID/KID/PRDC."""

    width: int = field(default=16, metadata=rng(ge=1))  # channels of the first conv; doubled per stage
    train: TrainConfig = TrainConfig(epochs=2, batch_size=128, lr=2e-3)


@dataclass(frozen=True)
class EvaluateConfig:
    num_samples: int = field(default=1000, metadata=rng(ge=16))
    batch_size: int = field(default=128, metadata=rng(ge=1))
    # Images per sampling call when drawing the samples of the realism metrics. The VQ-VAE's prior
    # samples position by position (grid² steps of ~25 kernel launches each, whatever the batch), so
    # on a GPU a large batch costs little more than a small one; on a CPU the work grows with it.
    sample_batch_size: int = field(default=128, metadata=rng(ge=1))
    grid_size: int = field(default=8, metadata=rng(ge=2))
    interpolation_steps: int = field(default=10, metadata=rng(ge=2))
    traversal_dims: int = field(default=8, metadata=rng(ge=1))
    traversal_range: float = field(default=3.0, metadata=rng(gt=0))
    active_dim_threshold: float = field(default=0.01, metadata=rng(gt=0))
    num_inversions: int = field(default=64, metadata=rng(ge=1))  # test faces reconstructed by GAN inversion
    nll_importance_samples: int = field(default=64, metadata=rng(ge=1))
    nll_images: int = field(default=100, metadata=rng(ge=1))  # test faces the NLL is estimated on
    # The IWAE bound against k = 1, 2, 4, ... iwae_curve_max_k on the first iwae_curve_images test faces
    # (iwae_curve_max_k decodes each): where it flattens is how nll_importance_samples is chosen.
    iwae_curve_images: int = field(default=8, metadata=rng(ge=1))
    iwae_curve_max_k: int = field(default=1024, metadata=rng(ge=1))
    inception_samples: int = field(default=256, metadata=rng(ge=16))  # generated images per family in Inception FID/KID
    inception_real: int = field(default=500, metadata=rng(ge=16))  # test faces whose Inception features are cached
    kid_subsets: int = field(default=50, metadata=rng(ge=1))
    kid_subset_size: int = field(default=500, metadata=rng(ge=2))  # capped at the number of samples
    prdc_k: int = field(default=5, metadata=rng(ge=1))  # k-th neighbour radius of precision/recall/density/coverage
    edit_faces: int = field(default=512, metadata=rng(ge=2))  # faces edited per attribute (>= 2: the step unit needs two)
    # Edit strengths, for every family: a unit direction times alpha times the mean distance between
    # two start latents ("fraction of the way to another face"), so families are compared at matched strength.
    edit_alphas: tuple[float, ...] = (0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0)  # the sweep of the edit metrics
    edit_chance_directions: int = field(default=16, metadata=rng(ge=1))  # random face-to-face directions (chance line)
    # Attributes that are the values of one categorical factor (hair colour on the embedded faces):
    # an edit of one member is not charged for flipping the others (evaluation/editing.py). Names
    # outside data.attributes are allowed (and ignored), so changing data.attributes needs no edit here.
    edit_exclusive_groups: tuple[tuple[str, ...], ...] = (("Blond_Hair", "Black_Hair"),)
    edit_figure_alphas: tuple[float, ...] = (-0.25, 0.0, 0.125, 0.25, 0.5)  # attribute_<Attr>.png columns
    identity_faces: int = field(default=64, metadata=rng(ge=1))  # test faces scored by face descriptor (real CelebA only)
    disentanglement_train: int = field(default=2000, metadata=rng(ge=10))  # train codes fitting MIG/DCI/SAP
    mig_bins: int = field(default=20, metadata=rng(ge=2))  # histogram bins discretising codes and factors

    def __post_init__(self) -> None:
        a = self.edit_alphas
        if len(a) < 5 or a[0] <= 0 or any(y <= x for x, y in zip(a, a[1:])):
            raise ConfigError("params.yaml: evaluate.edit_alphas must list >= 5 positive, strictly increasing "
                              f"steps, got {list(a)}")
        key = "params.yaml: evaluate.edit_exclusive_groups"
        seen: set[str] = set()
        for group in self.edit_exclusive_groups:
            if len(set(group)) < 2:
                raise ConfigError(f"{key}: each group lists >= 2 different attributes, got {list(group)}")
            if unknown := [n for n in group if n not in CELEBA_ATTRIBUTES]:
                raise ConfigError(f"{key} has {unknown}, not CelebA attribute names")
            if twice := sorted(seen.intersection(group)):
                raise ConfigError(f"{key}: {twice} in two groups (a group is one categorical factor)")
            seen.update(group)


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "facegen"


# Which config class each trainable family reads from ``models.<family>``.
MODEL_CONFIGS: dict[str, type] = {
    "vae": VAEConfig,
    "beta_vae": VAEConfig,
    "vqvae": VQVAEConfig,
    "dcgan": DCGANConfig,
}


@dataclass(frozen=True)
class Params:
    seed: int = 101
    runtime: RuntimeConfig = RuntimeConfig()
    tracking: TrackingConfig = TrackingConfig()
    data: DataConfig = DataConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    models: dict[str, Any] = field(default_factory=dict)
    prior: PriorConfig = PriorConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    def model(self, family: str) -> Any:
        """The typed config of one family; a clear error for families params.yaml lacks."""
        if family not in self.models:
            raise ConfigError(f"params.yaml: models.{family} is missing (families: {sorted(self.models)})")
        return self.models[family]


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert YAML lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"params.yaml: {key} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params.yaml: {key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"params.yaml: {key} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"union annotations are not supported in config ({key})")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params.yaml: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"params.yaml: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"params.yaml: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"params.yaml: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)} for {key}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: {prefix or 'top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"params.yaml: unknown key {where}{unknown[0]} (allowed: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if cls is Params and name == "models":
            kwargs[name] = _build_models(value)
            continue
        kwargs[name] = _coerce(key, hints[name], value)
        _check_range(key, kwargs[name], fields[name].metadata)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        # __post_init__ messages name the generic section; make them name this one.
        raise ConfigError(str(err).replace("models.<vae>", prefix)) from None


def _build_models(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"params.yaml: models must be a mapping of family -> settings, got {data!r}")
    unknown = sorted(set(data) - set(MODEL_CONFIGS))
    if unknown:
        raise ConfigError(f"params.yaml: unknown model family models.{unknown[0]} "
                          f"(known: {', '.join(MODEL_CONFIGS)})")
    return {name: _build(MODEL_CONFIGS[name], section, f"models.{name}") for name, section in data.items()}


def parse_params(data: dict[str, Any]) -> Params:
    """Validate a params mapping (as read from YAML) into typed, frozen config."""
    return _build(Params, data, "")


def load_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (safe types only); ConfigError when it is not valid YAML or a
    mapping repeats a key.

    PyYAML keeps the last of two equal keys without a word, so a pasted override (``lr:`` twice in
    one section) would silently win or lose depending on its position; YAML 1.2 says keys are unique.
    """
    text = path.read_text()
    try:
        _reject_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), "", path)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None


def _reject_duplicate_keys(node: yaml.Node | None, where: str, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            dotted = where if key in (None, "<<") else f"{where}.{key}" if where else str(key)
            if key not in (None, "<<"):
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{path}: key {dotted} appears twice (lines {seen[key]} and {line}); "
                                      "keep one (YAML would silently use the last)")
                seen[key] = line
            _reject_duplicate_keys(value, dotted, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, f"{where}[{i}]", path)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repository root or pass --params")
    return parse_params(load_yaml(path) or {})


def to_dict(cfg: Any) -> Any:
    """Plain (JSON/YAML-able) form of a config: used for checkpoints and MLflow params."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [to_dict(v) for v in cfg]
    return cfg


def non_default(cfg: Any, default: Any = None) -> Any:
    """``to_dict(cfg)`` less every dataclass field equal to its default (``default``: the instance to
    compare with, e.g. a nested field's declared default; None: the class's own defaults).

    What identifies the behaviour a config asks for across code versions: a knob added later whose
    default keeps the old behaviour leaves it unchanged; a changed value, or a default changed under a
    value params.yaml sets, changes it."""
    if dataclasses.is_dataclass(cfg):
        ref = type(cfg)() if default is None else default
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cfg):
            value, base = getattr(cfg, f.name), getattr(ref, f.name)
            if dataclasses.is_dataclass(value):
                changed = non_default(value, base)
                if changed:
                    out[f.name] = changed
            elif value != base:
                out[f.name] = to_dict(value)
        return out
    if isinstance(cfg, dict):
        return {k: non_default(v) for k, v in cfg.items()}
    return to_dict(cfg)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Rebuild a section dataclass from its plain form (e.g. stored inside a checkpoint)."""
    return _build(cls, data, prefix)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: MLflow params are flat strings."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def params_hash(*sections: Any) -> str:
    """Short stable hash of config sections: tags MLflow runs and keys resumable state."""
    blob = json.dumps([to_dict(s) for s in sections], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
