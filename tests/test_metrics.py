import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cyphercat.metrics import auc, best_threshold, epsilon_lower_bound, evaluate, roc_curve, tpr_at_fpr


def _data(seed=0, shift=1.0, n=400):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)]
    return s, np.r_[np.ones(n, bool), np.zeros(n, bool)]


def test_auc_matches_sklearn_with_ties():
    s, y = _data()
    s = np.round(s, 1)  # plenty of ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_roc_endpoints_and_tpr_at_fpr_never_exceeds_target():
    s, y = _data()
    fpr, tpr, _ = roc_curve(s, y)
    assert (fpr[0], tpr[0]) == (0, 0) and fpr[-1] == 1 and tpr[-1] == 1
    for t in (0.001, 0.01, 0.1):
        best = tpr_at_fpr(fpr, tpr, t)
        assert best == max(tpr[fpr <= t])


def test_evaluate_no_signal_ci_covers_half():
    rng = np.random.default_rng(3)
    s = rng.normal(size=1000)
    y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    m = evaluate(s, y, threshold=0.0, bootstrap=200, rng=np.random.default_rng(0))
    assert m.auc_ci[0] < 0.5 < m.auc_ci[1]
    assert m.epsilon_lower_bound == 0.0


def test_evaluate_strong_signal_and_threshold_metrics():
    s, y = _data(shift=4.0)
    m = evaluate(s, y, threshold=2.0, bootstrap=100, rng=np.random.default_rng(0))
    assert m.auc > 0.99 and m.auc_ci[0] > 0.98
    assert m.tpr_at_fpr["0.01"] > 0.8
    # at threshold 2: recall = P(N(4,1) >= 2) ~ 0.977, FPR = P(N(0,1) >= 2) ~ 0.023
    assert m.recall == pytest.approx(0.977, abs=0.02)
    assert m.precision > 0.95
    assert m.epsilon_lower_bound > 2.0


def test_lowest_fpr_note_when_too_few_nonmembers():
    s, y = _data(n=100)
    m = evaluate(s, y, threshold=None, bootstrap=0)
    assert any("0.001" in n for n in m.notes)
    assert m.precision == 0 and m.recall == 0


def test_infinite_scores_are_ranked_not_rejected_but_nan_is():
    s, y = _data(shift=2.0)
    s[0], s[-1] = np.inf, -np.inf
    assert 0.8 < evaluate(s, y, None, bootstrap=0).auc <= 1
    s[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(s, y, None, bootstrap=0)


def test_best_threshold_is_calibration_helper():
    s, y = _data(shift=2.0)
    t = best_threshold(s, y)
    assert 0.5 < t < 1.5


def test_epsilon_bound_bounds():
    assert epsilon_lower_bound(0, 0, 100, 100) == 0.0
    assert epsilon_lower_bound(100, 0, 100, 100) > 3.0
