"""The CI metric gate on synthetic metric files: regressions fail, improvements and noise pass."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from facegen.ci.metric_gate import main
from facegen.errors import ConfigError
from facegen.evaluation.metric_specs import parse_specs

SPECS = Path(__file__).resolve().parents[1] / "metrics_tolerances.yaml"
BASE = {"recon_mse": 0.0100, "recon_psnr": 20.0, "fid_facegen": 2.0, "sample_img_per_s": 500.0, "active_dims": 20.0}


def _write(directory: Path, metrics: dict, name: str = "vae.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(metrics))
    return directory


def _gate(tmp_path: Path, new: dict, old: dict = BASE) -> int:
    return main(["--metrics-dir", str(_write(tmp_path / "new", new)), "--baseline-dir", str(_write(tmp_path / "old", old)),
                 "--specs", str(SPECS)])


def test_a_regression_beyond_tolerance_fails_with_a_table(tmp_path, capsys):
    assert _gate(tmp_path, {**BASE, "recon_mse": 0.0130, "recon_psnr": 18.0}) == 1
    out = capsys.readouterr().out
    assert "METRIC GATE FAILED: 2 regression(s)" in out
    assert "metric" in out and "old" in out and "new" in out and "allowed" in out
    assert "vae.json:recon_mse" in out and "0.013" in out and "0.0015" in out  # allowed = 15% of 0.01


def test_improvements_and_noise_within_tolerance_pass(tmp_path, capsys):
    better = {**BASE, "recon_mse": 0.005, "recon_psnr": 23.0, "fid_facegen": 1.0}
    assert _gate(tmp_path, better) == 0
    noisy = {**BASE, "recon_mse": 0.0110, "recon_psnr": 19.6, "fid_facegen": 2.3, "active_dims": 22.0}
    assert _gate(tmp_path / "n", noisy) == 0
    assert "metric gate passed" in capsys.readouterr().out


def test_ungated_and_two_sided_metrics(tmp_path):
    assert _gate(tmp_path, {**BASE, "sample_img_per_s": 50.0}) == 0  # speed: machine-dependent, never gated
    assert _gate(tmp_path / "a", {**BASE, "active_dims": 30.0}) == 1  # direction none: any big change fails


def test_new_and_missing_metrics_are_reported_not_failed(tmp_path, capsys):
    new = {k: v for k, v in BASE.items() if k != "fid_facegen"} | {"mig": 0.3}
    assert _gate(tmp_path, new) == 0
    out = capsys.readouterr().out
    assert "new metrics (not gated): vae.json:mig" in out and "no longer produced" in out


def test_nan_where_a_number_was_fails(tmp_path):
    assert _gate(tmp_path, {**BASE, "recon_mse": float("nan")}) == 1


def test_baseline_from_git_head(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    _write(tmp_path / "metrics", BASE)
    _write(tmp_path / "metrics", {"families": {"vae": BASE}}, "summary.json")
    subprocess.run([*git, "add", "metrics"], check=True)
    subprocess.run([*git, "commit", "-qm", "metrics"], check=True)
    _write(tmp_path / "metrics", {**BASE, "fid_facegen": 9.0})
    assert main(["--specs", str(SPECS), "--no-dvc"]) == 1
    out = capsys.readouterr().out
    assert "vae.json:fid_facegen" in out and "summary.json" not in out  # the derived summary is skipped


def test_no_baseline_commit_passes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    _write(tmp_path / "metrics", BASE)
    assert main(["--specs", str(SPECS), "--no-dvc"]) == 0
    assert "no committed baseline" in capsys.readouterr().out


def test_specs_file_is_validated():
    with pytest.raises(ConfigError, match="unknown field tolerance"):
        parse_specs({"metrics": {"recon_mse": {"tolerance": 0.1}}})
    with pytest.raises(ConfigError, match="direction"):
        parse_specs({"metrics": {"recon_mse": {"direction": "up"}}})
    specs = parse_specs({"default": {"rel": 0.5}, "metrics": {"x_*": {"direction": "higher"}, "x_y": {"abs": 1}}})
    assert specs("x_y").abs == 1 and specs("x_y").direction == "none"  # exact beats pattern
    assert specs("x_z").direction == "higher" and specs("x_z").rel == 0.5  # pattern inherits default tolerance
    assert specs("x_y").rel == 0.0  # ...unless it sets its own


def test_file_scale_widens_one_metric_files_tolerances_only():
    specs = parse_specs({"metrics": {"fid": {"direction": "lower", "rel": 0.25}}, "file_scale": {"gan.json": 3}})
    assert specs.for_key("vae.json:fid").regressed(8.0, 11.6)       # +45% > 25%
    assert not specs.for_key("gan.json:fid").regressed(8.0, 11.6)   # within 3 x 25%
    assert specs.for_key("gan.json:fid").regressed(8.0, 111.0)      # breakage still fails
    with pytest.raises(ConfigError, match="file_scale"):
        parse_specs({"file_scale": {"gan.json": -1}})
