"""The known-strength checks on cases with a known answer: separated, not separated, reversed, unrecorded."""
from __future__ import annotations

from facegen.comparison.expectations import EXPECTATIONS, AboveChance, AtLeast, Beats, Best, Expectation, Outcome, \
    Ratio, Verdict, judge_all
from facegen.comparison.specs import MetricSpec, MetricSpecs
from tests.conftest import recorded

SPECS = MetricSpecs(MetricSpec(), {"recon_psnr": MetricSpec("higher"), "kid_inception": MetricSpec("lower"),
                                   "mig": MetricSpec("higher"), "edit_*": MetricSpec("higher")})
JITTER = (-0.1, 0.05, 0.0, 0.1, -0.05)  # five runs


def runs(centre: float, spread: float = 1.0) -> list[float]:
    return [centre + spread * j for j in JITTER]


def status(check, metrics, nz):  # type: ignore[no-untyped-def]
    return Expectation("x", (check,)).judge(metrics, SPECS, nz)[1]


def test_beats_needs_a_paired_separation_and_the_margin() -> None:
    metrics = {"vqvae": {"recon_psnr": 28.5}, "vae": {"recon_psnr": 26.0}}
    check = Beats("recon_psnr", "vqvae", "vae", by=2.0)
    # vqvae 2.5 dB ahead in every run, the runs move together (a shared split): met
    nz = recorded({"vqvae.json:recon_psnr": runs(28.5), "vae.json:recon_psnr": runs(26.0)})
    met, = status(check, metrics, nz)
    assert met.status == "met" and "vqvae better than vae in 5 of 5 runs" in met.text
    small = recorded({"vqvae.json:recon_psnr": runs(27.0), "vae.json:recon_psnr": runs(26.0)})
    assert "less than the 2 expected" in status(check, metrics, small)[0].text  # separated, but < 2 dB
    reversed_ = recorded({"vqvae.json:recon_psnr": runs(25.0), "vae.json:recon_psnr": runs(26.0)})
    assert "vae better than vqvae in 5 of 5 runs" in status(check, metrics, reversed_)[0].text
    # the same means, but the runs disagree on the order: not separated
    crossing = recorded({"vqvae.json:recon_psnr": [28.5, 24.0, 31.0, 26.0, 33.0], "vae.json:recon_psnr": runs(26.0)})
    outcome, = status(check, metrics, crossing)
    assert outcome.status == "not met" and "not separated at α = 0.05" in outcome.text
    assert [o.status for o in status(check, metrics, None)] == ["not judged"]
    assert [o.status for o in status(check, {"vae": {"recon_psnr": 26.0}}, nz)] == ["not judged"]
    too_few = recorded({"vqvae.json:recon_psnr": [28.5, 28.6], "vae.json:recon_psnr": [26.0, 26.1]})
    assert [o.status for o in status(check, metrics, too_few)] == ["not judged"]
    # rate=True says how many bits each latent carries, from the runs' rate_bits (the why of the gap)
    rated = recorded({"vqvae.json:recon_psnr": runs(28.5), "vae.json:recon_psnr": runs(26.0),
                      "vqvae.json:rate_bits": runs(900.0, 10.0), "vae.json:rate_bits": runs(200.0, 10.0)})
    outcome, = status(Beats("recon_psnr", "vqvae", "vae", by=2.0, rate=True), metrics, rated)
    assert outcome.status == "met" and outcome.text.endswith(
        "vqvae's latent carries 4.5× vae's bits (900 vs 200 bits/image), means over the runs")
    assert "bits/image" not in status(Beats("recon_psnr", "vqvae", "vae", rate=True), metrics, nz)[0].text


def test_paired_runs_separate_what_independent_sds_cannot() -> None:
    """Issue 27's case: the families' values move together from run to run (a shared test split), so
    their sds are large but their difference is not; the paired test separates them."""
    shared = [0.0, 0.04, -0.03, 0.05, -0.02, 0.03, -0.05]
    nz = recorded({"vqvae.json:kid_inception": [0.19 + s for s in shared],
                   "vae.json:kid_inception": [0.205 + s + 0.002 * (i % 2) for i, s in enumerate(shared)]})
    metrics = {"vqvae": {"kid_inception": 0.19}, "vae": {"kid_inception": 0.205}}
    outcome, = status(Beats("kid_inception", "vqvae", "vae"), metrics, nz)
    assert outcome.status == "met" and "in 7 of 7 runs" in outcome.text


