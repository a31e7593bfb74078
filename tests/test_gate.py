"""The CI metric gate: headline metrics against the recorded runs; known breakage fails, every recorded run passes."""
from __future__ import annotations

import dataclasses

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facegen.ci.metric_gate import SKIP, compare, leave_one_out, main
from facegen.comparison.bands import GateRule, prediction_k
from facegen.comparison.noise import MIN_RUNS, changed_params, fingerprint, load_noise, recorded_params, spread_of, \
    summarise
from facegen.comparison.specs import load_specs, parse_specs
from facegen.config import load_params
from facegen.errors import ConfigError
from facegen.runtime import machine_kind

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "metrics_tolerances.yaml"
# recon_psnr (linear), kid_inception and mig (log) are headline metrics: gated; the rest are not.
BASE = {"recon_psnr": 20.0, "kid_inception": 0.05, "mig": 0.2, "recon_mse": 0.01, "sample_img_per_s": 500.0}
SCALE = {"recon_psnr": 0.08, "kid_inception": 0.002, "mig": 0.01, "recon_mse": 0.0002, "sample_img_per_s": 50.0}


def _runs(n: int = 4) -> list[dict[str, dict[str, float]]]:
    """n runs spread evenly around BASE; the first is the committed one."""
    steps = np.linspace(-1.5, 1.5, n)
    return [{"vae.json": {k: v + d * SCALE[k] for k, v in BASE.items()}} for d in steps]


