"""The agreement statistics behind the judge's bias and calibration figures
(pytest_aie/stats/agreement.py), checked against independent implementations (statsmodels,
scikit-learn, scipy) and published worked examples: Krippendorff (2011), Fleiss (1971) and
the worked example of Wikipedia's "Fleiss' kappa" article."""

from __future__ import annotations

import math
import random
import warnings
from fractions import Fraction

import numpy as np
import pytest

from pytest_aie.stats.agreement import (
    cohen_kappa,
    consistent_winner,
    detection_rates,
    fleiss_kappa,
    flip_rate,
    krippendorff_alpha,
    length_bias,
)


def _table(a: list, b: list, cats: list) -> list[list[int]]:
    """The contingency table of two raters, rows ``a``, columns ``b``, in the order ``cats``."""
    return [[sum(1 for x, y in zip(a, b) if x == r and y == c) for c in cats] for r in cats]


def _labels(seed: int, n: int, cats: list, agree: float, used: list | None = None
            ) -> tuple[list, list]:
    """Two raters: ``b`` copies ``a`` with probability ``agree``, else guesses."""
    rng = random.Random(seed)
    used = used or cats
    a = [rng.choice(used) for _ in range(n)]
    b = [x if rng.random() < agree else rng.choice(used) for x in a]
    return a, b


LABEL_SETS = {
    "ordinal 1-5": dict(cats=[1, 2, 3, 4, 5], used=None),
    "ordinal words, one point unused": dict(cats=["poor", "fair", "good", "great"],
                                            used=["poor", "fair", "great"]),
    "pass/fail": dict(cats=["fail", "pass"], used=None),
    "A/B/tie": dict(cats=["A", "B", "tie"], used=None),
}


# -- Cohen's kappa ----------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("labels", list(LABEL_SETS))
@pytest.mark.parametrize("seed, n, agree", [(1, 40, 0.6), (2, 200, 0.8), (3, 15, 0.3)])
def test_kappa_and_its_interval_match_statsmodels_and_sklearn(
        weights: str | None, labels: str, seed: int, n: int, agree: float) -> None:
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    cats, used = LABEL_SETS[labels]["cats"], LABEL_SETS[labels]["used"]
    a, b = _labels(seed, n, cats, agree, used)
    ours = cohen_kappa(a, b, categories=cats, weights=weights)
    theirs = cohens_kappa(_table(a, b, cats), wt=weights) if weights else \
        cohens_kappa(_table(a, b, cats))
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-12)
    assert ours.se == pytest.approx(theirs.std_kappa, abs=1e-12)
    assert [ours.low, ours.high] == pytest.approx([theirs.kappa_low, theirs.kappa_upp], abs=1e-9)
    assert ours.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights, labels=cats),
                                       abs=1e-12)
    assert (ours.n, ours.dropped, ours.weights, ours.reason) == (n, 0, weights, None)


def test_kappa_interval_at_another_confidence_uses_the_normal_quantile() -> None:
    from scipy.stats import norm
    from statsmodels.stats.inter_rater import cohens_kappa

    a, b = _labels(5, 60, [1, 2, 3], 0.7)
    theirs = cohens_kappa(_table(a, b, [1, 2, 3]), wt="linear")
    ours = cohen_kappa(a, b, weights="linear", confidence=0.90)
    half = norm.ppf(0.95) * theirs.std_kappa
    assert [ours.low, ours.high] == pytest.approx([theirs.kappa - half, theirs.kappa + half],
                                                  abs=1e-12)
    assert ours.confidence == 0.90


def test_unused_categories_count_in_weighted_kappa() -> None:
    from sklearn.metrics import cohen_kappa_score

    # nobody used 3 or 4: on the scale 1-5 the distance 2 -> 5 is 3 steps of 4, not 2 of 2
    a, b = [5, 2, 1, 5, 2, 1, 5, 2], [5, 5, 1, 2, 2, 2, 5, 1]
    full = cohen_kappa(a, b, categories=[1, 2, 3, 4, 5], weights="linear")
    seen = cohen_kappa(a, b, weights="linear")
    assert full.kappa == pytest.approx(cohen_kappa_score(a, b, weights="linear",
                                                         labels=[1, 2, 3, 4, 5]), abs=1e-12)
    assert seen.kappa == pytest.approx(cohen_kappa_score(a, b, weights="linear"), abs=1e-12)
    assert full.kappa != pytest.approx(seen.kappa, abs=1e-3)