def test_direction_lower_and_best_against_every_other_family() -> None:
    metrics = {"dcgan": {"kid_inception": 0.05}, "vae": {"kid_inception": 0.20}, "vqvae": {"kid_inception": 0.054}}
    nz = recorded({"dcgan.json:kid_inception": runs(0.05, 0.01), "vae.json:kid_inception": runs(0.20, 0.01),
                   "vqvae.json:kid_inception": [0.054, 0.04, 0.066, 0.045, 0.06]})
    assert [o.status for o in status(Best("kid_inception", "dcgan"), metrics, nz)] == ["met", "not met"]
    assert [o.status for o in status(Beats("kid_inception", "vae", "dcgan"), metrics, nz)] == ["not met"]


def test_ratio_and_absolute_bar() -> None:
    nz = recorded({"beta_vae.json:mig": runs(0.30, 0.01), "vae.json:mig": runs(0.10, 0.01)})
    metrics = {"beta_vae": {"mig": 0.30}, "vae": {"mig": 0.10}}
    assert [o.status for o in status(Ratio("mig", "beta_vae", "vae", 2.0), metrics, nz)] == ["met"]
    low = recorded({"beta_vae.json:mig": runs(0.18, 0.01), "vae.json:mig": runs(0.10, 0.01)})
    outcome, = status(Ratio("mig", "beta_vae", "vae", 2.0), metrics, low)
    assert outcome.status == "not met" and "only 1.80×" in outcome.text
    assert [o.status for o in status(AtLeast("mig", "beta_vae", 0.15), metrics, low)] == ["met"]
    assert [o.status for o in status(AtLeast("mig", "beta_vae", 0.181), metrics, low)] == ["not met"]
    assert [o.status for o in status(AtLeast("mig", "beta_vae", 0.15), metrics, None)] == ["not judged"]


def test_above_chance_per_family_and_attribute_holm_adjusted_within_the_claim() -> None:
    metrics = {"vae": {"edit_success_at_pres90_Smiling": 0.8, "edit_chance_at_pres90_Smiling": 0.1,
                       "edit_success_at_pres90_Male": 0.09, "edit_chance_at_pres90_Male": 0.1,
                       "edit_success_at_pres90_mean": 0.46}}
    nz = recorded({"vae.json:edit_success_at_pres90_Smiling": runs(0.8, 0.1),
                   "vae.json:edit_chance_at_pres90_Smiling": runs(0.1, 0.1),
                   "vae.json:edit_success_at_pres90_Male": runs(0.09, 0.1),
                   "vae.json:edit_chance_at_pres90_Male": runs(0.1, 0.1)})
    outcomes = status(AboveChance(), metrics, nz)
    assert [(o.text.split(" ")[1], o.status) for o in outcomes] == [("Male", "not met"), ("Smiling", "met")]
    assert "entangled" in outcomes[0].text and "p_Holm" in outcomes[1].text  # at or below chance: the why


def test_claim_status_and_every_default_expectation_is_judged_on_complete_metrics() -> None:
    nz = recorded({"beta_vae.json:mig": runs(0.2, 0.01), "vae.json:mig": runs(0.0, 0.01)})
    exp = Expectation("x", (AtLeast("mig", "beta_vae", 0.1), AtLeast("mig", "vae", 0.1)))
    assert exp.judge({"beta_vae": {"mig": 0.2}, "vae": {"mig": 0.2}}, SPECS, nz)[0] == "not met"
    assert Expectation("x", (AtLeast("mig", "beta_vae", 0.1),)).judge({}, SPECS, nz)[0] == "met"
    assert exp.judge({}, SPECS, None)[0] == "not judged"
    # Every metric a default expectation names exists in a real metrics file's vocabulary.
    names = {c.metric for e in EXPECTATIONS for c in e.checks if hasattr(c, "metric")}
    assert names <= {"recon_psnr", "recon_ssim", "kid_inception", "mig", "dci_disentanglement"}
    verdicts = judge_all({}, SPECS, None)
    assert len(verdicts) == len(EXPECTATIONS) and all(v.status == "not judged" for v in verdicts)


def test_a_long_list_shows_counts_and_every_failure() -> None:
    outcomes = [Outcome("met", f"ok {i}") for i in range(5)] + [Outcome("not met", "bad 1"),
                                                                 Outcome("not judged", "why 1"), Outcome("not judged", "why 2")]
    lines = Verdict("claim", "not judged", outcomes).shown()
    assert lines == ["5 of 8 checks met, 1 not met, 2 not judged", "bad 1", "not judged, e.g. why 1"]
