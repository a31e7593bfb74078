"""PixelCNN priors (gated and masked), the fast sampler, and the extract_codes -> fit_prior stages."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from facegen import artifacts
from facegen.config import PriorConfig, TrainConfig, VQVAEConfig, parse_params
from facegen.data.codes import CodeSplit, load_codes
from facegen.models import build
from facegen.models.pixelcnn import PixelCNNPrior, draw
from facegen.runtime import seed_everything
from facegen.models.checkpoint import load_model, save_model
from facegen.pipeline.extract_codes import extract_codes
from facegen.training.loop import fit
from facegen.models.checkpoint import load_prior, load_trained, save_prior
from facegen.pipeline.fit_prior import fit_prior
from tests.conftest import ATTRS, make_split

K, GRID = 12, (5, 6)


def prior(arch: str, conditional: bool = True, seed: int = 0, **kw) -> PixelCNNPrior:
    torch.manual_seed(seed)
    cfg = PriorConfig(arch=arch, hidden=8, layers=3, kernel_size=3 if arch == "gated" else 5, conditional=conditional,
                      train=TrainConfig(epochs=3, batch_size=16, lr=3e-3), **kw)
    model = PixelCNNPrior(cfg, K, GRID, ATTRS)
    with torch.no_grad():  # non-zero position maps and BatchNorm statistics, so the sampler uses them
        for layer in model.net.layers if arch == "gated" else ():
            layer.position.uniform_(-0.5, 0.5)
        for norm in model.net.norms if arch == "masked" else ():
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def influence(model: PixelCNNPrior, codes: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """(P, P) bool: [t, s] = changing the code at raster position t changes the logits at s."""
    base = model.logits(codes, attrs)
    rows = []
    for t in range(codes[0].numel()):
        changed = codes.clone().flatten(1)
        changed[:, t] = (changed[:, t] + 1) % K
        diff = (model.logits(changed.view_as(codes), attrs) - base).abs().amax(dim=(0, 1))
        rows.append(diff.flatten() > 0)
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ["gated", "masked"])
@pytest.mark.parametrize("conditional", [False, True])
def test_changing_position_t_never_changes_logits_up_to_t(arch, conditional):
    codes = torch.randint(0, K, (2, *GRID), generator=torch.Generator().manual_seed(1))
    attrs = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    deps = influence(prior(arch, conditional), codes, attrs)
    assert not deps.tril().any()            # position t influences no position s <= t
    assert deps[0, 1] and deps.triu(1).any()  # ...but it does influence what follows


def test_gated_stacks_have_no_blind_spot_unlike_the_masked_reference():
    """On a 3x5 map with three k=3 layers, position (2, 0) sees every earlier position within its
    ±3-column reach through the gated stacks; the masked stack misses the upper-right ones."""
    codes = torch.randint(0, K, (1, 3, 5), generator=torch.Generator().manual_seed(2))
    seen = {}
    for arch in ("gated", "masked"):
        torch.manual_seed(0)
        model = PixelCNNPrior(PriorConfig(arch=arch, hidden=8, layers=3, kernel_size=3), K, (3, 5), ATTRS).eval()
        seen[arch] = influence(model, codes, torch.zeros(1, 2))[:10, 10].view(2, 5)  # rows 0-1 -> (2, 0)
    assert seen["gated"][:, :4].all()
    assert not seen["masked"][1, 2] and not seen["masked"][0, 3]


def naive_sample(model: PixelCNNPrior, uniforms: torch.Tensor, attrs: torch.Tensor, temperature: float) -> torch.Tensor:
    """The notebook's loop: a full forward pass per position, with the same inverse-CDF draw."""
    codes = torch.zeros(uniforms.shape, dtype=torch.long)
    with torch.no_grad():
        for i in range(uniforms.shape[1]):
            for j in range(uniforms.shape[2]):
                codes[:, i, j] = draw(model.logits(codes, attrs)[:, :, i, j], uniforms[:, i, j], temperature)
    return codes


