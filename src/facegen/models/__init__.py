"""Family registry: the one place that maps a family name to its class.

Everything else (loop, checkpoint, evaluation, CLI) goes through ``build`` and the
GenerativeModel interface, so adding a family means its model module, its config dataclass
(config.MODEL_CONFIGS), its params section and one line in dvc.yaml's family list, plus its line
here. Classes are imported by name on first use, so a stage imports only the family it runs: that
keeps each stage's code dependencies (tests/test_architecture.py checks them against dvc.yaml) to
its own family's module.
"""
from __future__ import annotations

import importlib
from typing import Any

from facegen.models.base import GenerativeModel

# family -> "module:class"
FAMILIES: dict[str, str] = {
    "vae": "facegen.models.vae:VAE",
    "beta_vae": "facegen.models.vae:VAE",
    "dcgan": "facegen.models.dcgan:DCGAN",
    "vqvae": "facegen.models.vqvae:VQVAE",
}


def family_class(family: str) -> type[GenerativeModel]:
    """The class of ``family``; KeyError naming the known families if it is not one."""
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def build(family: str, cfg: Any, image_size: int) -> GenerativeModel:
    return family_class(family)(family, cfg, image_size)
