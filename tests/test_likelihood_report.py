"""The likelihood section beside its baselines, and the NLL row that restates reconstruction (issue 26)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facegen import artifacts
from facegen.config import ConfigError
from facegen.comparison.noise import NOISE_FILE
from facegen.comparison.page import page
from facegen.comparison.prose import analysis
from facegen.comparison.rows import comparison_rows, restated, wins
from facegen.comparison.specs import load_specs, parse_specs
from facegen.pipeline.report import build
from facegen.comparison.document import to_markdown
from tests.conftest import recorded, write_recorded_runs
from tests.test_report import params_of

SPECS = load_specs(Path(__file__).resolve().parents[1] / "metrics_tolerances.yaml")


def test_the_nll_row_does_not_win_again_where_it_restates_psnr():
    def runs(metrics):  # noqa: ANN001, ANN202 - three runs, every gap separated
        return recorded({f"{f}.json:{k}": [v, v + 0.01, v - 0.01] for f, m in metrics.items() for k, v in m.items()})

    same = {"a": {"recon_psnr": 30.0, "nll_bits_per_dim": 5.0}, "b": {"recon_psnr": 20.0, "nll_bits_per_dim": 6.0}}
    rows = comparison_rows(same, SPECS, runs(same))
    assert [restated(r, rows, SPECS) for r in rows] == [False, True]  # recon_psnr, then nll_bits_per_dim
    assert wins(rows, ["a", "b"], SPECS) == {"a": ["recon_psnr"], "b": []}
    tally = analysis(same, SPECS, runs(same))[-1]
    assert "over the 1 headline metrics" in tally and "(0 not separated or not ranked; not counted again: Test NLL" in tally
    assert tally.endswith(": a 1.")
    # a family best on the NLL but not on PSNR: the likelihood says something of its own, and wins
    other = {"a": {"recon_psnr": 30.0, "nll_bits_per_dim": 6.0}, "b": {"recon_psnr": 20.0, "nll_bits_per_dim": 5.0}}
    assert wins(comparison_rows(other, SPECS, runs(other)), ["a", "b"], SPECS) == {"a": ["recon_psnr"],
                                                                                  "b": ["nll_bits_per_dim"]}


def test_restates_must_name_a_metric():
    with pytest.raises(ConfigError, match="metrics.nll.restates must be a string"):
        parse_specs({"metrics": {"nll": {"restates": True}}})


def test_the_likelihood_section_prints_the_uniform_and_codec_baselines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {"vae": {"recon_psnr": 26.0, "nll_bits_per_dim": 5.81, "iwae_gap_at_nll_k_bits_per_dim": 0.0216},
              "vqvae": {"recon_psnr": 28.0, "nll_bits_per_dim": 5.30}}
    for fam, metrics in values.items():
        artifacts.metrics_file(fam).parent.mkdir(parents=True, exist_ok=True)
        artifacts.metrics_file(fam).write_text(json.dumps(metrics))
    write_recorded_runs(NOISE_FILE, [])  # nothing recorded: no win, the sentences stand alone
    artifacts.REFERENCE_METRICS.write_text(json.dumps({"codec_png_bits_per_dim": 3.13, "codec_webp_bits_per_dim": 2.66}))
    text = to_markdown(page(build(params_of(list(values)), SPECS, {}, [])), artifacts.REPORTS)
    section = text[text.index("## Likelihood"):text.index("## Appendix")]
    assert "Baselines on the same test faces (bits/dim): uniform 8, PNG 3.13, lossless WebP 2.66." in section
    assert "This run's best bound, vqvae's 5.3, is 2.64 bits/dim above lossless WebP." in section
    assert "still falls by 0.0216 (vae) bits/dim" in section
