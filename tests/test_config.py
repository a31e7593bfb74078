"""params.yaml validation: every bad value is caught before work starts, naming the key."""
from __future__ import annotations

import pytest
import yaml

from facegen.config import load_params, params_hash, parse_params, to_dict
from facegen.errors import ConfigError


def base() -> dict:
    with open("params.yaml") as fh:
        return yaml.safe_load(fh)


def test_repo_params_load_and_round_trip():
    params = load_params("params.yaml")
    assert params.model("beta_vae").beta > params.model("vae").beta
    assert parse_params(to_dict(params)) == params


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["models"]["vae"].update(lr=1), "unknown key models.vae.lr"),
    (lambda p: p["models"]["vae"]["train"].update(lr=-0.001), "models.vae.train.lr must be > 0"),
    (lambda p: p["models"]["beta_vae"].update(beta=-1.0), "models.beta_vae.beta must be >= 0"),
    (lambda p: p["data"].update(image_size=48), "data.image_size must be a power of 2"),
    (lambda p: p["data"].update(image_size="64"), "data.image_size must be an integer"),
    (lambda p: p["runtime"].update(device="tpu"), "runtime.device must be one of"),
    (lambda p: p["data"].update(attributes=["Smiling", "Smilling"]), "not CelebA attribute names"),
    (lambda p: p["models"].update(gpt={}), "unknown model family models.gpt"),
    (lambda p: p.update(sede=1), "unknown key sede"),
    (lambda p: p["models"]["vae"]["train"].update(epochs=2.5), "models.vae.train.epochs must be an integer"),
    (lambda p: p["runtime"].update(channels_last="yes"), "runtime.channels_last must be true or false"),
    (lambda p: p["evaluate"].update(edit_exclusive_groups=[["Blond_Hair", "Blond_Hiar"]]),
     "evaluate.edit_exclusive_groups has ['Blond_Hiar'], not CelebA attribute names"),
    (lambda p: p["evaluate"].update(edit_exclusive_groups=[["Blond_Hair"]]), "each group lists >= 2 different"),
    (lambda p: p["evaluate"].update(edit_exclusive_groups=[["Blond_Hair", "Black_Hair"], ["Gray_Hair", "Black_Hair"]]),
     "['Black_Hair'] in two groups"),
    (lambda p: p["evaluate"].update(edit_exclusive_groups="Blond_Hair"), "evaluate.edit_exclusive_groups must be a list"),
])
def test_bad_values_name_the_key(mutate, message):
    params = base()
    mutate(params)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_params(params)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_params_hash_tracks_values():
    p = load_params()
    assert params_hash(p.model("vae")) == params_hash(p.model("vae"))
    assert params_hash(p.model("vae")) != params_hash(p.model("beta_vae"))


def test_gpu_profile_is_valid_and_uses_the_notebook_sizes():
    """params-celeba-gpu.yaml (the research setting, docs/defaults.md) must load like params.yaml does."""
    from pathlib import Path

    profile = load_params(Path(__file__).resolve().parents[1] / "params-celeba-gpu.yaml")
    assert profile.runtime.device == "cuda" and profile.data.source == "celeba"
    assert profile.model("vae").latent_dim == 128 and profile.model("beta_vae").sigma == "optimal"  # calibrated β
    assert profile.model("vqvae").num_hiddens == 128 and profile.model("dcgan").ngf == 64
    assert profile.evaluate.inception_samples == profile.evaluate.inception_real == 10000