def _write(directory: Path, doc: dict, name: str = "vae.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(doc))
    return directory


def _noise(tmp_path: Path, runs: list | None = None, kind: dict | None = None, **extra) -> Path:
    runs = runs or _runs()
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "noise.json"
    path.write_text(json.dumps({"command": "test", "runs": [{"seed": i, "precision": "bf16"} for i in range(len(runs))],
                                "committed": {"seed": 0, "precision": "bf16", "kind": kind or {"cpu_flags": ["other"]}},
                                "metrics": summarise(runs), **extra}))
    return path


def _gate(tmp_path: Path, new: dict, old: dict | None = None, noise: Path | None = None, *flags: str) -> int:
    old = old or _runs()[0]["vae.json"]
    return main(["--metrics-dir", str(_write(tmp_path / "new", new)), "--baseline-dir", str(_write(tmp_path / "old", old)),
                 "--specs", str(SPECS), "--noise", str(noise or _noise(tmp_path)), *flags])


def test_summarise_keeps_every_runs_value_in_run_order_and_only_metrics_every_run_has():
    runs = _runs()
    runs[0]["vae.json"]["only_once"] = 1.0
    runs[1]["summary.json"] = {"x": 1.0}
    stats = summarise(runs)
    assert "vae.json:only_once" not in stats and not any(k.startswith("summary.json") for k in stats)
    values = [r["vae.json"]["recon_psnr"] for r in runs]
    s = stats["vae.json:recon_psnr"]
    assert s["values"] == values and s["n"] == 4 and s["mean"] == pytest.approx(np.mean(values))
    assert s["sd"] == pytest.approx(np.std(values, ddof=1))


def test_band_is_a_t_prediction_bound_around_the_runs_mean():
    rule = GateRule(false_alarm=0.05, floor_rel=0.01)
    # t_6(1 - 0.05/22) = 4.405 (tables: 4.317 at 1 - 0.0025): one new draw vs the mean of 7 runs
    assert rule.k(7, 22) == pytest.approx(4.405 * math.sqrt(1 + 1 / 7), rel=2e-3)
    assert prediction_k(7, 22, 0.05) == rule.k(7, 22) and rule.band(spread_of([1.0] * 7), 22) == 0.01  # the floor
    assert rule.k(7, 100) > rule.k(7, 22) and rule.k(4, 22) > rule.k(7, 22)  # more metrics or fewer runs: wider
    assert rule.k(7, 22, two_sided=True) == pytest.approx(rule.k(7, 44))


def _family_wise_false_alarms(k: float, n: int, m: int, trials: int, seed: int = 0) -> float:
    """Fraction of simulated gate runs where a no-change rerun falls below the runs' mean by more than k sd
    on any of m independent Gaussian metrics (each measured over n runs)."""
    rng = np.random.default_rng(seed)
    runs = rng.standard_normal((trials, m, n))
    fresh = rng.standard_normal((trials, m))
    return float(((runs.mean(axis=2) - fresh) > k * runs.std(axis=2, ddof=1)).any(axis=1).mean())


def test_band_bounds_the_false_alarm_rate_of_a_no_change_rerun():
    """Known answer: a rerun that changed only the arithmetic is one more draw; the gate must pass it in
    >= 95 % of gate runs. Centring on the committed run instead (sqrt 2 rather than sqrt(1 + 1/n)) would
    need a wider k for the same rate: the teeth come from the mean."""
    rule, n, m = GateRule(false_alarm=0.05), 7, 22
    assert _family_wise_false_alarms(rule.k(n, m), n, m, trials=4000) <= rule.false_alarm + 0.01
    assert _family_wise_false_alarms(rule.k(n, m) / 2, n, m, trials=4000) > 0.2  # half the band: false alarms


def test_a_regression_beyond_the_band_fails_with_the_table(tmp_path, capsys):
    # recon_psnr: 4 runs, sd 0.086, k(4 runs, 3 gated) = 6.5 -> band 0.56 dB; 2 dB down fails
    assert _gate(tmp_path, {**BASE, "recon_psnr": 18.0}) == 1
    out = capsys.readouterr().out
    assert "METRIC GATE FAILED: 1 regression(s) beyond the band of the recorded runs" in out
    line = next(line for line in out.splitlines() if line.startswith("vae.json:recon_psnr"))
    assert "18" in line and "linear" in line


def test_log_scale_catches_a_collapse_to_zero_and_a_doubled_kid(tmp_path):
    assert _gate(tmp_path / "a", {**BASE, "mig": 0.0}) == 1          # log 0 = -inf: infinitely far
    assert _gate(tmp_path / "b", {**BASE, "kid_inception": 0.10}) == 1  # x2 = +0.69 in log units, sd 0.05
    assert _gate(tmp_path / "c", {**BASE, "kid_inception": 0.052}) == 0  # within the spread


def test_the_lead_a_decision_rests_on_is_gated_when_the_values_alone_are_too_noisy(tmp_path, capsys):
    """Two families whose MIG moves together from run to run (a shared split): each value alone has a
    wide band, but the β-VAE's lead over the VAE is steady; a β-VAE at the VAE's level must fail."""
    shared = (0.5, 1.0, 2.0, 1.5)
    runs = [{"vae.json": {"mig": 0.02 * m}, "beta_vae.json": {"mig": 0.1 * m}} for m in shared]
    noise = _noise(tmp_path, runs)
    old = _write(tmp_path / "old", runs[0]["beta_vae.json"], "beta_vae.json")
    _write(old, runs[0]["vae.json"], "vae.json")
    new = _write(tmp_path / "new", {"mig": 0.02 * shared[0]}, "beta_vae.json")  # the VAE's level
    _write(new, runs[0]["vae.json"], "vae.json")
    args = ["--metrics-dir", str(new), "--baseline-dir", str(old), "--specs", str(SPECS), "--noise", str(noise)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "beta_vae.json-vae.json:mig" in out.split("METRIC GATE FAILED")[1]  # the lead, not the value, fails
    assert "beta_vae.json:mig" not in out.split("METRIC GATE FAILED")[1].replace("beta_vae.json-vae.json:mig", "")
    _write(new, runs[0]["beta_vae.json"], "beta_vae.json")
    assert main(args) == 0


def test_improvements_noise_and_non_headline_metrics_pass(tmp_path, capsys):
    assert _gate(tmp_path, {**BASE, "recon_psnr": 25.0, "kid_inception": 0.01, "mig": 0.5}) == 0
    assert _gate(tmp_path / "n", {**BASE, "recon_psnr": 19.9, "recon_mse": 0.02, "sample_img_per_s": 1.0}) == 0
    assert "metric gate passed: 3 gated metrics" in capsys.readouterr().out


def test_a_headline_metric_without_recorded_runs_fails_naming_it(tmp_path, capsys):
    runs = [{"vae.json": {k: v for k, v in r["vae.json"].items() if k != "mig"}} for r in _runs()]
    assert _gate(tmp_path, BASE, None, _noise(tmp_path, runs)) == 1
    out = capsys.readouterr().out
    assert "without recorded runs" in out and "vae.json:mig" in out
    few = _runs(MIN_RUNS - 1)
    assert _gate(tmp_path / "few", BASE, few[0]["vae.json"], _noise(tmp_path / "few", few)) == 1


def test_stale_files_are_reported_ungated_and_the_rest_still_gated(tmp_path, capsys):
    noise = _noise(tmp_path, stale={"vae.json": "objective changed: calibrated decoder"})
    assert _gate(tmp_path, {**BASE, "recon_psnr": 10.0}, None, noise) == 0
    assert "not gated (vae.json): objective changed: calibrated decoder" in capsys.readouterr().out
    assert load_noise(noise).values("vae.json:recon_psnr") is None
    # a committed value that is not the recorded committed run's: the runs predate the committed models
    assert _gate(tmp_path / "b", {**BASE, "recon_psnr": 10.0}, {**BASE, "recon_psnr": 21.0}) == 0
    assert "is not the recorded committed run's" in capsys.readouterr().out


def test_params_that_were_not_recorded_make_every_file_stale(tmp_path):
    params = load_params(ROOT / "params.yaml")
    path = _noise(tmp_path, params_fingerprint=fingerprint(params))
    assert load_noise(path, params).values("vae.json:recon_psnr") is not None
    other = load_params(ROOT / "params.yaml")
    other = type(other)(**{**other.__dict__, "evaluate": type(other.evaluate)(**{**other.evaluate.__dict__,
                                                                                 "num_samples": 7})})
    assert load_noise(path, other).values("vae.json:recon_psnr") is None
    assert "other params" in load_noise(path, other).stale_reason("vae.json:recon_psnr")
    # A knob at its declared default is the behaviour before the knob existed: the runs stand; set, they do not.
    dcgan = params.models["dcgan"]
    assert fingerprint(dataclasses.replace(params, models={**params.models, "dcgan": dataclasses.replace(
        dcgan, r1_gamma=type(dcgan)().r1_gamma)})) == fingerprint(params)
    assert fingerprint(dataclasses.replace(params, models={**params.models, "dcgan": dataclasses.replace(
        dcgan, r1_gamma=1.0)})) != fingerprint(params)


def test_changed_params_names_each_dotted_key_that_moved_or_took_its_default():
    params = load_params(ROOT / "params.yaml")
    before = recorded_params(params)
    assert changed_params(before, before) == []
    warmer = dataclasses.replace(params, prior=dataclasses.replace(params.prior, temperature=0.5))
    assert changed_params(before, recorded_params(warmer)) == ["prior.temperature"]
    # back to its declared default: the key leaves the recorded params, which is a change too
    default = dataclasses.replace(params, prior=dataclasses.replace(params.prior, temperature=1.0))
    assert "temperature" not in recorded_params(default)["prior"]
    assert changed_params(before, recorded_params(default)) == ["prior.temperature"]


def test_a_family_rerecord_may_follow_only_params_its_own_stages_read():
    # dvc.yaml as it is: a prior change is the VQ-VAE's alone; an evaluate change is every family's
    from benchmarks.bench_noise import STAGES, family_stages, readers, stage_name
    own, needed, params = family_stages(["vqvae"])
    assert own == {"train@vqvae", "extract_codes", "fit_prior", "evaluate@vqvae"}
    assert needed == own | {"train_classifier", "reference"}
    assert {stage_name(list(a)) for a in STAGES} >= needed
    assert readers("prior.temperature", params) == {"fit_prior"}
    assert readers("models.vqvae.num_hiddens", params) - own == {"report"}
    assert readers("evaluate.num_samples", params) - own >= {"reference", "evaluate@vae", "evaluate@dcgan"}
    assert family_stages(["vae"])[0] == {"train@vae", "evaluate@vae"}


def test_on_the_committed_machine_kind_the_run_must_reproduce_exactly(tmp_path, capsys):
    noise = _noise(tmp_path, kind=machine_kind(load_params(ROOT / "params.yaml").runtime.precision))
    committed = _runs()[0]["vae.json"]
    assert _gate(tmp_path, committed, None, noise) == 0
    assert "same machine kind as the committed run" in capsys.readouterr().out
    nudged = {**committed, "recon_psnr": committed["recon_psnr"] - 0.01}  # far inside the statistical band
    assert _gate(tmp_path / "b", nudged, None, noise) == 1
    assert "not reproduced on the committed machine kind" in capsys.readouterr().out
    assert _gate(tmp_path / "c", nudged, None, noise, "--statistical") == 0


def test_nan_where_a_number_was_fails(tmp_path):
    assert _gate(tmp_path, {**BASE, "recon_psnr": float("nan")}) == 1


def test_baseline_from_git_head(tmp_path, monkeypatch, capsys):
    noise = _noise(tmp_path)
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    _write(tmp_path / "metrics", _runs()[0]["vae.json"])
    _write(tmp_path / "metrics", {"best": {}}, "summary.json")
    subprocess.run([*git, "add", "metrics"], check=True)
    subprocess.run([*git, "commit", "-qm", "metrics"], check=True)
    _write(tmp_path / "metrics", {**BASE, "kid_inception": 0.5})
    assert main(["--specs", str(SPECS), "--noise", str(noise), "--no-dvc"]) == 1
    out = capsys.readouterr().out
    assert "vae.json:kid_inception" in out and "summary.json" not in out


def test_markdown_comment_has_gated_rows_changed_decisions_and_sample_grids(tmp_path, monkeypatch, capsys):
    from PIL import Image

    fams = {"vae.json": {"kid_inception": 0.050, "recon_psnr": 20.0}, "vqvae.json": {"kid_inception": 0.030,
                                                                                     "recon_psnr": 21.0}}
    # the baseline's runs cannot tell the families apart on KID; the new runs can (vqvae lower in every run)
    flat = [{f: {m: v + (0.02 * d if m == "kid_inception" and f == "vqvae.json" else 0.001 * d) for m, v in doc.items()}
             for f, doc in fams.items()} for d in (-1.5, 1.5, -0.5, 0.5)]
    sharp = [{f: {m: v + 0.001 * d for m, v in doc.items()} for f, doc in fams.items()} for d in (-1.5, -0.5, 0.5, 1.5)]
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    _noise(tmp_path / "n", flat).rename(tmp_path / "metrics_noise.json")
    subprocess.run([*git, "add", "metrics_noise.json"], check=True)
    subprocess.run([*git, "commit", "-qm", "noise"], check=True)
    _noise(tmp_path / "n", sharp).rename(tmp_path / "metrics_noise.json")
    for name in fams:
        _write(tmp_path / "old", sharp[0][name], name)
        _write(tmp_path / "new", {**sharp[0][name], **({"recon_psnr": 15.0} if name == "vae.json" else {})}, name)
    for folder in ("old_reports", "reports"):
        for family in ("vae", "vqvae"):
            (tmp_path / folder / family).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / folder / family / "samples.png")
    comment = tmp_path / "ci" / "gate.md"
    assert main(["--metrics-dir", "new", "--baseline-dir", "old", "--specs", str(SPECS), "--noise",
                 "metrics_noise.json", "--markdown", str(comment), "--reports-dir", "reports",
                 "--baseline-reports", "old_reports", "--statistical"]) == 1
    assert f"wrote the review comment to {comment}" in capsys.readouterr().out
    md = comment.read_text()
    assert md.startswith("## facegen metric gate: **FAILED**: 1 regression(s)")
    psnr = next(line for line in md.splitlines() if line.startswith("| `vae.json:recon_psnr`"))
    assert psnr.endswith("| **regression** |")
    assert "- KID (Inception, standard; unbiased): not separated → vqvae best" in md
    assert "| vae | ![vae old](../old_reports/vae/samples.png) | ![vae new](../reports/vae/samples.png) |" in md


def test_no_baseline_commit_passes(tmp_path, monkeypatch, capsys):
    noise = _noise(tmp_path)
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    _write(tmp_path / "metrics", BASE)
    assert main(["--specs", str(SPECS), "--noise", str(noise), "--no-dvc"]) == 0
    assert "no committed baseline" in capsys.readouterr().out


def test_specs_file_is_validated():
    with pytest.raises(ConfigError, match="unknown field rel"):  # tolerances are measured, never typed
        parse_specs({"metrics": {"recon_mse": {"rel": 0.1}}})
    with pytest.raises(ConfigError, match="direction"):
        parse_specs({"metrics": {"recon_mse": {"direction": "up"}}})
    with pytest.raises(ConfigError, match="needs a direction"):
        parse_specs({"metrics": {"x": {"headline": True}}})
    with pytest.raises(ConfigError, match="section must be one of"):
        parse_specs({"metrics": {"x": {"section": "speed"}}})
    with pytest.raises(ConfigError, match="scale must be linear or log"):
        parse_specs({"metrics": {"x": {"scale": "sqrt"}}})
    with pytest.raises(ConfigError, match="gate"):
        parse_specs({"gate": {"k": 4}})  # a fixed k ignores how many runs and metrics there are
    with pytest.raises(ConfigError, match="alpha must be"):
        parse_specs({"decision": {"alpha": 2}})
    specs = parse_specs({"default": {"direction": "lower"}, "metrics": {"x_*": {"direction": "higher"},
                                                                         "x_y": {"label": "X"}},
                         "gate": {"false_alarm": 0.01}, "decision": {"alpha": 0.01}})
    assert specs("x_y").label == "X" and specs("x_y").direction == "lower"  # exact beats pattern
    assert specs("x_z").direction == "higher" and specs("x_z").headline is False
    assert specs.rule == GateRule(false_alarm=0.01) and specs.alpha == 0.01


# --- the committed files: the gate's inputs must agree with each other ---------------------------

def _committed_metrics() -> dict[str, float]:
    out = {}
    for path in sorted((ROOT / "metrics").glob("*.json")):
        if path.name not in SKIP:
            out.update({f"{path.name}:{k}": float(v) for k, v in json.loads(path.read_text()).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return out


def test_committed_noise_file_says_how_where_and_on_which_seeds_it_was_measured():
    doc = json.loads((ROOT / "metrics_noise.json").read_text())
    assert doc["command"].startswith("python -m benchmarks.bench_noise")
    assert doc["machine"]["cpu"] and "auto_precision" in doc["machine"] and doc["committed"]["kind"]["cpu_flags"]
    auto = doc["machine"]["auto_precision"]
    per_precision = {p: {r["seed"] for r in doc["runs"] if r["precision"] == p} for p in ("fp32", "bf16")}
    assert len(per_precision[auto]) >= 4 and all(len(s) >= 3 for s in per_precision.values()), per_precision
    # evaluation seeds are not the seeds the defaults were screened on (benchmarks/bench_defaults.py)
    from benchmarks.bench_defaults import SCREEN_SEEDS
    assert not {r["seed"] for r in doc["runs"]} & set(SCREEN_SEEDS)
    assert doc["params_fingerprint"] == fingerprint(load_params(ROOT / "params.yaml"))
    # and with which params: what a per-family re-record (bench_noise --families) compares params.yaml with
    assert doc["params"] == recorded_params(load_params(ROOT / "params.yaml"))


def test_the_gate_checks_about_twenty_headline_metrics_every_one_recorded():
    specs, noise = load_specs(SPECS), load_noise(ROOT / "metrics_noise.json")
    committed = _committed_metrics()
    result = compare(committed, committed, specs, noise)
    # ~24 headlines plus one lead per separated decision of the report (7 with the VQ-VAE's prior at 0.3)
    assert 15 <= result.gated <= 35 and not result.unmeasured and not result.stale and not result.regressions


def test_every_recorded_run_passes_the_gate_with_bands_from_the_other_runs():
    """Leave-one-out: what a rerun on another CPU kind or precision faces, on the runs we have."""
    noise = load_noise(ROOT / "metrics_noise.json")
    for run, verdict in leave_one_out(noise, load_specs(SPECS)):
        assert not verdict.regressions and not verdict.unmeasured, (run, [c.key for c in verdict.regressions])


def _broken(changes) -> list[str]:  # noqa: ANN001 - {key: new value} from the committed metrics
    specs, noise = load_specs(SPECS), load_noise(ROOT / "metrics_noise.json")
    committed = _committed_metrics()
    result = compare(committed, {**committed, **changes(committed)}, specs, noise)
    return [c.key for c in result.regressions]


FAMILIES = ("vae", "beta_vae", "vqvae", "dcgan")


@pytest.mark.parametrize("name,changes", [
    ("a collapsed DCGAN: recall 0", lambda m: {"dcgan.json:recall": 0.0}),
    ("a β-VAE that disentangles no better than the VAE", lambda m: {"beta_vae.json:mig": m["vae.json:mig"],
                                                                    "beta_vae.json:dci_disentanglement":
                                                                        m["vae.json:dci_disentanglement"]}),
    *((f"{f} edits at chance", lambda m, f=f: {f"{f}.json:edit_success_at_pres90_mean":
                                                m[f"{f}.json:edit_chance_at_pres90_mean"]}) for f in FAMILIES),
    *((f"{f} reconstructions 3 dB worse", lambda m, f=f: {f"{f}.json:recon_psnr": m[f"{f}.json:recon_psnr"] - 3})
      for f in FAMILIES),
    *((f"{f} KID doubled", lambda m, f=f: {f"{f}.json:kid_inception": 2 * m[f"{f}.json:kid_inception"]})
      for f in FAMILIES),
])
def test_known_breakage_fails_the_gate(name, changes):
    assert _broken(changes), f"the gate passes {name}"