@pytest.mark.parametrize("arch", ["gated", "masked"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_fast_sampler_equals_naive_sampler_given_the_same_uniforms(arch, temperature):
    model = prior(arch, seed=3)
    uniforms = torch.rand(4, *GRID, generator=torch.Generator().manual_seed(4))
    attrs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fast = model.sample_from(uniforms, attrs, temperature)
    assert torch.equal(fast, naive_sample(model, uniforms, attrs, temperature))


def test_sample_codes_same_generator_same_noise():
    model = prior("gated", seed=5)
    rows, probs = PixelCNNPrior.attribute_table(torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]))
    model.attr_rows, model.attr_probs = rows, probs
    a = model.sample_codes(3, torch.Generator().manual_seed(0))
    b = model.sample_codes(3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (3, *GRID) and int(a.max()) < K
    assert probs.tolist() == pytest.approx([2 / 3, 1 / 3])


def code_split(n: int, seed: int) -> CodeSplit:
    """Learnable code maps: a smooth ramp whose offset depends on the first attribute."""
    g = torch.Generator().manual_seed(seed)
    attrs = (torch.rand(n, 2, generator=g) > 0.5).float()
    ramp = torch.arange(GRID[1]).repeat(GRID[0], 1)
    codes = (ramp + 4 * attrs[:, :1, None].long() + (torch.rand(n, *GRID, generator=g) > 0.9).long()) % K
    return CodeSplit(codes.to(torch.int16), attrs, ATTRS)


@pytest.mark.parametrize("arch", ["gated", "masked"])
def test_prior_trains_through_the_shared_loop(arch, rt):
    model = rt.prepare(prior(arch).train())
    result = fit(model, code_split(128, 0), code_split(32, 1), model.cfg.train, rt, seed_everything(0))
    bits = [row["train/bits_per_code"] for row in result.history]
    assert bits[-1] < bits[0] and result.history[-1]["val/bits_per_code"] < np.log2(K)


def test_prior_checkpoint_round_trip(tmp_path):
    model = prior("gated", seed=6)
    model.attr_rows, model.attr_probs = PixelCNNPrior.attribute_table(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    save_prior(model, tmp_path / "model.pt")
    loaded = load_prior(tmp_path / "model.pt")
    codes, attrs = torch.randint(0, K, (2, *GRID)), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.equal(loaded.logits(codes, attrs), model.logits(codes, attrs))
    assert torch.equal(loaded.attr_rows, model.attr_rows) and loaded.attr_names == ATTRS


def test_extract_codes_then_fit_prior_then_sample(tmp_path, monkeypatch, rt):
    """The two stages on tiny data in a scratch repo: outputs, metrics, and a VQ-VAE that samples."""
    monkeypatch.chdir(tmp_path)
    table = []
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        faces = make_split(n, seed=len(table))
        artifacts.PREPARED.mkdir(parents=True, exist_ok=True)
        np.save(artifacts.PREPARED / f"{split}.npy", faces.images.numpy())
        table.append(pd.DataFrame(faces.attrs.numpy().astype(int), columns=list(ATTRS)).assign(split=split))
    pd.concat(table).to_csv(artifacts.PREPARED / "attrs.csv", index=False)
    vq_cfg = VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, num_embeddings=K, embedding_dim=4)
    save_model(build("vqvae", vq_cfg, 16), artifacts.model_file("vqvae"))
    params = parse_params({
        "runtime": {"device": "cpu", "precision": "fp32", "threads": 2},
        "data": {"image_size": 16, "attributes": list(ATTRS)},
        "prior": {"hidden": 8, "layers": 2, "train": {"epochs": 1, "batch_size": 16}},
    })
    extract_codes(params)
    train = load_codes(artifacts.CODES, "train", ATTRS)
    assert train.images.dtype == torch.int16 and train.images.shape == (48, 4, 4)
    assert (artifacts.CODES / "code_usage.png").is_file()
    _, metrics = fit_prior(params)
    written = json.loads((artifacts.MODELS / "pixelcnn" / "metrics.json").read_text())
    per_code, per_dim = metrics["code_nll_conditional_bits_per_code"], metrics["code_nll_conditional_bits_per_dim"]
    assert written == metrics and 0 < per_code < 2 * np.log2(K)
    assert per_dim == pytest.approx(per_code * 16 / (3 * 256))
    assert artifacts.train_log("prior").read_text().startswith("epoch,")
    vqvae = load_trained("vqvae")
    images = vqvae.sample(3, torch.Generator().manual_seed(0), torch.tensor([[1.0, 0.0]] * 3))
    assert images.shape == (3, 3, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert vqvae.sampling_temperature == params.prior.temperature  # what the report states beside realism
    # bench_temperature swaps the prior's temperature in place: same generator seed, only the temperature differs
    from benchmarks.bench_temperature import at_temperature, choose, summary
    draws = []
    for t in (0.5, 0.5, 1.0):
        at_temperature(vqvae, t)
        draws.append(vqvae.sample(6, torch.Generator().manual_seed(3)))
    cold, again, hot = draws
    assert vqvae.sampling_temperature == 1.0
    assert cold.shape == (6, 3, 16, 16) and torch.equal(cold, again) and not torch.equal(cold, hot)
    rows = [{"seed": s, "temperature": t, "kid_inception": k, "recall": r}
            for s, t, k, r in ((1, 0.5, 0.2, 0.5), (1, 1.0, 0.3, 0.6), (2, 0.5, 0.25, 0.5), (2, 1.0, 0.2, 0.6))]
    by_t = summary(rows)
    assert by_t == {"0.5": {"kid_inception_mean": pytest.approx(0.225), "recall_mean": 0.5, "lowest_on_seeds": 1},
                    "1.0": {"kid_inception_mean": pytest.approx(0.25), "recall_mean": 0.6, "lowest_on_seeds": 1}}
    # 0.5 has the lower KID but keeps only 83 % of T = 1's recall (< 90 %): the as-trained prior is chosen
    assert choose(by_t) == 1.0
    by_t["0.5"]["recall_mean"] = 0.55
    assert choose(by_t) == 0.5


def test_prior_config_rejects_even_kernels():
    with pytest.raises(Exception, match="kernel_size must be odd"):
        dataclasses.replace(PriorConfig(), kernel_size=4)
