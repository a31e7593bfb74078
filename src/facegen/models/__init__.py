"""Family registry: the one place that maps a family name to its class.

Everything else (loop, checkpoint, evaluation, CLI) goes through ``build`` and the
GenerativeModel interface, so adding a family means adding one line here and one params section.
"""
from __future__ import annotations

from typing import Any

from facegen.models.base import GenerativeModel
from facegen.models.dcgan import DCGAN
from facegen.models.vae import VAE
from facegen.models.vqvae import VQVAE

FAMILIES: dict[str, type[GenerativeModel]] = {
    "vae": VAE,
    "beta_vae": VAE,
    "dcgan": DCGAN,
    "vqvae": VQVAE,
}


def build(family: str, cfg: Any, image_size: int) -> GenerativeModel:
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](family, cfg, image_size)