def test_kappa_of_string_labels_and_missing_ones() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = ["pass", "fail", "pass", None, "pass", "fail", "fail", "pass", float("nan")]
    b = ["pass", "fail", "fail", "pass", "pass", "pass", "fail", None, "fail"]
    k = cohen_kappa(a, b)
    kept = [(x, y) for x, y in zip(a, b) if isinstance(x, str) and isinstance(y, str)]
    assert k.n == 6 and k.dropped == 3
    assert k.kappa == pytest.approx(cohen_kappa_score([x for x, _ in kept], [y for _, y in kept]))
    # by hand: 4 of 6 agree (p_o 2/3); margins pass 3/6 and 3/6 -> p_e 1/2 -> kappa 1/3
    assert (k.kappa, k.observed, k.expected) == pytest.approx((1 / 3, 2 / 3, 1 / 2))


def test_perfect_agreement_is_one_with_a_zero_width_interval() -> None:
    k = cohen_kappa(["A", "B", "tie", "A"], ["A", "B", "tie", "A"])
    assert (k.kappa, k.se, k.low, k.high) == pytest.approx((1.0, 0.0, 1.0, 1.0))
    # complete disagreement on a balanced pass/fail table: p_o 0, p_e 1/2 -> kappa -1
    assert cohen_kappa(["pass", "fail"], ["fail", "pass"]).kappa == pytest.approx(-1.0)


def test_kappa_is_undefined_not_faked_when_everything_is_one_category() -> None:
    k = cohen_kappa(["pass"] * 5, ["pass"] * 5, categories=["pass", "fail"])
    assert (k.kappa, k.se, k.low, k.high) == (None, None, None, None)
    assert "undefined" in (k.reason or "") and "'pass'" in (k.reason or "") and k.n == 5
    assert cohen_kappa(["pass"] * 5, ["pass"] * 5).kappa is None
    assert cohen_kappa([3] * 4, [3] * 4, weights="quadratic").kappa is None
    few = cohen_kappa(["pass", None], ["pass", "fail"], categories=["pass", "fail"])
    assert few.kappa is None and few.n == 1 and few.dropped == 1 and "at least 2" in few.reason
    assert cohen_kappa([], []).kappa is None
    # one rater always says pass, the other varies: defined (chance agreement < 1)
    assert cohen_kappa(["pass"] * 4, ["pass", "fail", "pass", "fail"]).kappa == 0.0


def test_kappa_rejects_inputs_that_do_not_fit() -> None:
    from pytest_aie.errors import UsageError

    with pytest.raises(ValueError, match="2 and 3"):
        cohen_kappa([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="not one of the categories"):
        cohen_kappa([1, 9], [1, 2], categories=[1, 2, 3])
    with pytest.raises(ValueError, match="twice"):
        cohen_kappa([1, 2], [1, 2], categories=[1, 2, 2])
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="confidence"):
        cohen_kappa([1, 2], [1, 2], confidence=95)


# -- Krippendorff's alpha ---------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5, missing data. Units 12 (one value) is not pairable.
_K = None
KRIPPENDORFF_2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, _K, _K, _K],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _K, 3],
                     [_K, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _K],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _K]]


