"""The agreement statistics behind the judge's bias and calibration figures, checked against
independent implementations (statsmodels, scikit-learn) and published worked examples."""

from __future__ import annotations

import random

import pytest

from pytest_aie.stats.agreement import (
    cohen_kappa,
    consistent_winner,
    detection_rates,
    flip_rate,
    krippendorff_alpha,
    length_bias,
)


def _table(a: list, b: list, cats: list) -> list[list[int]]:
    return [[sum(1 for x, y in zip(a, b) if x == r and y == c) for c in cats] for r in cats]


def _labels(seed: int, n: int, cats: list, agree: float) -> tuple[list, list]:
    rng = random.Random(seed)
    a = [rng.choice(cats) for _ in range(n)]
    b = [x if rng.random() < agree else rng.choice(cats) for x in a]
    return a, b


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed, n, agree", [(1, 40, 0.6), (2, 200, 0.8), (3, 15, 0.3)])
def test_kappa_and_its_interval_match_statsmodels(weights: str | None, seed: int, n: int,
                                                  agree: float) -> None:
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    cats = [1, 2, 3, 4, 5]
    a, b = _labels(seed, n, cats, agree)
    ours = cohen_kappa(a, b, categories=cats, weights=weights)
    theirs = cohens_kappa(_table(a, b, cats), wt=weights) if weights else \
        cohens_kappa(_table(a, b, cats))
    assert ours.kappa == pytest.approx(theirs.kappa, abs=1e-12)
    assert ours.se == pytest.approx(theirs.std_kappa, abs=1e-12)
    assert [ours.low, ours.high] == pytest.approx([theirs.kappa_low, theirs.kappa_upp], abs=1e-9)
    assert ours.kappa == pytest.approx(cohen_kappa_score(a, b, weights=weights, labels=cats),
                                       abs=1e-12)


def test_kappa_of_string_labels_and_missing_ones() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = ["pass", "fail", "pass", None, "pass", "fail", "fail", "pass"]
    b = ["pass", "fail", "fail", "pass", "pass", "pass", "fail", None]
    k = cohen_kappa(a, b)
    kept = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    assert k.n == 6 and k.dropped == 2
    assert k.kappa == pytest.approx(cohen_kappa_score([x for x, _ in kept], [y for _, y in kept]))
    # by hand: 4 of 6 agree (po 2/3); margins pass 3/6 and 3/6 -> pe 1/2 -> kappa 1/3
    assert k.kappa == pytest.approx(1 / 3)


def test_kappa_is_undefined_not_faked_when_everything_is_one_category() -> None:
    k = cohen_kappa(["pass"] * 5, ["pass"] * 5, categories=["pass", "fail"])
    assert k.kappa is None and "undefined" in (k.reason or "")
    assert cohen_kappa(["pass"] * 5, ["pass"] * 5).kappa is None
    assert cohen_kappa(["pass"], ["pass"], categories=["pass", "fail"]).kappa is None
    with pytest.raises(ValueError, match="2 and 3"):
        cohen_kappa([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="not one of the categories"):
        cohen_kappa([1, 9], [1, 2], categories=[1, 2, 3])


def test_alpha_matches_krippendorffs_own_worked_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with 4
    # observers, 12 units and missing data: alpha 0.743 (nominal) and 0.849 (interval)
    n = None
    ratings = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
               [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
               [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
               [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    assert krippendorff_alpha(ratings, level="nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(ratings, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_alpha_of_two_raters_on_labels_by_hand() -> None:
    # nominal alpha with 2 raters, no missing data: 1 - (n - 1) * D_o / D_e on the pooled
    # 2n values.
    a = ["pass", "pass", "fail", "fail", "pass"]
    b = ["pass", "fail", "fail", "fail", "pass"]
    # pooled values: pass 5, fail 5; disagreeing unit: 1 (2 ordered pairs of 2*5 = 10 pairs)
    # D_o = 2 / 10; D_e = 2 * 5 * 5 / (10 * 9) = 50 / 90; alpha = 1 - D_o / D_e = 1 - 0.36
    assert krippendorff_alpha([a, b], level="nominal") == pytest.approx(1 - 0.2 / (50 / 90))
    assert krippendorff_alpha([["pass"] * 3, ["pass"] * 3]) is None  # no variation: undefined


def test_detection_rates_with_wilson_intervals() -> None:
    from statsmodels.stats.proportion import proportion_confint

    human = ["pass"] * 7 + ["fail"] * 3
    judge = ["pass"] * 6 + ["fail"] + ["fail", "fail", "pass"]
    r = detection_rates(judge, human, positive="pass")
    assert (r.tpr, r.tnr, r.positives, r.negatives) == (6 / 7, 2 / 3, 7, 3)
    assert [r.tpr_low, r.tpr_high] == pytest.approx(proportion_confint(6, 7, method="wilson"))
    assert detection_rates(["pass"], ["pass"]).tnr is None  # no negative example


def test_length_bias_is_spearman_and_undefined_when_constant() -> None:
    from scipy.stats import spearmanr

    scores, lengths = [1, 2, 2, 4, 5, 3], [10, 30, 20, 80, 90, 15]
    lb = length_bias(scores, lengths)
    assert lb.rho == pytest.approx(spearmanr(scores, lengths).statistic) and lb.n == 6
    assert length_bias([3, 3, 3], [1, 2, 3]).rho is None
    assert length_bias([1, 2], [1, 2]).reason


def test_a_judge_that_always_says_a_flips_on_every_pair() -> None:
    # in the original labels: "A" in the swapped order means the original B
    always_a = flip_rate(["A"] * 10, ["B"] * 10)
    assert always_a.flip_rate == 1.0 and always_a.first_position_rate == 1.0
    honest = flip_rate(["A", "B", "A", "tie"], ["A", "B", "A", "tie"])
    assert honest.flip_rate == 0.0 and honest.first_position_rate == 0.5
    assert consistent_winner("A", "A") == "A" and consistent_winner("A", "B") == "tie"
