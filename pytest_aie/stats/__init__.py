"""Statistics for evaluation gates: intervals, threshold verdicts, repeated sampling,
paired regression tests against a baseline, and the power of those tests.

Pure functions over plain lists; :mod:`scipy.stats` does the numerics. See the modules:

* :mod:`~pytest_aie.stats.intervals`: :func:`aggregate`, :func:`verdict` and the
  intervals behind them (Wilson / Clopper-Pearson, BCa bootstrap, cluster bootstrap);
* :mod:`~pytest_aie.stats.sampling`: pass@k, pass^k, consistency, flaky cases;
* :mod:`~pytest_aie.stats.paired`: McNemar, Newcombe's paired interval, the binary and
  score regression gates (and the rule they use);
* :mod:`~pytest_aie.stats.means`: the sign-flip permutation test of paired differences
  (per case or per cluster) and cluster-robust t intervals and tests;
* :mod:`~pytest_aie.stats.multiple`: Holm's family-wise adjustment;
* :mod:`~pytest_aie.stats.power`: minimum detectable drop by simulation;
* :mod:`~pytest_aie.stats.agreement`: agreement and bias of AI judges (Cohen's kappa,
  Krippendorff's alpha, Fleiss' kappa, detection rates, length bias, position flips);
* :mod:`~pytest_aie.stats.ratings`: ratings from pairwise battles (online Elo, Bradley-Terry
  with bootstrap intervals, win rates, cycles);
* :mod:`~pytest_aie.stats.ranking`: pair scheduling, the stopping rule and ranking gates.
"""

from __future__ import annotations

from pytest_aie.stats.agreement import (
    Alpha,
    DetectionRates,
    FleissKappa,
    FlipRate,
    Kappa,
    LengthBias,
    cohen_kappa,
    consistent_winner,
    detection_rates,
    fleiss_kappa,
    flip_rate,
    krippendorff_alpha,
    length_bias,
)
from pytest_aie.stats.intervals import (
    Aggregate,
    Interval,
    aggregate,
    clustered_interval,
    mean_interval,
    pass_rate_interval,
    threshold_pvalue,
    verdict,
)
from pytest_aie.stats.means import (
    cluster_totals,
    mean_t_interval,
    mean_t_pvalue,
    sign_flip_pvalue,
)
from pytest_aie.stats.multiple import holm
from pytest_aie.stats.paired import (
    GateResult,
    binary_gate_from_counts,
    mcnemar_exact,
    paired_binary_gate,
    paired_proportion_interval,
    paired_score_gate,
)
from pytest_aie.stats.pairs import find_cycles, win_matrix
from pytest_aie.stats.power import detection_rate, minimum_detectable_drop
from pytest_aie.stats.ranking import ranking_stable, schedule
from pytest_aie.stats.ratings import (
    Battle,
    BTFit,
    EloResult,
    bradley_terry,
    online_elo,
)
from pytest_aie.stats.sampling import (
    SamplingSummary,
    consistency,
    flaky,
    pass_at_k,
    pass_hat_k,
    sampling_summary,
    sampling_table,
)

__all__ = [
    "Aggregate",
    "Alpha",
    "BTFit",
    "Battle",
    "DetectionRates",
    "EloResult",
    "FleissKappa",
    "FlipRate",
    "GateResult",
    "Interval",
    "Kappa",
    "LengthBias",
    "SamplingSummary",
    "aggregate",
    "binary_gate_from_counts",
    "bradley_terry",
    "cluster_totals",
    "clustered_interval",
    "cohen_kappa",
    "consistent_winner",
    "consistency",
    "detection_rate",
    "detection_rates",
    "find_cycles",
    "flaky",
    "fleiss_kappa",
    "flip_rate",
    "holm",
    "krippendorff_alpha",
    "length_bias",
    "mcnemar_exact",
    "mean_interval",
    "mean_t_interval",
    "mean_t_pvalue",
    "minimum_detectable_drop",
    "online_elo",
    "paired_binary_gate",
    "paired_proportion_interval",
    "paired_score_gate",
    "pass_at_k",
    "pass_hat_k",
    "pass_rate_interval",
    "ranking_stable",
    "sampling_summary",
    "sampling_table",
    "schedule",
    "sign_flip_pvalue",
    "threshold_pvalue",
    "verdict",
    "win_matrix",
]
