"""The GPU profile (``params-celeba-gpu.yaml``) end to end on the CPU, at toy sizes.

No default run reaches the profile's code paths: ``data.source: celeba`` on a folder in the
torchvision or the Kaggle layout, 128 px faces (every family, 32x32 VQ code maps, the prior's
sampler over them), the identity analysis (real CelebA only), ``precision: auto``,
``evaluate.sample_batch_size``. Here each stage's function runs in this process, in order, on a
CelebA-format folder of a few hundred generated faces: prepare, train_classifier, reference, every
family's training, extract_codes, fit_prior, every family's evaluation, report (the reference stage's
Inception features in the 128 px run only: ~30 % of the cost, and size-independent). The profile's values
are kept except what sets the cost: widths, epochs (one, of two steps), batch sizes, sample counts,
``runtime.device`` (auto: the CPU here), one thread (toy tensors) and one attribute instead of
eight. One real MLflow store serves both runs (its tables are created once).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from facegen.config import SyntheticConfig, parse_params
from facegen.data.celeba import find_layout, read_table
from facegen.data.synthetic import generate_celeba_folder
from facegen.pipeline.evaluate import evaluate_family
from facegen.pipeline.extract_codes import extract_codes
from facegen.pipeline.fit_prior import fit_prior
from facegen.pipeline.prepare import prepare_stage
from facegen.pipeline.reference import reference
from facegen.pipeline.report import report_stage
from facegen.pipeline.train import train_family
from facegen.pipeline.train_classifier import train_classifier
from tests.celeba_layouts import make_kaggle, make_torchvision
from tests.stage_repo import REPO, merge

pytestmark = pytest.mark.slow
FACES = 80  # 64 train, 8 validation, 8 test faces
FAMILIES = ("vae", "beta_vae", "vqvae", "dcgan")
STEPS = {"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 16}
SMALL = {
    "runtime": {"device": "auto", "threads": 1},
    "data": {"attributes": ["Smiling"], "workers": 2},
    "classifier": {"width": 4, "train": STEPS},
    "models": {"vae": {"latent_dim": 8, "widths": [4, 8, 8, 8], "train": STEPS},
               "beta_vae": {"latent_dim": 8, "widths": [4, 8, 8, 8], "train": STEPS},
               "vqvae": {"num_hiddens": 8, "num_residual_hiddens": 4, "num_embeddings": 16, "embedding_dim": 4,
                         "train": STEPS},
               "dcgan": {"ngf": 4, "ndf": 4, "nz": 8, "inversion_steps": 3, "inversion_restarts": 1, "train": STEPS}},
    "prior": {"hidden": 8, "layers": 2, "train": STEPS},
    "evaluate": {"num_samples": 16, "batch_size": 16, "sample_batch_size": 16, "grid_size": 2,
                 "interpolation_steps": 2, "traversal_dims": 1, "num_inversions": 2, "nll_importance_samples": 2,
                 "nll_images": 4, "iwae_curve_images": 2, "iwae_curve_max_k": 4, "inception_samples": 16,
                 "inception_real": 16, "kid_subsets": 2,
                 "kid_subset_size": 8, "prdc_k": 2, "edit_faces": 4, "edit_chance_directions": 1, "identity_faces": 2},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, object, str]:
    """The CelebA-format folder both runs copy from, and the MLflow store both runs log to."""
    root = tmp_path_factory.mktemp("generated")
    faces = generate_celeba_folder(root / "faces", SyntheticConfig(num_images=FACES), 3, 2)
    return faces, read_table(find_layout(faces)), f"sqlite:///{root / 'mlruns.db'}"


@pytest.mark.parametrize("layout, size", [(make_torchvision, 64), (make_kaggle, 128)])
def test_gpu_profile_runs_end_to_end_on_celeba_folders(generated, tmp_path, monkeypatch, layout, size):
    faces, table, store = generated
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    layout(faces, table, tmp_path / "celeba", FACES)
    profile = yaml.safe_load((REPO / "params-celeba-gpu.yaml").read_text())
    raw = merge(profile, merge(SMALL, {"data": {"root": str(tmp_path / "celeba"), "image_size": size}}))
    params = parse_params(raw)
    assert params.runtime.deterministic and params.runtime.precision == "auto" and params.data.source == "celeba"
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("metrics_noise.json", "metrics_tolerances.yaml", "sweeps"):  # what the report reads
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(repo)

    prepare_stage(params)
    train_classifier(params)
    if size == 128:  # Inception features cost most here; their code path does not depend on the size
        reference(params)
    for family in FAMILIES:
        train_family(params, family)
    extract_codes(params)
    fit_prior(params)
    metrics = {family: evaluate_family(params, family) for family in FAMILIES}
    report_stage(params)

    meta = json.loads((repo / "data" / "codes" / "meta.json").read_text())
    assert meta["grid"] == [size // 4, size // 4] and meta["image_size"] == size
    for family in FAMILIES:
        m = metrics[family]
        assert ("kid_inception" in m) == (size == 128) and "fid_facegen" in m, family
        assert "mig" not in m  # real CelebA has no ground-truth factors
        notes = json.loads((repo / "reports" / family / "notes.json").read_text())
        assert not any("Identity preservation" in n and "skipped" in n for n in notes), notes
    for family in ("vae", "beta_vae", "vqvae"):  # reconstructions by an encoder
        assert 0 <= metrics[family]["identity_dist_recon_mean"], family
    assert (repo / "reports" / "index.html").is_file() and (repo / "metrics" / "summary.json").is_file()
    assert json.loads((repo / "metrics" / "summary.json").read_text())
