"""The known-strength checks on cases with a known answer: separated, tied, reversed, unmeasured."""
from __future__ import annotations

from facegen.evaluation.expectations import EXPECTATIONS, AboveChance, AtLeast, Beats, Best, Expectation, Ratio, judge_all
from facegen.evaluation.metric_specs import MetricSpec, MetricSpecs
from facegen.evaluation.noise import Noise, Spread

SPECS = MetricSpecs(MetricSpec(), {"recon_psnr": MetricSpec("higher"), "kid_inception": MetricSpec("lower"),
                                   "mig": MetricSpec("higher"), "edit_*": MetricSpec("higher")})


def noise(sd: dict[str, float], n: int = 3) -> Noise:
    """``{"vae.json:recon_psnr": sd}`` -> a Noise measured over ``n`` runs."""
    return Noise({k: Spread(0.0, v, 0.0, 0.0, n) for k, v in sd.items()})


def status(check, metrics, nz):  # type: ignore[no-untyped-def]
    return [o.status for o in check.judge(metrics, SPECS, nz)]


def test_beats_needs_the_gap_beyond_noise_and_the_margin() -> None:
    nz = noise({"vqvae.json:recon_psnr": 0.1, "vae.json:recon_psnr": 0.1})
    check = Beats("recon_psnr", "vqvae", "vae", by=2.0)
    assert status(check, {"vqvae": {"recon_psnr": 28.5}, "vae": {"recon_psnr": 26.0}}, nz) == ["met"]
    assert status(check, {"vqvae": {"recon_psnr": 27.0}, "vae": {"recon_psnr": 26.0}}, nz) == ["not met"]  # < 2 dB
    assert status(check, {"vqvae": {"recon_psnr": 25.0}, "vae": {"recon_psnr": 26.0}}, nz) == ["not met"]  # reversed
    wide = noise({"vqvae.json:recon_psnr": 1.0, "vae.json:recon_psnr": 1.0})
    outcome, = check.judge({"vqvae": {"recon_psnr": 28.5}, "vae": {"recon_psnr": 26.0}}, SPECS, wide)
    assert outcome.status == "not met" and "noise" in outcome.text  # 2.5 < 2·√2
    assert status(check, {"vqvae": {"recon_psnr": 28.5}, "vae": {"recon_psnr": 26.0}}, None) == ["not judged"]
    assert status(check, {"vae": {"recon_psnr": 26.0}}, nz) == ["not judged"]
    too_few = noise({"vqvae.json:recon_psnr": 0.1, "vae.json:recon_psnr": 0.1}, n=2)
    assert status(check, {"vqvae": {"recon_psnr": 28.5}, "vae": {"recon_psnr": 26.0}}, too_few) == ["not judged"]


def test_direction_lower_and_best_against_every_other_family() -> None:
    metrics = {"dcgan": {"kid_inception": 0.05}, "vae": {"kid_inception": 0.20}, "vqvae": {"kid_inception": 0.054}}
    nz = noise({f"{f}.json:kid_inception": 0.002 for f in metrics})
    assert status(Best("kid_inception", "dcgan"), metrics, nz) == ["met", "not met"]  # vqvae is within noise
    assert status(Beats("kid_inception", "vae", "dcgan"), metrics, nz) == ["not met"]


def test_ratio_and_absolute_bar() -> None:
    nz = noise({"beta_vae.json:mig": 0.01, "vae.json:mig": 0.01})
    assert status(Ratio("mig", "beta_vae", "vae", 2.0), {"beta_vae": {"mig": 0.30}, "vae": {"mig": 0.10}}, nz) == ["met"]
    outcome, = Ratio("mig", "beta_vae", "vae", 2.0).judge({"beta_vae": {"mig": 0.18}, "vae": {"mig": 0.10}}, SPECS, nz)
    assert outcome.status == "not met" and "1.80×" in outcome.text
    assert status(AtLeast("mig", "beta_vae", 0.15), {"beta_vae": {"mig": 0.149}}, nz) == ["not met"]
    assert status(AtLeast("mig", "beta_vae", 0.15), {"beta_vae": {"mig": 0.15}}, None) == ["met"]


def test_above_chance_per_family_and_attribute() -> None:
    metrics = {"vae": {"edit_success_at_pres90_Smiling": 0.8, "edit_chance_at_pres90_Smiling": 0.1,
                       "edit_success_at_pres90_Male": 0.09, "edit_chance_at_pres90_Male": 0.1,
                       "edit_success_at_pres90_mean": 0.46}}
    nz = noise({f"vae.json:{k}": 0.02 for k in metrics["vae"]})
    outcomes = AboveChance().judge(metrics, SPECS, nz)
    assert [(o.text.split(" ")[1], o.status) for o in outcomes] == [("Male", "not met"), ("Smiling", "met")]
    assert "entangled" in outcomes[0].text  # at or below chance: the why
    metrics["vae"]["edit_success_at_pres90_Male"] = 0.12  # above chance but within noise: no why, the noise says it
    outcome = AboveChance().judge(metrics, SPECS, nz)[0]
    assert outcome.status == "not met" and "noise" in outcome.text and "entangled" not in outcome.text


def test_claim_status_and_every_default_expectation_is_judged_on_complete_metrics() -> None:
    exp = Expectation("x", (AtLeast("mig", "beta_vae", 0.1), AtLeast("mig", "vae", 0.1)))
    assert exp.judge({"beta_vae": {"mig": 0.2}, "vae": {"mig": 0.2}}, SPECS, None)[0] == "met"
    assert exp.judge({"beta_vae": {"mig": 0.2}, "vae": {"mig": 0.0}}, SPECS, None)[0] == "not met"
    assert exp.judge({"beta_vae": {"mig": 0.2}}, SPECS, None)[0] == "not judged"
    # Every metric a default expectation names exists in a real metrics file's vocabulary.
    names = {c.metric for e in EXPECTATIONS for c in e.checks if hasattr(c, "metric")}
    assert names <= {"recon_psnr", "recon_ssim", "kid_inception", "fid_inception", "mig"}
    verdicts = judge_all({}, SPECS, None)
    assert len(verdicts) == len(EXPECTATIONS) and all(v.status == "not judged" for v in verdicts)


def test_a_long_list_shows_counts_and_every_failure() -> None:
    from facegen.evaluation.expectations import Outcome, Verdict

    outcomes = [Outcome("met", f"ok {i}") for i in range(5)] + [Outcome("not met", "bad 1"),
                                                                 Outcome("not judged", "why 1"), Outcome("not judged", "why 2")]
    lines = Verdict("claim", "not judged", outcomes).shown()
    assert lines == ["5 of 8 checks met, 1 not met, 2 not judged", "bad 1", "not judged, e.g. why 1"]
