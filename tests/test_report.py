"""The report renders from stage outputs with every family present and with one missing; sweeps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dataclasses

from facegen import artifacts
from facegen.comparison.noise import NOISE_FILE
from facegen.comparison.prose import analysis, answer, pairs_text
from facegen.comparison.rows import FID_MIN_SAMPLES, comparison_rows, headline, wins
from facegen.comparison.specs import load_specs
from facegen.config import EvaluateConfig, Params, load_params
from facegen.errors import FacegenError
from facegen.evaluation.analyses import side_by_side_rows
from facegen.evaluation.context import EvalContext
from facegen.models import build as build_model
from facegen.pipeline.report import SUMMARY, build, comparison_figures, write_report
from facegen.reporting.grids import grid_array, load_strip, save_grid, save_strip
from facegen.reporting.rate_distortion import plot_rate_distortion
from facegen.reporting.sweep import main as collect_sweeps, plot_sweep, sweep_points
from tests.conftest import make_split, recorded, write_recorded_runs

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_specs(ROOT / "metrics_tolerances.yaml")
PARAMS = load_params(ROOT / "params.yaml")
FAMILIES = ["vae", "beta_vae", "dcgan"]
JITTER = (-0.01, 0.0, 0.01)  # three runs: 1 % noise around each value, shared by every family in a run


def params_of(families: list[str]) -> Params:
    return dataclasses.replace(PARAMS, models={f: PARAMS.models[f] for f in families})


def record(metrics: dict[str, dict[str, float]], families: list[str]) -> None:
    """Recorded runs of these metrics, trusted for ``params_of(families)``."""
    runs = [{f"{fam}.json": {k: v * (1 + d) for k, v in values.items()} for fam, values in metrics.items()}
            for d in JITTER]
    write_recorded_runs(NOISE_FILE, runs, params_of(families))


def per_run(metrics: dict[str, dict[str, float]]):  # noqa: ANN201
    """A Noise of three runs around ``metrics`` (1 % noise shared within a run: every gap separates)."""
    return recorded({f"{fam}.json:{k}": [v * (1 + d) for d in JITTER] for fam, m in metrics.items() for k, v in m.items()})
METRICS = {
    "vae": {"recon_mse": 0.010, "recon_psnr": 20.0, "fid_facegen": 3.0, "mig": 0.10, "num_parameters": 1e6},
    "beta_vae": {"recon_mse": 0.020, "recon_psnr": 17.0, "fid_facegen": 4.0, "mig": 0.30, "num_parameters": 1e6},
    "dcgan": {"recon_mse": 0.040, "recon_psnr": 14.0, "fid_facegen": 1.5, "num_parameters": 2e6},
}


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """Fake evaluate outputs (metrics, notes, a figure per family) in a throw-away repo root."""
    monkeypatch.chdir(tmp_path)
    for fam, values in METRICS.items():
        artifacts.metrics_file(fam).parent.mkdir(parents=True, exist_ok=True)
        artifacts.metrics_file(fam).write_text(json.dumps(values))
        save_grid(torch.rand(4, 3, 8, 8), artifacts.report_dir(fam) / "samples.png", nrow=2)
        (artifacts.report_dir(fam) / "notes.json").write_text(json.dumps([f"{fam} note"]))
    (artifacts.METRICS / "classifier.json").write_text(json.dumps({"test_acc_Smiling": 0.9, "test_acc_mean": 0.9}))
    record(METRICS, FAMILIES)
    return tmp_path


def test_runs_that_disagree_on_the_order_are_not_separated_and_win_nothing():
    close = recorded({"a.json:kid_inception": [0.10, 0.12, 0.11, 0.13], "b.json:kid_inception": [0.12, 0.11, 0.125, 0.12]})
    far = recorded({"a.json:kid_inception": [0.10, 0.12, 0.11, 0.13], "b.json:kid_inception": [0.12, 0.14, 0.125, 0.16]})
    this_run = {"a": {"kid_inception": 0.10}, "b": {"kid_inception": 0.12}}
    assert comparison_rows(this_run, SPECS, close)[0].best is None
    assert comparison_rows(this_run, SPECS, far)[0].best == "a"
    text = " ".join(analysis(this_run, SPECS, close))
    assert "not separated at α = 0.05, a 0.115 ± 0.021 vs b 0.1187 ± 0.01 over 4 runs: a better than b in 2 of 4 runs" \
        in text and "(1 not separated or not ranked): none" in text
    assert wins(comparison_rows(this_run, SPECS, far), ["a", "b"], SPECS) == {"a": ["kid_inception"], "b": []}
    # a family without recorded runs makes the row not ranked, whatever this run says
    unrecorded = {"a": {"kid_inception": 0.01}, "c": {"kid_inception": 1.0}}
    row = comparison_rows(unrecorded, SPECS, far)[0]
    assert row.best is None and "not ranked (no recorded runs of c)" in analysis(unrecorded, SPECS, far)[0]


def test_wins_count_only_headline_rows():
    metrics = {"a": {"test_loss": 1.0, "recon_mse": 1.0, "recon_psnr": 30.0},
               "b": {"test_loss": 2.0, "recon_mse": 2.0, "recon_psnr": 20.0}}
    rows = comparison_rows(metrics, SPECS, per_run(metrics))
    assert {r.metric: r.best for r in rows}["recon_mse"] == "a"  # decided, shown, but not headline
    assert wins(rows, ["a", "b"], SPECS) == {"a": ["recon_psnr"], "b": []}


def test_rows_mark_the_best_family_by_direction():
    rows = {r.metric: r for r in comparison_rows(METRICS, SPECS, per_run(METRICS))}
    assert rows["recon_mse"].best == "vae"          # lower is better
    assert rows["recon_psnr"].best == "vae"         # higher is better
    assert rows["fid_facegen"].best == "dcgan"
    assert rows["num_parameters"].best is None      # no direction
    assert rows["mig"].values.keys() == {"vae", "beta_vae"}
    assert all(r.best is None for r in comparison_rows(METRICS, SPECS))  # no recorded runs: nothing decided
    tied = {"a": {"edit_success_Smiling": 0.5}, "b": {"edit_success_Smiling": 0.5}}
    assert comparison_rows(tied, SPECS, per_run(tied))[0].best is None  # equal in every run: no winner


def test_analysis_is_written_from_the_recorded_runs():
    text = " ".join(analysis(METRICS, SPECS, per_run(METRICS)))
    assert ("**Reconstruction PSNR (dB, mean per image)**: **vae best**, vae 20 ± 0.5 vs beta_vae 17 ± 0.42 over 3 "
            "runs: vae better than beta_vae in 3 of 3 runs (paired t = 173, p_Holm = ") in text
    psnr = next(r for r in comparison_rows(METRICS, SPECS, per_run(METRICS)) if r.metric == "recon_psnr")
    pairs = pairs_text(psnr)
    assert pairs.startswith("**Reconstruction PSNR (dB, mean per image)**, every pair over 3 runs")
    assert pairs.count(" better than ") == 3 and "dcgan better than" not in pairs  # 3 pairs, oriented best-first
    swapped = {"vae": METRICS["beta_vae"], "beta_vae": METRICS["vae"]}
    assert "**Reconstruction PSNR (dB, mean per image)**: **beta_vae best**" in " ".join(
        analysis(swapped, SPECS, per_run(swapped)))


def _check_rendered(missing: list[str]) -> str:
    page = artifacts.REPORTS.joinpath("index.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 - len(missing)
    assert "src=\"reports/" not in page and "<img alt" in page  # embedded, not linked
    md = artifacts.REPORTS.joinpath("report.md").read_text()
    assert "| metric |" in md and "★" in md
    summary = json.loads(SUMMARY.read_text())
    assert summary["missing_families"] == missing
    return page


def test_report_renders_with_every_family(outputs):
    report = build(params_of(FAMILIES), SPECS, {}, ["a global note"])
    write_report(report)
    page = _check_rendered([])
    for fam in FAMILIES:
        assert f"{fam} note" in page and f"<th>{fam}</th>" in page
    assert "mean test accuracy 90.0%" in page and "a global note" in page
    summary = json.loads(SUMMARY.read_text())
    assert summary["best"] == {"recon_psnr": "vae", "mig": "beta_vae"}  # the headline rows it has
    assert summary["decisions"]["recon_psnr"]["lead"] == "vae better than beta_vae in 3 of 3 runs"


def test_report_is_one_section_per_question_with_intervals_floors_and_decisions(outputs):
    """Each question gets its table (n-run mean ± t-interval and this run's point, the real-vs-real
    floor where one exists) and computed sentences; runs that disagree never make a win."""
    artifacts.REFERENCE_METRICS.write_text(json.dumps({"fid_facegen": 0.4}))
    write_report(build(params_of(FAMILIES), SPECS, {}, []))
    page = artifacts.INDEX.read_text()
    for title in ("Reconstruction", "Sample realism", "Disentanglement", "Cost", "Appendix: every metric"):
        assert f">{title}</h2>" in page, title
    assert "<th>real vs real (same n)</th>" in page and "<td class='ref'>0.4</td>" in page
    assert "3 ± 0.075 (run 3)" in page  # vae's FID: mean of 3 runs ± t_2(0.975) · sd / √3
    md = artifacts.MARKDOWN.read_text()
    assert md.index("## Reconstruction") < md.index("## Sample realism") < md.index("## Appendix: every metric")
    # runs that disagree on the order: not separated, whatever the committed run says
    runs = [{"vae.json": {"kid_inception": a}, "beta_vae.json": {"kid_inception": b}}
            for a, b in ((0.3, 0.301), (0.302, 0.299), (0.298, 0.3))]
    write_recorded_runs(NOISE_FILE, runs, params_of(FAMILIES))
    for fam in ("vae", "beta_vae"):
        artifacts.metrics_file(fam).write_text(json.dumps(runs[0][f"{fam}.json"]))
    artifacts.metrics_file("dcgan").unlink()
    write_report(build(params_of(FAMILIES), SPECS, {}, []))
    page = artifacts.INDEX.read_text()
    assert "not separated at α = 0.05" in page and " ★</td>" not in page


def test_runs_of_other_params_decide_nothing(outputs):
    other = dataclasses.replace(params_of(FAMILIES), evaluate=dataclasses.replace(PARAMS.evaluate, num_samples=7))
    write_report(build(other, SPECS, {}, []))
    page = artifacts.INDEX.read_text()
    assert " ★</td>" not in page and "the recorded runs are of other params" in page


def test_report_renders_with_a_family_missing(outputs):
    artifacts.metrics_file("beta_vae").unlink()
    write_report(build(params_of(FAMILIES), SPECS, {}, []))
    page = _check_rendered(["beta_vae"])
    assert "Not evaluated" in page and "<th>beta_vae</th>" not in page
    assert "only vae has it" in page  # MIG is now a single-family metric


def test_comparison_figures_assemble_the_rows_evaluate_wrote(outputs, tiny_vae_cfg, rt):
    """evaluate@<family> writes its rows (with the model loaded); the report only stacks files."""
    for fam in ("vae", "beta_vae"):
        model = build_model(fam, tiny_vae_cfg, 16)
        ctx = EvalContext(model=model, family=fam, train=make_split(8, 16), test=make_split(8, 16, seed=1),
                          cfg=EvaluateConfig(grid_size=4), rt=rt, seed=0, out_dir=artifacts.report_dir(fam))
        assert side_by_side_rows(ctx) == {}
    notes: list[str] = []
    out = comparison_figures(["vae", "beta_vae", "dcgan"], notes)
    assert set(out) == {"reconstructions", "samples"} and all(p.is_file() for p in out.values())
    assert load_strip(artifacts.report_dir("vae") / artifacts.ROW_SAMPLES).shape == (4, 3, 16, 16)
    assert any("dcgan" in n and "no reconstructions" in n for n in notes)


EXP_SHOW = [{
    "rev": "workspace", "name": None, "experiments": None,
    "data": {"rev": "workspace", "timestamp": None,
             "params": {"params.yaml": {"data": {"models": {"beta_vae": {"beta": 4.0}}}}},
             "metrics": {"metrics/beta_vae.json": {"data": {"recon_mse": 0.02, "test_kl": 20.0, "mig": 0.2}}}},
}, {
    "rev": "abc1234def", "name": "main", "data": {"rev": "abc1234def", "timestamp": "2026-01-01T00:00:00",
                                                 "params": {}, "metrics": {}},
    "experiments": [{"name": f"exp-{b}", "revs": [{
        "rev": f"{b}aaaaaaa", "name": f"exp-{b}", "experiments": None,
        "data": {"rev": f"{b}aaaaaaa", "timestamp": f"2026-01-0{b}T00:00:00",
                 "params": {"params.yaml": {"data": {"models": {"beta_vae": {"beta": float(b)}}}}},
                 "metrics": {"metrics/beta_vae.json": {"data": {"recon_mse": 0.01 * b, "test_kl": 40.0 / b,
                                                                "mig": 0.05 * b}}}}}]} for b in (1, 2, 8)],
}]


def test_sweep_points_from_dvc_exp_show_and_plot(tmp_path):
    points = sweep_points(EXP_SHOW, "beta_vae", "models.beta_vae.beta")
    assert [p["value"] for p in points] == [1.0, 2.0, 4.0, 8.0]
    assert points[0]["metrics"]["test_kl"] == 40.0 and points[0]["name"] == "exp-1"
    assert [p["rev"] for p in points] == ["1aaaaaaa", "2aaaaaaa", "workspace", "8aaaaaaa"]
    sweep = {"family": "beta_vae", "param": "models.beta_vae.beta", "points": points}
    assert plot_sweep(sweep, tmp_path / "sweep.png", ("vae", 1.0, {"mig": 0.1})).is_file()
    assert plot_sweep({**sweep, "points": points[:1]}, tmp_path / "one.png") is None


def test_sweep_cli_collects_beta_vae_and_vqvae_in_one_go(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vq = [{"rev": f"k{k}", "name": f"k-{k}", "experiments": None,
           "data": {"rev": f"k{k}", "timestamp": "2026-01-05T00:00:00",
                    "params": {"params.yaml": {"data": {"models": {"vqvae": {"num_embeddings": k}}}}},
                    "metrics": {"metrics/vqvae.json": {"data": {"rate_bits": 2.0 * k, "recon_psnr": 25.0}}}}}
          for k in (32, 512)]
    (tmp_path / "exp.json").write_text(json.dumps(EXP_SHOW + vq))
    collect_sweeps(["--exp-show", "exp.json"])  # default: both families, each with its swept parameter
    beta, vqvae = (json.loads((tmp_path / "sweeps" / f"{f}.json").read_text()) for f in ("beta_vae", "vqvae"))
    assert beta["param"] == "models.beta_vae.beta" and [p["value"] for p in beta["points"]] == [1, 2, 4, 8]
    assert vqvae == {"family": "vqvae", "param": "models.vqvae.num_embeddings", "points": [
        {"value": 32.0, "name": "k-32", "rev": "k32", "metrics": {"rate_bits": 64.0, "recon_psnr": 25.0}},
        {"value": 512.0, "name": "k-512", "rev": "k512", "metrics": {"rate_bits": 1024.0, "recon_psnr": 25.0}}]}
    with pytest.raises(FacegenError, match="--param: 1 key"):
        collect_sweeps(["--exp-show", "exp.json", "--family", "vae", "dcgan", "--param", "models.vae.beta"])
    with pytest.raises(FacegenError, match="--family vae: no default swept parameter"):
        collect_sweeps(["--exp-show", "exp.json", "--family", "vae"])


# Fixture metrics with the rates of the committed default run (issue 26): bits per test image.
RATED = {
    "vae": {"rate_bits": 29.7, "recon_psnr": 25.02, "kid_inception": 0.2156, "edit_success_at_pres90_mean": 0.41,
            "num_parameters": 1.5e6, "inception_n_fake": 256.0, "inception_n_real": 500.0},
    "beta_vae": {"rate_bits": 6.5, "recon_psnr": 20.84, "kid_inception": 0.2375, "edit_success_at_pres90_mean": 0.27,
                 "num_parameters": 1.5e6, "inception_n_fake": 256.0, "inception_n_real": 500.0},
    "vqvae": {"rate_bits": 930.0, "rate_raw_bits": 2304.0, "recon_psnr": 28.48, "kid_inception": 0.1953,
              "edit_success_at_pres90_mean": 0.81, "num_parameters": 2.3e5, "inception_n_fake": 256.0,
              "inception_n_real": 500.0},
    "dcgan": {"recon_psnr": 23.2, "kid_inception": 0.1794, "edit_success_at_pres90_mean": 0.64,
              "num_parameters": 2.4e6, "inception_n_fake": 256.0, "inception_n_real": 500.0},
}
BETA_SWEEP = {"family": "beta_vae", "param": "models.beta_vae.beta", "points": [
    {"value": b, "name": f"b{b}", "rev": "r", "metrics": {"rate_bits": 60.0 / b, "recon_psnr": 27.0 - b / 4,
                                                       "kid_inception": 0.2 + b / 100}} for b in (0.5, 1, 2, 4, 8)]}
VQ_SWEEP = {"family": "vqvae", "param": "models.vqvae.num_embeddings", "points": [
    {"value": k, "name": f"k{k}", "rev": "r", "metrics": {"rate_bits": r, "recon_psnr": p, "kid_inception": 0.2}}
    for k, r, p in ((32, 500.0, 26.5), (512, 930.0, 28.48))]}


def test_rate_distortion_figure_with_and_without_sweeps_and_a_family_without_rate(tmp_path):
    from PIL import Image
    with_sweeps = plot_rate_distortion(RATED, [BETA_SWEEP, VQ_SWEEP, {**VQ_SWEEP, "points": []}],
                                       tmp_path / "rd.png", kid_floor=-0.0001)
    alone = plot_rate_distortion(RATED, [], tmp_path / "alone.png")  # dcgan has no rate: drawn as "no encoder"
    for path in (with_sweeps, alone):
        w, h = Image.open(path).size
        assert (w, h) == (1080, 414) and path.stat().st_size > 20_000
    unrated = {fam: {k: v for k, v in m.items() if not k.startswith("rate")} for fam, m in RATED.items()}
    assert plot_rate_distortion(unrated, [], tmp_path / "none.png") is None  # nothing has a rate: no figure
    assert not (tmp_path / "none.png").exists()


def test_first_screen_sentences_are_computed_from_the_metrics():
    lines = answer(RATED, SPECS, None, {"kid_inception": -0.0001, "inception_n_fake": 256.0, "inception_n_real": 500.0})
    text = " ".join(lines)
    assert lines[0].startswith("**Rate**") and "beta_vae 6.5, vae 29.7, vqvae 930 (2304 raw" in lines[0]
    assert "dcgan: no encoder, so no rate" in lines[0]
    # no recorded runs: nothing is recommended, the run's values are shown as such
    assert ("**For reconstruction** (Reconstruction PSNR (dB, mean per image)): not ranked (no recorded runs of vae, "
            "beta_vae, vqvae, dcgan); this run: vae 25.02, beta_vae 20.84, vqvae 28.48, dcgan 23.2; vqvae's latent "
            "carries 31.3× vae's bits (930 vs 29.7 bits/image)") in text
    runs = per_run(RATED)
    text = " ".join(answer(RATED, SPECS, runs, {"kid_inception": -0.0001, "inception_n_fake": 256.0,
                                               "inception_n_real": 500.0}))
    assert ("**For reconstruction use vqvae** (Reconstruction PSNR (dB, mean per image)): vqvae 28.48 ± 0.71 vs vae "
            "25.02 ± 0.62 over 3 runs: vqvae better than vae in 3 of 3 runs") in text
    assert "**For edits use vqvae**" in text and "vqvae's latent carries 930 bits/image; dcgan has no encoder rate" in text
    assert "**For samples use dcgan**" in text and "real vs real -0.0001 at the same n (256 vs 500 faces)" in text
    assert "vqvae 0.23 M parameters" in text
    halved = {**RATED, "vqvae": {**RATED["vqvae"], "rate_bits": 14.85}}  # now half the VAE's bits
    assert "vqvae's latent carries 2.0× fewer bits than vae's (14.85 vs 29.7 bits/image)" in " ".join(
        answer(halved, SPECS, runs))
    # runs that disagree on the order: nobody is recommended
    crossing = recorded({f"{f}.json:kid_inception": [m["kid_inception"] + 0.05 * ((i + j) % 3 - 1) for j in range(4)]
                         for i, (f, m) in enumerate(RATED.items())})
    assert "**For samples** (KID (Inception, standard; unbiased)): not separated" in " ".join(
        answer(RATED, SPECS, crossing))


def test_inception_fid_is_a_headline_only_from_2048_samples():
    def fid_row(n: float):
        metrics = {f: {"fid_inception": v, "inception_n_fake": n} for f, v in (("a", 200.0), ("b", 230.0))}
        return next(r for r in comparison_rows(metrics, SPECS) if r.metric == "fid_inception")
    small, large = fid_row(FID_MIN_SAMPLES - 1), fid_row(FID_MIN_SAMPLES)
    assert "biased toward less diverse samples" in small.detail and "n = 2047" in small.detail
    assert small.best is None and large.detail == ""  # shown, never a win; KID is the headline either way
    assert not headline(large, SPECS)


def test_report_first_screen_is_the_answer_and_sweeps_render(outputs):
    for fam, values in RATED.items():
        artifacts.metrics_file(fam).write_text(json.dumps({**values, "inception_kid_subset_size": 256.0}))
    record(RATED, list(RATED))
    artifacts.REFERENCE_METRICS.write_text(json.dumps({"kid_inception": -0.0001, "inception_n_fake": 256.0,
                                                       "inception_n_real": 500.0}))
    Path("sweeps").mkdir()
    Path("sweeps/beta_vae.json").write_text(json.dumps(BETA_SWEEP))
    Path("sweeps/vqvae.json").write_text(json.dumps({**VQ_SWEEP, "points": []}))
    write_report(build(params_of(list(RATED)), SPECS, {}, []))
    page, md = artifacts.INDEX.read_text(), artifacts.MARKDOWN.read_text()
    assert artifacts.RATE_DISTORTION.is_file() and (artifacts.REPORTS / "sweep_beta_vae.png").is_file()
    assert page.index("alt=\"Rate (bits per test image") < page.index("For reconstruction use vqvae") < page.index("<table>")
    assert md.index("](rate_distortion.png)") < md.index("For reconstruction use vqvae") < md.index("| metric |")
    assert "**Wins** over the 3 headline metrics" in md and md.index("**Wins** over") > md.index("## Appendix")
    assert "vqvae sweep of models.vqvae.num_embeddings: not collected (0 point(s)" in page
    assert "**Rate** behind Reconstruction PSNR (dB, mean per image): vqvae's latent carries 31.3× vae's bits" in md


def test_single_family_analysis_says_there_is_nothing_to_compare():
    assert analysis({"vae": METRICS["vae"]}, SPECS) == ["Only vae evaluated: nothing to compare yet."]


def test_grid_tiles_rows_of_nrow_with_white_borders_and_strips_round_trip(tmp_path):
    """make_grid's layout: cells at pad + k (size + pad), a short last row left white; strips are lossless."""
    images = torch.stack([torch.full((3, 4, 5), v) for v in (0.0, 0.5, 0.75)])
    images[1, 0] = 0.25  # a channel that differs, so a transposed or channel-swapped tiling shows
    grid = grid_array(images, nrow=2, padding=2)
    assert grid.shape == (2 * (4 + 2) + 2, 2 * (5 + 2) + 2, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:6, 2:7], 0)
    np.testing.assert_array_equal(grid[2:6, 9:14, 0], 64)
    np.testing.assert_array_equal(grid[2:6, 9:14, 1:], 128)
    np.testing.assert_array_equal(grid[8:12, 2:7], 191)  # image 3 opens the second row
    assert (grid[:2] == 255).all() and (grid[:, 7:9] == 255).all() and (grid[8:12, 9:14] == 255).all()
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) images, got shape \(3, 4, 5\)"):
        grid_array(images[0])
    strip = torch.rand(3, 3, 6, 6)
    restored = load_strip(save_strip(strip, tmp_path / "strip.png"))
    assert restored.shape == strip.shape and (restored - strip).abs().max() <= 0.5 / 255 + 1e-6
