"""Agreement statistics against scipy and published worked examples."""

import numpy as np
import pytest
from scipy import stats

from CalciumScoringLib.validation import agreement as agr

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges
SF = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def sample(seed=0, n=40):
    rng = np.random.default_rng(seed)
    b = rng.gamma(2.0, 50.0, n)
    return 0.9 * b + 5 + rng.normal(0, 10, n), b


def test_pearson_regression_ttest_match_scipy():
    a, b = sample()
    p = agr.pearson(a, b)
    ref = stats.pearsonr(a, b)
    ci = ref.confidence_interval(0.95)
    assert p["r"] == pytest.approx(ref.statistic, abs=1e-12)
    assert p["r_ci_low"] == pytest.approx(ci.low, abs=1e-6)
    assert p["r_ci_high"] == pytest.approx(ci.high, abs=1e-6)
    assert p["r2"] == pytest.approx(ref.statistic ** 2, abs=1e-12)
    assert p["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    r = agr.regression(a, b)
    lr = stats.linregress(b, a)
    t = stats.t.ppf(0.975, len(a) - 2)
    assert r["slope"] == pytest.approx(lr.slope, abs=1e-12)
    assert r["slope_ci_low"] == pytest.approx(lr.slope - t * lr.stderr, abs=1e-9)
    assert r["intercept_ci_high"] == pytest.approx(lr.intercept + t * lr.intercept_stderr, abs=1e-9)
    tt = agr.paired_t(a, b)
    ref_t = stats.ttest_rel(a, b)
    assert tt["t"] == pytest.approx(ref_t.statistic, abs=1e-9)
    assert tt["p"] == pytest.approx(ref_t.pvalue, abs=1e-12)


def test_bland_altman_and_mape_by_hand():
    a = np.array([10.0, 12.0, 9.0, 15.0])
    b = np.array([9.0, 12.0, 10.0, 12.0])
    ba = agr.bland_altman(a, b)
    d = a - b  # 1, 0, -1, 3
    assert ba["bias"] == pytest.approx(0.75)
    assert ba["sd"] == pytest.approx(np.std(d, ddof=1))
    assert ba["loa_high"] == pytest.approx(0.75 + 1.96 * np.std(d, ddof=1))
    assert agr.mape(a, b) == pytest.approx(100 * np.mean([1 / 9, 0, 1 / 10, 3 / 12]))
    assert agr.mape([1.0, 2.0], [0.0, 4.0]) == pytest.approx(50.0)  # zero reference skipped


def test_icc_shrout_fleiss_worked_example():
    r = agr.icc(SF)
    published = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62,
                 "ICC3k": 0.91}  # Shrout & Fleiss 1979, Table 4
    for k, v in published.items():
        assert r[k]["icc"] == pytest.approx(v, abs=0.005), k
    # F tests and 95 % CIs as reported by the R psych package's ICC() for these data
    assert r["ICC1"]["F"] == pytest.approx(1.79, abs=0.005)
    assert r["ICC3"]["F"] == pytest.approx(11.03, abs=0.005)
    assert r["ICC3"]["p"] == pytest.approx(0.000135, abs=0.00001)
    for k, lo, hi in (("ICC1", -0.133, 0.72), ("ICC2", 0.019, 0.76), ("ICC3", 0.342, 0.95),
                      ("ICC1k", -0.884, 0.91), ("ICC2k", 0.071, 0.93), ("ICC3k", 0.676, 0.99)):
        assert r[k]["ci_low"] == pytest.approx(lo, abs=0.0015), k
        assert r[k]["ci_high"] == pytest.approx(hi, abs=0.006), k
    # exact ANOVA identities (to 1e-12): ICC(3,1) from mean squares computed another way
    n, k = SF.shape
    ss_r = k * ((SF.mean(1) - SF.mean()) ** 2).sum()
    ss_c = n * ((SF.mean(0) - SF.mean()) ** 2).sum()
    ss_e = ((SF - SF.mean()) ** 2).sum() - ss_r - ss_c
    msr, mse = ss_r / (n - 1), ss_e / ((n - 1) * (k - 1))
    assert r["ICC3"]["icc"] == pytest.approx((msr - mse) / (msr + (k - 1) * mse), abs=1e-12)
    assert r["ICC3"]["p"] == pytest.approx(stats.f.sf(msr / mse, n - 1, (n - 1) * (k - 1)), abs=1e-12)


def test_icc_of_identical_and_shifted_methods():
    a, b = sample(1)
    same = agr.icc_pair(a, a.copy())
    assert same["icc_agreement"] == pytest.approx(1.0) and same["icc_consistency"] == pytest.approx(1.0)
    shifted = agr.icc_pair(b + 100, b)
    assert shifted["icc_consistency"] == pytest.approx(1.0)  # consistency ignores a constant offset
    assert shifted["icc_agreement"] < 0.9  # absolute agreement does not


def test_cohen_kappa_worked_examples():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert agr.cohen_kappa(a, b) == pytest.approx(0.4)
    # 3 ordered categories, by hand: observed matrix / 10
    a = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    b = [0, 0, 1, 1, 1, 2, 2, 2, 2, 0]
    obs = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 3]]) / 10
    exp = np.outer(obs.sum(1), obs.sum(0))
    w = np.abs(np.subtract.outer(range(3), range(3))) / 2
    assert agr.cohen_kappa(a, b, [0, 1, 2], "linear") == pytest.approx(
        1 - (w * obs).sum() / (w * exp).sum(), abs=1e-12)
    assert agr.cohen_kappa(a, b) == pytest.approx((0.7 - np.trace(exp)) / (1 - np.trace(exp)))
    assert agr.cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="same length"):
        agr.pearson([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        agr.pearson([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="targets x raters"):
        agr.icc([[1, 2]])
    out = agr.agreement([1.0, 1.0], [1.0, 1.0])  # too few for r: NaN-free partial result
    assert out["bias"] == 0.0 and "r" not in out