def test_alpha_matches_krippendorffs_own_worked_example() -> None:
    # The paper's coincidence matrix has n = 40 pairable values, n_c = 9, 13, 10, 5, 3 for the
    # values 1-5 and 7 + 10 + 8 + 4 + 3 = 32 on its diagonal, so
    # nominal alpha = 1 - (n - 1) (n - sum o_cc) / (n^2 - sum n_c^2)
    #               = 1 - 39 * 8 / (1600 - 384) = 113/152 (the paper: 0.743).
    hand = 1 - Fraction(39 * 8, 1600 - (81 + 169 + 100 + 25 + 9))
    assert hand == Fraction(113, 152)
    nominal = krippendorff_alpha(KRIPPENDORFF_2011, level="nominal")
    assert nominal.alpha == pytest.approx(float(hand), abs=1e-12)
    assert (nominal.raters, nominal.units, nominal.pairable_units, nominal.pairable_values) == \
        (4, 12, 11, 40)
    # the paper's other levels, to its 3 decimals
    # and with the units in another order (the values first met are 3, 1, 5, ...): the scale
    # is still ordered by value
    backwards = [row[::-1] for row in KRIPPENDORFF_2011]
    for level, published in (("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)):
        for data in (KRIPPENDORFF_2011, backwards):
            assert krippendorff_alpha(data, level=level).alpha == \
                pytest.approx(published, abs=5e-4), level


def test_alpha_of_words_on_an_ordered_scale_equals_alpha_of_their_ranks() -> None:
    scale = ["very low", "low", "mid", "high", "very high"]
    words = [[None if v is None else scale[v - 1] for v in row] for row in KRIPPENDORFF_2011]
    for level in ("nominal", "ordinal", "interval"):  # interval: equally spaced positions
        ours = krippendorff_alpha(words, level=level, categories=scale)
        assert ours.alpha == pytest.approx(krippendorff_alpha(KRIPPENDORFF_2011,
                                                              level=level).alpha, abs=1e-12)
    # an unused point of an ordinal scale changes no rank-based distance
    assert krippendorff_alpha(words, level="ordinal", categories=scale + ["off the chart"]).alpha \
        == pytest.approx(0.815, abs=5e-4)
    with pytest.raises(ValueError, match="categories="):
        krippendorff_alpha(words, level="ordinal")


def test_alpha_of_two_raters_on_labels_by_hand() -> None:
    # nominal alpha with 2 raters, no missing data, from the pooled 2n = 10 values
    a = ["pass", "pass", "fail", "fail", "pass"]
    b = ["pass", "fail", "fail", "fail", "pass"]
    # pooled values: pass 5, fail 5; one disagreeing unit gives 2 of the 10 ordered pairs:
    # D_o = 2 / 10; D_e = 2 * 5 * 5 / (10 * 9) = 50 / 90; alpha = 1 - D_o / D_e = 0.64
    assert krippendorff_alpha([a, b], level="nominal").alpha == pytest.approx(1 - 0.2 / (50 / 90))


@pytest.mark.parametrize("seed, raters, cats", [(1, 3, ["pass", "fail"]), (2, 5, [1, 2, 3, 4]),
                                                (3, 4, ["A", "B", "tie"])])
def test_nominal_alpha_and_statsmodels_fleiss_kappa_agree_as_theory_says(
        seed: int, raters: int, cats: list) -> None:
    # On complete data (m raters on each of N cases) both use the same observed agreement,
    # and the expected disagreements differ only by sampling without replacement:
    # alpha = 1 - (1 - kappa) (N m - 1) / (N m).
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = random.Random(seed)
    truth = [rng.choice(cats) for _ in range(25)]
    ratings = [[t if rng.random() < 0.7 else rng.choice(cats) for t in truth]
               for _ in range(raters)]
    codes = np.array([[cats.index(v) for v in row] for row in ratings]).T  # cases x raters
    kappa = sm_fleiss(aggregate_raters(codes, n_cat=len(cats))[0])
    total = 25 * raters
    alpha = krippendorff_alpha(ratings, level="nominal", categories=cats).alpha
    assert alpha == pytest.approx(1 - (1 - kappa) * (total - 1) / total, abs=1e-12)
    assert fleiss_kappa(ratings, categories=cats).kappa == pytest.approx(kappa, abs=1e-12)


def test_alpha_with_missing_values_and_undefined_cases() -> None:
    with_nan = [[float("nan") if v is None else v for v in row] for row in KRIPPENDORFF_2011]
    assert krippendorff_alpha(with_nan).alpha == pytest.approx(113 / 152, abs=1e-12)
    same = krippendorff_alpha([["pass"] * 3, ["pass"] * 3])
    assert same.alpha is None and "no variation" in (same.reason or "")
    lonely = krippendorff_alpha([[1, None, 2], [None, 3, None]])
    assert lonely.alpha is None and lonely.pairable_units == 0 and "two raters" in lonely.reason
    assert krippendorff_alpha([[1, 2, 3]]).alpha is None  # one rater
    assert krippendorff_alpha([]).alpha is None
    with warnings.catch_warnings():  # the ratings vary, but not within pairable cases: 0/0
        warnings.simplefilter("error")
        varied = krippendorff_alpha([[1, 1, 2], [1, 1, None]])
    assert varied.alpha is None and varied.pairable_values == 4
    with pytest.raises(ValueError, match="same cases"):
        krippendorff_alpha([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="not one of the categories"):
        krippendorff_alpha([[1, 2], [1, 7]], categories=[1, 2, 3])
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2], [1, 2]], level="cardinal")  # type: ignore[arg-type]


# -- Fleiss' kappa ----------------------------------------------------------------------------

# Wikipedia, "Fleiss' kappa", worked example: 14 raters put 10 subjects in 5 categories
# (the counts n_ij below); it gives P-bar = 0.378, P-bar_e = 0.213 and kappa = 0.210.
WIKIPEDIA = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]

