"""Files of a validation run: CSV tables, a Markdown/HTML summary, Bland-Altman and
regression figures (PNG and SVG) per score and region, methods side by side."""

import html
from pathlib import Path

import numpy as np

from . import agreement as agr

UNITS = {"burden": "burden score (0-1)", "calcium_volume_mm3": "calcified volume (mm³)",
         "cluster_count": "number of clusters", "cluster_mean_mm3": "mean cluster size (mm³)",
         "agatston": "Agatston score", "volume_score_mm3": "volume score (mm³)"}
FIGURE_SCORES = ("burden", "cluster_count", "cluster_mean_mm3")


def figure(scores, score, region, path_stem):
    """Bland-Altman (top) and regression with 95 % band (bottom), one column per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = scores[scores.region == region]
    if "reference_present" in d:
        d = d[d.reference_present]
    methods = list(dict.fromkeys(d.method))
    if not methods:
        return []
    fig, axes = plt.subplots(2, len(methods), figsize=(4.2 * len(methods), 8), squeeze=False)
    label = UNITS.get(score, score)
    for col, m in enumerate(methods):
        dm = d[d.method == m]
        a, b = dm[f"{score}_test"].to_numpy(float), dm[f"{score}_ref"].to_numpy(float)
        ax = axes[0, col]
        ax.scatter((a + b) / 2, a - b, s=14, color="#1f77b4")
        if len(a) >= 2:
            ba = agr.bland_altman(a, b)
            for y, style in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
                ax.axhline(y, color="#d62728", ls=style, lw=1)
            ax.set_title(f"{m}: bias {ba['bias']:.3g}, LoA [{ba['loa_low']:.3g}, {ba['loa_high']:.3g}]",
                         fontsize=9)
        ax.set_xlabel(f"mean of method and reference: {label}", fontsize=8)
        ax.set_ylabel(f"method − reference: {label}", fontsize=8)
        ax = axes[1, col]
        ax.scatter(b, a, s=14, color="#1f77b4")
        lo, hi = float(np.nanmin(np.r_[a, b, 0])), float(np.nanmax(np.r_[a, b, 1e-9]))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        if len(a) >= 3 and np.ptp(b) > 0:
            reg = agr.regression(a, b)
            x = np.linspace(float(b.min()), float(b.max()), 50)  # the band where data lie
            low, high = agr.regression_band(a, b, x)
            ax.plot(x, reg["slope"] * x + reg["intercept"], color="#d62728", lw=1)
            ax.fill_between(x, low, high, color="#d62728", alpha=0.15)
            r = agr.pearson(a, b)["r"] if np.ptp(a) > 0 else float("nan")
            ax.set_title(f"slope {reg['slope']:.3g}, intercept {reg['intercept']:.3g}, r {r:.3f}",
                         fontsize=9)
        ax.set_xlabel(f"reference: {label}", fontsize=8)
        ax.set_ylabel(f"{m}: {label}", fontsize=8)
    fig.suptitle(f"{region}: {label}")
    fig.tight_layout()
    out = []
    for ext in ("png", "svg"):
        p = Path(f"{path_stem}.{ext}")
        fig.savefig(p, dpi=90)
        out.append(p)
    plt.close(fig)
    return out


def _md_table(df, floatfmt=".3g"):
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(result, out_dir, figures=True):
    """Write CSVs, summary.md, summary.html and figures; returns the summary DataFrame."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    result.segmentation.to_csv(out / "per_case_segmentation.csv", index=False)
    result.scores.to_csv(out / "per_case_scores.csv", index=False)
    result.errors.to_csv(out / "errors.csv", index=False)
    summary = result.summary()
    summary.to_csv(out / "summary_agreement.csv", index=False)
    seg_summary = result.segmentation_summary()
    if not seg_summary.empty:
        seg_summary.columns = ["_".join(c).strip("_") for c in seg_summary.columns]
    seg_summary.to_csv(out / "summary_segmentation.csv", index=False)
    figs = []
    if figures and not result.scores.empty:
        for s in FIGURE_SCORES:
            for region in dict.fromkeys(result.scores.region):
                figs += figure(result.scores, s, region, out / "figures" / f"{s}_{region}")
    keep = ["method", "region", "score", "n", "r", "r2", "slope", "intercept", "bias",
            "loa_low", "loa_high", "mape_percent", "icc_agreement", "p", "kappa"]
    brief = summary[[c for c in keep if c in summary.columns]] if not summary.empty else summary
    n_cases = result.scores.case_id.nunique() if not result.scores.empty else 0
    md = [f"# Validation summary\n\n{n_cases} cases evaluated; {len(result.errors)} errors/notes "
          "(errors.csv).\n"]
    if not seg_summary.empty:
        md += ["## Segmentation (mean over cases)\n", _md_table(seg_summary), ""]
    if not brief.empty:
        md += ["## Score agreement with the reference\n", _md_table(brief), ""]
    if len(result.errors):
        md += ["## Errors and notes\n", _md_table(result.errors), ""]
    md += ["## Figures\n"] + [f"- [{p.name}](figures/{p.name})" for p in figs if p.suffix == ".png"]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    body = [f"<h1>Validation summary</h1><p>{n_cases} cases evaluated; "
            f"{len(result.errors)} errors/notes.</p>"]
    for title, df in (("Segmentation", seg_summary), ("Score agreement", brief),
                      ("Errors and notes", result.errors)):
        if not df.empty:
            body.append(f"<h2>{html.escape(title)}</h2>" + df.to_html(index=False, float_format="%.3g"))
    body += [f'<h3>{html.escape(p.stem)}</h3><img src="figures/{p.name}" width="900">'
             for p in figs if p.suffix == ".png"]
    (out / "summary.html").write_text("<html><head><meta charset='utf-8'><title>Validation"
                                      "</title></head><body>" + "\n".join(body) + "</body></html>")
    return summary
