"""Agreement statistics between two measurements of the same cases (pure numpy/scipy).

Each function takes paired 1-D arrays (``a`` = method, ``b`` = reference unless
stated) and returns plain floats in a dict, so results go straight into tables.

- :func:`pearson` — r with the Fisher-z 95 % CI (as ``scipy.stats.pearsonr``), R², p.
- :func:`regression` — least squares ``a = slope * b + intercept`` with t-based CIs.
- :func:`bland_altman` — bias (mean of a - b), SD, limits of agreement bias ± 1.96 SD.
- :func:`mape` — mean absolute percentage error of ``a`` against ``b`` (cases with b = 0 skipped).
- :func:`icc` — the six Shrout & Fleiss (1979) forms with F tests and 95 % CIs (McGraw &
  Wong 1996); ICC(2,1) is "two-way random, absolute agreement, single measure", ICC(3,1)
  "two-way mixed, consistency, single measure".
- :func:`paired_t` — paired t-test (``scipy.stats.ttest_rel``).
- :func:`cohen_kappa` — unweighted and linearly weighted Cohen's kappa on categories.
"""

import numpy as np
from scipy import stats


def _pair(a, b, minimum=3):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("a and b must be 1-D arrays of the same length (one value per case)")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < minimum:
        raise ValueError(f"need at least {minimum} paired finite values, got {len(a)}")
    return a, b


def pearson(a, b, confidence=0.95):
    """Pearson r, its CI (Fisher z), R² and the two-sided p-value."""
    a, b = _pair(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        raise ValueError("a constant series has no correlation")
    res = stats.pearsonr(a, b)
    r = float(res.statistic)
    if len(a) > 3 and abs(r) < 1:
        z, se = np.arctanh(r), 1.0 / np.sqrt(len(a) - 3)
        q = stats.norm.ppf(0.5 + confidence / 2)
        lo, hi = float(np.tanh(z - q * se)), float(np.tanh(z + q * se))
    else:
        lo = hi = r
    return {"r": r, "r_ci_low": lo, "r_ci_high": hi, "r2": r * r, "p": float(res.pvalue), "n": len(a)}


def regression(a, b, confidence=0.95):
    """Least-squares line ``a = slope * b + intercept`` with CIs of slope and intercept."""
    a, b = _pair(a, b)
    res = stats.linregress(b, a)
    t = stats.t.ppf(0.5 + confidence / 2, len(a) - 2)
    return {"slope": float(res.slope), "slope_ci_low": float(res.slope - t * res.stderr),
            "slope_ci_high": float(res.slope + t * res.stderr),
            "intercept": float(res.intercept),
            "intercept_ci_low": float(res.intercept - t * res.intercept_stderr),
            "intercept_ci_high": float(res.intercept + t * res.intercept_stderr), "n": len(a)}


def regression_band(a, b, x, confidence=0.95):
    """Lower and upper confidence band of the regression mean at ``x``."""
    a, b = _pair(a, b)
    n = len(a)
    res = stats.linregress(b, a)
    resid = a - (res.slope * b + res.intercept)
    s = np.sqrt(np.sum(resid ** 2) / (n - 2))
    t = stats.t.ppf(0.5 + confidence / 2, n - 2)
    x = np.asarray(x, float)
    se = s * np.sqrt(1.0 / n + (x - b.mean()) ** 2 / np.sum((b - b.mean()) ** 2))
    y = res.slope * x + res.intercept
    return y - t * se, y + t * se


def bland_altman(a, b, z=1.96):
    """Bias (mean a - b), SD of the differences and limits of agreement bias ± z·SD."""
    a, b = _pair(a, b, minimum=2)
    d = a - b
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    return {"bias": bias, "sd": sd, "loa_low": bias - z * sd, "loa_high": bias + z * sd,
            "n": len(a)}


def mape(a, b):
    """Mean absolute percentage error (%) of ``a`` against reference ``b`` (b = 0 skipped)."""
    a, b = _pair(a, b, minimum=1)
    nz = b != 0
    if not nz.any():
        return float("nan")
    return float(np.mean(np.abs(a[nz] - b[nz]) / np.abs(b[nz])) * 100.0)


def paired_t(a, b):
    """Paired t-test: statistic, two-sided p and the mean difference."""
    a, b = _pair(a, b, minimum=2)
    res = stats.ttest_rel(a, b)
    return {"t": float(res.statistic), "p": float(res.pvalue), "mean_diff": float(np.mean(a - b)),
            "n": len(a)}


def _anova(x):
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(0) - grand) ** 2)
    ss_tot = np.sum((x - grand) ** 2)
    ss_err = ss_tot - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    return n, k, msr, msc, mse, msw


def icc(ratings, confidence=0.95):
    """All six Shrout & Fleiss ICC forms of an (n targets x k raters) array.

    Returns a dict keyed ``ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k``, each with
    ``icc``, ``F``, ``df1``, ``df2``, ``p``, ``ci_low``, ``ci_high``.
    """
    x = np.asarray(ratings, float)
    with np.errstate(all="ignore"):  # perfect agreement gives 0/0 in the CIs: NaN, not a crash
        return _icc(x, confidence)