# Fleiss (1971), table 1: 6 psychiatrists diagnose 30 patients (1 depression, 2 personality
# disorder, 3 schizophrenia, 4 neurosis, 5 other), as R's irr::diagnoses; the paper: kappa .430.
FLEISS_1971 = [[4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
               [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
               [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
               [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
               [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
               [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
               [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
               [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5]]


def _raters_from_counts(counts: list[list[int]]) -> list[list[int]]:
    """Ratings (raters x subjects) with the given per-subject category counts; which rater
    gave which rating does not matter to Fleiss' kappa."""
    per_subject = [[c for c, k in enumerate(row, start=1) for _ in range(k)] for row in counts]
    return [list(r) for r in zip(*per_subject)]


def test_fleiss_kappa_matches_wikipedias_worked_example_and_statsmodels() -> None:
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    ratings = _raters_from_counts(WIKIPEDIA)
    fk = fleiss_kappa(ratings)
    assert (fk.items, fk.raters, fk.dropped, fk.reason) == (10, 14, 0, None)
    assert (fk.observed, fk.expected, fk.kappa) == pytest.approx((0.378, 0.213, 0.210),
                                                                 abs=5e-4)
    assert fk.kappa == pytest.approx(sm_fleiss(np.array(WIKIPEDIA)), abs=1e-12)


def test_fleiss_kappa_matches_fleiss_1971() -> None:
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    ratings = [list(r) for r in zip(*FLEISS_1971)]  # raters x patients
    fk = fleiss_kappa(ratings)
    assert fk.kappa == pytest.approx(0.430, abs=5e-4)
    assert fk.kappa == pytest.approx(sm_fleiss(aggregate_raters(np.array(FLEISS_1971))[0]),
                                     abs=1e-12)


def test_fleiss_kappa_drops_incomplete_cases_and_is_undefined_without_variation() -> None:
    ratings = [list(r) for r in zip(*FLEISS_1971)]
    holed = [row[:] for row in ratings]
    holed[2][0] = None  # patient 1 loses a rating: dropped, the rest is unchanged
    fk = fleiss_kappa(holed)
    assert (fk.items, fk.dropped) == (29, 1)
    assert fk.kappa == pytest.approx(fleiss_kappa([row[1:] for row in ratings]).kappa, abs=1e-15)
    same = fleiss_kappa([["pass"] * 4] * 3)
    assert same.kappa is None and "'pass'" in (same.reason or "")
    assert fleiss_kappa([["pass", "fail"]]).kappa is None  # one rater
    assert fleiss_kappa([["pass", None], ["fail", "pass"]]).kappa is None  # one complete case
    with pytest.raises(ValueError, match="same cases"):
        fleiss_kappa([[1, 2], [1]])


# -- detection rates --------------------------------------------------------------------------

def test_detection_rates_with_wilson_intervals() -> None:
    from statsmodels.stats.proportion import proportion_confint

    human = ["pass"] * 7 + ["fail"] * 3 + [None, "pass"]
    judge = ["pass"] * 6 + ["fail"] + ["fail", "fail", "pass"] + ["pass", None]
    r = detection_rates(judge, human, positive="pass")
    assert (r.tpr, r.tnr) == pytest.approx((6 / 7, 2 / 3))
    assert (r.positives, r.negatives, r.true_positives, r.true_negatives, r.dropped) == \
        (7, 3, 6, 2, 2)
    assert [r.tpr_low, r.tpr_high] == pytest.approx(proportion_confint(6, 7, method="wilson"))
    assert [r.tnr_low, r.tnr_high] == pytest.approx(proportion_confint(2, 3, method="wilson"))
    r90 = detection_rates(judge, human, confidence=0.90)
    assert [r90.tpr_low, r90.tpr_high] == pytest.approx(
        proportion_confint(6, 7, alpha=0.10, method="wilson"))
    # the positive label can be anything; every other label is negative
    flipped = detection_rates(judge, human, positive="fail")
    assert (flipped.tpr, flipped.tnr) == pytest.approx((2 / 3, 6 / 7))


def test_detection_rates_are_none_without_an_example_of_a_class() -> None:
    only_pass = detection_rates(["pass", "fail"], ["pass", "pass"])
    assert only_pass.tnr is None and only_pass.tnr_low is None and only_pass.negatives == 0
    assert only_pass.tpr == 0.5
    with pytest.raises(ValueError, match="2 judge labels but 1 human"):
        detection_rates(["pass", "fail"], ["pass"])


# -- length bias ------------------------------------------------------------------------------

def test_length_bias_is_spearman() -> None:
    from scipy.stats import spearmanr

    scores, lengths = [1, 2, 2, 4, 5, 3], [10, 30, 20, 80, 90, 15]
    lb = length_bias(scores, lengths)
    ref = spearmanr(scores, lengths)
    assert (lb.rho, lb.p_value) == pytest.approx((ref.statistic, ref.pvalue), abs=1e-12)
    assert lb.n == 6 and lb.reason is None
    # without ties, by hand: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of lengths 1 3 2 4 5,
    # of scores 1 2 3 4 5: d^2 = 0 1 1 0 0 -> rho = 1 - 12 / 120 = 0.9
    assert length_bias([1, 2, 3, 4, 5], [5, 30, 20, 80, 90]).rho == pytest.approx(0.9)


def test_length_bias_drops_missing_pairs_and_is_undefined_when_constant() -> None:
    lb = length_bias([1, None, 3, 2, float("nan")], [10, 20, 30, 20, 5])
    assert (lb.n, lb.dropped) == (3, 2) and lb.rho == pytest.approx(1.0)
    constant = length_bias([3, 3, 3], [1, 2, 3])
    assert constant.rho is None and constant.p_value is None and "score" in constant.reason
    assert "length" in (length_bias([1, 2, 3], [7, 7, 7]).reason or "")
    few = length_bias([1, 2], [1, 2])
    assert few.rho is None and "at least 3" in (few.reason or "")
    with pytest.raises(ValueError, match="3 scores but 2 lengths"):
        length_bias([1, 2, 3], [1, 2])


# -- position flips ---------------------------------------------------------------------------

def test_a_judge_that_always_says_a_flips_on_every_pair() -> None:
    # in the original labels: the "A" said in the swapped order is the original B
    always_a = flip_rate(["A"] * 10, ["B"] * 10)
    assert always_a.flip_rate == 1.0 and always_a.flips == 10 and always_a.n == 10
    assert always_a.first_position_rate == 1.0 and always_a.decisive == 20
    # Wilson's lower bound for 10 of 10, by hand: n / (n + z^2)
    assert always_a.low == pytest.approx(10 / (10 + 1.959963984540054 ** 2), abs=1e-12)
    assert all(consistent_winner(a, b) == "tie" for a, b in zip(["A"] * 10, ["B"] * 10))


def test_an_honest_judge_has_no_flips_and_no_position_preference() -> None:
    honest = flip_rate(["A", "B", "A", "tie"], ["A", "B", "A", "tie"])
    assert (honest.flip_rate, honest.flips, honest.low) == (0.0, 0, 0.0)
    # each decided pair: its winner is shown first in exactly one of the two orders
    assert honest.first_position_rate == 0.5 and honest.decisive == 6
    assert consistent_winner("A", "A") == "A" and consistent_winner("tie", "tie") == "tie"
    assert consistent_winner("A", "B") == "tie" and consistent_winner("A", None) is None


@pytest.mark.parametrize("biased", [0, 3, 7])
def test_a_partly_biased_judge_flips_on_the_pairs_where_it_picks_by_position(biased: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    truth = ["A", "B", "A", "A", "B", "B", "A", "B", "A", "B"]
    # on the first `biased` pairs the judge picks whatever is shown first, else the true winner
    first = ["A" if i < biased else w for i, w in enumerate(truth)]
    swapped = ["B" if i < biased else w for i, w in enumerate(truth)]  # original labels
    fr = flip_rate(first, swapped)
    assert (fr.flips, fr.flip_rate) == (biased, biased / 10)
    # biased pairs pick first twice; honest pairs once of their two verdicts
    assert fr.first_position_rate == pytest.approx((2 * biased + (10 - biased)) / 20)
    assert [fr.low, fr.high] == pytest.approx(proportion_confint(biased, 10, method="wilson"))


def test_flip_rate_counts_ties_and_missing_verdicts() -> None:
    fr = flip_rate(["A", "tie", None, "B", "tie"], ["A", "B", "A", None, "tie"])
    assert (fr.n, fr.dropped, fr.flips) == (3, 2, 1)  # tie then B is a flip
    # decisive: A (first shown) | A (shown second in the swapped order), B (shown first there)
    assert (fr.decisive, fr.first_position) == (3, 2)
    empty = flip_rate([None], ["A"])
    assert (empty.flip_rate, empty.first_position_rate, empty.n, empty.dropped) == \
        (None, None, 0, 1)
    with pytest.raises(ValueError, match="not one of"):
        flip_rate(["a"], ["A"])
    with pytest.raises(ValueError, match="2 first-order but 1 swapped"):
        flip_rate(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="not one of"):
        consistent_winner("A", "C")


def test_the_stats_package_exports_the_agreement_api() -> None:
    import pytest_aie.stats as stats
    from pytest_aie.stats import agreement

    for name in agreement.__all__:
        assert getattr(stats, name) is getattr(agreement, name), name
    assert math.isclose(stats.cohen_kappa([1, 2, 1], [1, 2, 2]).observed or 0, 2 / 3)
