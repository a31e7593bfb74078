"""The edit strength sweep (evaluation/editing.py) on a toy whose answers are known, and its figure."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from facegen.evaluation.editing import (budget_auc, chance_owner, edit_sweep, latent_scale, opposite_edit,
                                        preserved_attributes, random_directions, success_within_budget, unit)

ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)


class ToyJudge:
    """Attribute A is "channel 0 bright", B "channel 1 bright": decisions are z0 > 0 and z1 > 0."""

    attributes = ("A", "B")

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(50 * (images.mean((2, 3))[:, :2] - 0.5))


def toy_decode(z: torch.Tensor) -> torch.Tensor:
    """z (N, 3) -> images whose channels 0 and 1 are sigmoid(z0), sigmoid(z1); z2 is ignored."""
    chans = torch.stack([torch.sigmoid(z[:, 0]), torch.sigmoid(z[:, 1]), torch.full_like(z[:, 0], 0.5)], 1)
    return chans[:, :, None, None].expand(-1, -1, 4, 4)


@pytest.fixture
def z() -> torch.Tensor:
    return 0.5 * torch.randn(256, 3, generator=torch.Generator().manual_seed(0))


def sweep(z, directions, seed=0, **kw):
    return edit_sweep(toy_decode, ToyJudge(), z, directions, torch.Generator().manual_seed(seed),
                      alphas=kw.pop("alphas", ALPHAS), **kw)


CLEAN = torch.tensor([3.0, 0.0, 0.0])        # exactly along A's axis (length is irrelevant: normalised)
ENTANGLED = torch.tensor([1.0, 1.0, 0.0])    # moves A and B alike
DEAD = torch.tensor([0.0, 0.0, 1.0])         # the decoder ignores z2: the edit never moves the face


def test_a_clean_direction_flips_everything_and_keeps_the_rest(z):
    r = sweep(z, {"A": CLEAN})
    line = r.curves["attributes"]["A"]
    assert line["success"][0] == 0.0 and line["preservation"][0] == 1.0  # alpha 0 = the unedited point
    assert line["success"][-1] == 1.0 and all(p == 1.0 for p in line["preservation"])
    assert r.metrics["edit_success_at_pres90_A"] == r.metrics["edit_success_at_pres90_mean"] == 1.0
    assert r.metrics["edit_success_auc_mean"] == pytest.approx(1.0)
    assert not line["reached"] and "lower bound" in r.notes[0]  # never left the budget: noted
    assert line["success"] == sorted(line["success"])  # larger steps flip more faces
    # The operating strength: the first alpha at which every face flipped.
    assert line["alpha_at_target"] == ALPHAS[line["success"].index(1.0) - 1]


def test_an_entangled_direction_scores_lower_at_equal_raw_success(z):
    r = sweep(z, {"A": ENTANGLED})
    clean = sweep(z, {"A": CLEAN})
    line = r.curves["attributes"]["A"]
    assert line["success"][-1] == 1.0  # raw success at the largest step is as high as the clean one's
    assert line["preservation"][-1] == pytest.approx(0.5, abs=0.1)  # B pushed across for ~half the faces
    assert line["reached"]
    assert r.metrics["edit_success_at_pres90_A"] < clean.metrics["edit_success_at_pres90_A"] - 0.2
    assert r.metrics["edit_success_auc_mean"] < clean.metrics["edit_success_auc_mean"]


def test_no_credit_for_not_moving(z):
    r = sweep(z, {"A": DEAD})
    line = r.curves["attributes"]["A"]
    assert all(s == 0.0 for s in line["success"]) and all(p == 1.0 for p in line["preservation"])
    assert r.metrics["edit_success_at_pres90_A"] == 0.0 == r.metrics["edit_success_auc_mean"]
    assert r.metrics["edit_success_at_pres90_A"] <= r.metrics["edit_chance_at_pres90_mean"]
    assert line["alpha_at_target"] == 0.0  # ties go to the weakest edit


def test_chance_is_below_a_clean_direction_and_above_zero(z):
    r = sweep(z, {"A": CLEAN, "B": torch.tensor([0.0, 2.0, 0.0])}, chance_directions=8)
    assert r.metrics["edit_success_at_pres90_mean"] == 1.0
    assert 0.0 < r.metrics["edit_chance_at_pres90_mean"] < 0.6
    for name in ("A", "B"):
        chance = r.curves["chance"][name]
        assert chance["success"][0] == 0.0 and chance["preservation"][0] == 1.0
        assert len(chance["success"]) == len(r.curves["alphas"]) == len(ALPHAS) + 1


def test_random_directions_are_unit_differences_of_distinct_starts(z):
    r = random_directions(z, 50, torch.Generator().manual_seed(1))
    assert r.shape == (50, 3) and torch.allclose(r.norm(dim=1), torch.ones(50))
    assert latent_scale(z) == pytest.approx(float((z - z.roll(1, 0)).norm(dim=1).mean()))
    with pytest.raises(ValueError):
        latent_scale(z[:1])


def test_the_sweep_is_deterministic_for_a_fixed_generator(z):
    a = sweep(z, {"A": ENTANGLED, "B": CLEAN}, seed=3)
    b = sweep(z, {"A": ENTANGLED, "B": CLEAN}, seed=3)
    assert a.metrics == b.metrics and a.curves == b.curves
    json.dumps(a.curves)  # JSON-serialisable as returned
    other = sweep(z, {"A": ENTANGLED, "B": CLEAN}, seed=4)
    assert other.curves["attributes"] == a.curves["attributes"]  # only chance draws from the generator
    assert other.curves["chance"] != a.curves["chance"]


def test_steps_are_in_units_of_the_distance_between_faces(z):
    """Scaling the whole latent space (and the decoder with it) changes nothing."""
    r = sweep(z, {"A": ENTANGLED})
    scaled = edit_sweep(lambda w: toy_decode(w / 10), ToyJudge(), z * 10, {"A": ENTANGLED * 7},
                        torch.Generator().manual_seed(0), alphas=ALPHAS)
    assert scaled.curves["scale"] == pytest.approx(10 * r.curves["scale"], rel=1e-5)
    assert scaled.metrics == pytest.approx(r.metrics)


def test_unknown_attributes_are_left_out_and_bad_alphas_refused(z):
    assert sweep(z, {"Smiling": CLEAN}).metrics == {}
    assert set(sweep(z, {"A": CLEAN, "Smiling": CLEAN}).curves["attributes"]) == {"A"}
    for bad in ((), (0.0, 1.0), (0.5, 0.2)):
        with pytest.raises(ValueError):
            sweep(z, {"A": CLEAN}, alphas=bad)


def test_opposite_edit_pushes_each_face_away_from_what_it_shows(z):
    present = z[:, 0] > 0
    edited = opposite_edit(lambda w: w, z, unit(CLEAN), 0.5, present)
    assert torch.equal(edited[:, 0] > z[:, 0], ~present)


# -- reading the curve ----------------------------------------------------------------------------
def test_budget_interpolates_the_crossing_segment():
    p = success_within_budget([0, 1, 2], [0.0, 0.4, 0.8], [1.0, 0.95, 0.85], 0.9)
    assert p.success == pytest.approx(0.6) and p.alpha == pytest.approx(1.5) and p.reached


def test_budget_never_reached_takes_the_best_of_the_sweep():
    p = success_within_budget([0, 1, 2], [0.0, 0.3, 0.5], [1.0, 0.99, 0.95], 0.9)
    assert p.success == 0.5 and p.alpha == 2 and not p.reached


def test_budget_is_the_upper_envelope_of_a_curve_that_dips_and_recovers():
    p = success_within_budget([0, 1, 2], [0.0, 0.5, 0.7], [1.0, 0.8, 0.95], 0.9)
    assert p.success == pytest.approx(0.7) and p.alpha == 2 and p.reached


def test_budget_out_at_the_first_step_interpolates_from_the_unedited_point():
    p = success_within_budget([0, 1], [0.0, 1.0], [1.0, 0.5], 0.9)
    assert p.success == pytest.approx(0.2) and p.alpha == pytest.approx(0.2)


def test_budget_auc_of_a_perfect_and_a_useless_edit():
    assert budget_auc([0, 1], [0.0, 1.0], [1.0, 1.0]) == pytest.approx(1.0)
    assert budget_auc([0, 1], [0.0, 0.0], [1.0, 1.0]) == 0.0
    # success rises 1:1 with the loss of preservation: best within budget b is b; mean over [0, 0.3] is 0.15.
    assert budget_auc([0, 1], [0.0, 1.0], [1.0, 0.0]) == pytest.approx(0.15, abs=1e-3)


# -- the figure -----------------------------------------------------------------------------------
def test_plot_edit_curves_writes_a_png(z, tmp_path):
    from facegen.reporting.edit_curves import family_colours, plot_edit_curves

    curves = {"vae": json.loads(json.dumps(sweep(z, {"A": CLEAN, "B": ENTANGLED}).curves)),
              "dcgan": json.loads(json.dumps(sweep(z, {"A": ENTANGLED}).curves)),
              "empty": {}}
    out = plot_edit_curves(curves, tmp_path / "figs" / "edit_curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A family keeps its colour whichever others are drawn; different families differ.
    assert family_colours(["dcgan"])["dcgan"] == family_colours(["vae", "beta_vae", "vqvae", "dcgan"])["dcgan"]
    assert len(set(family_colours(["vae", "beta_vae", "vqvae", "dcgan", "new"]).values())) == 5
    with pytest.raises(ValueError):
        plot_edit_curves({"vae": {}}, tmp_path / "none.png")


def test_the_figure_module_does_not_import_torch():
    code = "import sys, facegen.reporting.edit_curves; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- categorical attributes (evaluate.edit_exclusive_groups) ----------------------------------------
class HairJudge:
    """One categorical factor, two values: Blond = channel 0 bright, Black = channel 0 dark (exactly one
    of them, as hair colour on two-colour faces); Smiling = channel 1 bright."""

    attributes = ("Blond", "Black", "Smiling")

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        m = images.mean((2, 3))
        return torch.sigmoid(50 * torch.stack([m[:, 0] - 0.5, 0.5 - m[:, 0], m[:, 1] - 0.5], 1))


def hair_sweep(z, groups):
    return edit_sweep(toy_decode, HairJudge(), z, {"Blond": CLEAN, "Smiling": torch.tensor([0.0, 1.0, 0.0])},
                      torch.Generator().manual_seed(0), alphas=ALPHAS, exclusive_groups=groups)


def test_an_edit_within_a_categorical_group_is_not_charged_for_the_other_values(z):
    charged, fair = hair_sweep(z, ()), hair_sweep(z, [["Blond", "Black"]])
    # A perfect Blond edit switches Black too: counted as a preservation failure it halves the score...
    assert charged.curves["attributes"]["Blond"]["success"][-1] == 1.0
    assert charged.curves["attributes"]["Blond"]["preservation"][-1] == pytest.approx(0.5)
    assert charged.metrics["edit_success_at_pres90_Blond"] < 0.5
    # ... and with the group declared only Smiling is "another attribute": it never moves.
    assert fair.curves["attributes"]["Blond"]["preservation"] == [1.0] * (len(ALPHAS) + 1)
    assert fair.metrics["edit_success_at_pres90_Blond"] == 1.0
    assert fair.curves["exclusive_groups"] == [["Blond", "Black"]]
    # The chance line follows the same rule: charged, Black is kept exactly where Blond did not flip, so
    # its preservation is the mean of (1 - success) and Smiling's kept rate, which alone is the fair one.
    fair_chance, charged_chance = fair.curves["chance"]["Blond"], charged.curves["chance"]["Blond"]
    assert fair_chance["success"] == charged_chance["success"]
    for s, kept, both in zip(fair_chance["success"], fair_chance["preservation"], charged_chance["preservation"]):
        assert both == pytest.approx((1 - s + kept) / 2)
    # An attribute outside the group is scored as before.
    assert fair.curves["attributes"]["Smiling"] == charged.curves["attributes"]["Smiling"]
    assert fair.curves["chance"]["Smiling"] == charged.curves["chance"]["Smiling"]


def test_preserved_attributes_leave_out_the_target_and_its_group():
    judged = ("Smiling", "Blond_Hair", "Black_Hair", "Male")
    groups = [("Blond_Hair", "Black_Hair")]
    assert preserved_attributes(judged, "Blond_Hair", groups) == [0, 3]
    assert preserved_attributes(judged, "Smiling", groups) == [1, 2, 3]
    assert preserved_attributes(judged, "Blond_Hair") == [0, 2, 3]


def test_each_face_moves_along_one_of_the_chance_directions(z):
    assert chance_owner(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert sweep(z, {"A": CLEAN}, chance_directions=16).curves["chance_directions"] == 16
    assert sweep(z[:5], {"A": CLEAN}, chance_directions=16).curves["chance_directions"] == 5  # one per face at most