def _icc(x, confidence):
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.all(np.isfinite(x)):
        raise ValueError("ratings must be a finite (targets x raters) array with >= 2 of each")
    n, k, msr, msc, mse, msw = _anova(x)
    alpha = 1 - confidence
    out = {}
    # one-way random (ICC1)
    f1 = msr / msw
    df1, df2 = n - 1, n * (k - 1)
    fl, fu = f1 / stats.f.ppf(1 - alpha / 2, df1, df2), f1 * stats.f.ppf(1 - alpha / 2, df2, df1)
    p1 = float(stats.f.sf(f1, df1, df2))
    out["ICC1"] = dict(icc=(msr - msw) / (msr + (k - 1) * msw), F=f1, df1=df1, df2=df2, p=p1,
                       ci_low=(fl - 1) / (fl + k - 1), ci_high=(fu - 1) / (fu + k - 1))
    out["ICC1k"] = dict(icc=(msr - msw) / msr, F=f1, df1=df1, df2=df2, p=p1,
                        ci_low=1 - 1 / fl, ci_high=1 - 1 / fu)
    # two-way models share the F test of targets against the residual
    f3 = msr / mse
    df1, df2 = n - 1, (n - 1) * (k - 1)
    p3 = float(stats.f.sf(f3, df1, df2))
    fl, fu = f3 / stats.f.ppf(1 - alpha / 2, df1, df2), f3 * stats.f.ppf(1 - alpha / 2, df2, df1)
    out["ICC3"] = dict(icc=(msr - mse) / (msr + (k - 1) * mse), F=f3, df1=df1, df2=df2, p=p3,
                       ci_low=(fl - 1) / (fl + k - 1), ci_high=(fu - 1) / (fu + k - 1))
    out["ICC3k"] = dict(icc=(msr - mse) / msr, F=f3, df1=df1, df2=df2, p=p3,
                        ci_low=1 - 1 / fl, ci_high=1 - 1 / fu)
    # ICC2: absolute agreement, CI with Satterthwaite's df (McGraw & Wong 1996, case 2A)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc2k = (msr - mse) / (msr + (msc - mse) / n)
    a_ = k * icc2 / (n * (1 - icc2))
    b_ = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
    v = (a_ * msc + b_ * mse) ** 2 / ((a_ * msc) ** 2 / (k - 1) + (b_ * mse) ** 2 /
                                      ((n - 1) * (k - 1)))
    fs, fi = stats.f.ppf(1 - alpha / 2, n - 1, v), stats.f.ppf(1 - alpha / 2, v, n - 1)
    lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    hi = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
    out["ICC2"] = dict(icc=icc2, F=f3, df1=df1, df2=df2, p=p3, ci_low=lo, ci_high=hi)
    out["ICC2k"] = dict(icc=icc2k, F=f3, df1=df1, df2=df2, p=p3,
                        ci_low=lo * k / (1 + lo * (k - 1)), ci_high=hi * k / (1 + hi * (k - 1)))
    return {name: {key: float(v) for key, v in d.items()} for name, d in out.items()}


def icc_pair(a, b, confidence=0.95):
    """ICC(2,1) absolute agreement and ICC(3,1) consistency of two methods, with CIs."""
    a, b = _pair(a, b)
    r = icc(np.column_stack([a, b]), confidence)
    return {"icc_agreement": r["ICC2"]["icc"], "icc_agreement_ci_low": r["ICC2"]["ci_low"],
            "icc_agreement_ci_high": r["ICC2"]["ci_high"],
            "icc_consistency": r["ICC3"]["icc"], "icc_consistency_ci_low": r["ICC3"]["ci_low"],
            "icc_consistency_ci_high": r["ICC3"]["ci_high"]}


def cohen_kappa(a, b, categories=None, weights=None):
    """Cohen's kappa of two raters' categories; ``weights``: None or ``"linear"``.

    ``categories`` gives the order (needed for weighting); by default the sorted union.
    """
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError("a and b must be non-empty and of the same length")
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    unknown = (set(a) | set(b)) - set(index)
    if unknown:
        raise ValueError(f"categories {sorted(map(str, unknown))} not in the given order")
    m = len(cats)
    obs = np.zeros((m, m))
    for x, y in zip(a, b):
        obs[index[x], index[y]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(1), obs.sum(0))
    i, j = np.indices((m, m))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j) / max(m - 1, 1)
    else:
        raise ValueError("weights must be None or 'linear'")
    denom = np.sum(w * exp)
    return float(1.0 - np.sum(w * obs) / denom) if denom > 0 else 1.0


def agreement(a, b):
    """All agreement statistics of one score: one flat dict (NaN where undefined)."""
    out = {}
    for fn in (pearson, regression, bland_altman, paired_t, icc_pair):
        try:
            out.update({k: v for k, v in fn(a, b).items() if k != "n"})
        except (ValueError, FloatingPointError, ZeroDivisionError):
            continue
    out["mape_percent"] = mape(a, b) if len(np.atleast_1d(a)) else float("nan")
    out["n"] = int(np.sum(np.isfinite(np.asarray(a, float)) & np.isfinite(np.asarray(b, float))))
    return out
