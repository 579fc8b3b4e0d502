"""The published evaluation for any cohort (../shared/METHOD.md §1-5).

A cohort is a list of cases, each a dict with ``case_id``, ``ct``, ``ref_groups``,
``ref_calcium`` and optionally ``auto_groups`` and ``auto_calcium`` (file paths or
SimpleITK images; a CSV with these columns works too, see :func:`read_cohort`).

Per case, both artery segmentations are shortened with identical parameters, then:

- segmentation metrics per group and combined on the shortened arteries (Dice,
  Jaccard, volumetric similarity, sensitivity, precision), and on the unshortened
  calcification masks;
- scores of the reference and of every method: ``automated`` (the given automated
  segmentation) and the threshold baselines ``idealised``, ``fixed``, ``adaptive``
  (applied inside the reference arteries by default, as in the study, which isolates
  calcium detection from artery segmentation).

:func:`summarise` then gives, per method, region and score, the agreement with the
reference (:func:`CalciumScoringLib.validation.agreement.agreement`) and Cohen's kappa on risk
categories.  A case that fails (missing file, mismatched grid, ...) is recorded in
``errors`` and the rest of the cohort is still evaluated.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..imagecheck import check_same_grid
from ..scoring import thresholds
from ..scoring.scores import GROUPS, score
from . import agreement as agr

SCORES = ["burden", "calcium_volume_mm3", "cluster_count", "cluster_mean_mm3", "agatston",
          "volume_score_mm3"]
REGIONS = ["aorta", "iliac", "mesenteric", "renal", "combined"]
DEFAULT_METHODS = ("automated", "idealised", "fixed", "adaptive")


def overlap(a, b):
    """Dice, Jaccard, volumetric similarity, sensitivity, precision of masks ``a`` (test)
    against ``b`` (reference); NaN where undefined (both empty, or an empty reference)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    na, nb, tp = int(a.sum()), int(b.sum()), int(np.count_nonzero(a & b))
    nan = float("nan")
    both = na + nb
    return {"dice": 2 * tp / both if both else nan,
            "jaccard": tp / (both - tp) if both - tp else nan,
            "volumetric_similarity": 1 - abs(na - nb) / both if both else nan,
            "sensitivity": tp / nb if nb else nan, "precision": tp / na if na else nan,
            "test_voxels": na, "reference_voxels": nb}


@dataclass
class ValidationResult:
    """Per-case tables, per-method summaries and per-case errors (all pandas)."""

    segmentation: pd.DataFrame
    scores: pd.DataFrame
    errors: pd.DataFrame
    parameters: dict = field(default_factory=dict)

    def summary(self):
        return summarise(self.scores)

    def segmentation_summary(self):
        s = self.segmentation
        if s.empty:
            return s
        return (s.groupby(["structure", "region"])[["dice", "jaccard", "volumetric_similarity",
                                                     "sensitivity", "precision"]]
                .agg(["mean", "std"]).reset_index())


def read_cohort(path):
    """Cases from a CSV with columns case_id, ct, ref_groups, ref_calcium[, auto_groups,
    auto_calcium]; relative paths are relative to the CSV."""
    df = pd.read_csv(path)
    missing = {"case_id", "ct", "ref_groups", "ref_calcium"} - set(df.columns)
    if missing:
        raise ValueError(f"cohort file {path} lacks columns {sorted(missing)}")
    base = Path(path).resolve().parent
    cases = []
    for _, r in df.iterrows():
        case = {"case_id": str(r["case_id"])}
        for col in ("ct", "ref_groups", "ref_calcium", "auto_groups", "auto_calcium"):
            v = r.get(col)
            if isinstance(v, str) and v:
                case[col] = str(base / v) if not Path(v).is_absolute() else v
        cases.append(case)
    return cases


def _image(x, what, case_id):
    if isinstance(x, sitk.Image):
        return x
    if x is None:
        raise ValueError(f"case {case_id}: no {what} given")
    if not Path(x).exists():
        raise FileNotFoundError(f"case {case_id}: {what} file {x} does not exist")
    return sitk.ReadImage(str(x))


def _mask(img):
    return sitk.Cast(img > 0, sitk.sitkUInt8)


def evaluate_case(case, methods=DEFAULT_METHODS, shortening=None, threshold_arteries="reference"):
    """Segmentation rows, score rows and notes of one case (raises on unusable input)."""
    from ArteryShorteningLib import shorten_arteries

    cid = str(case["case_id"])
    ct = _image(case.get("ct"), "CT", cid)
    ref_g = sitk.Cast(_image(case.get("ref_groups"), "reference groups", cid), sitk.sitkUInt8)
    ref_c = _mask(_image(case.get("ref_calcium"), "reference calcification", cid))
    for img, name in ((ref_g, "reference groups"), (ref_c, "reference calcification")):
        check_same_grid(ct, img, "CT", name)
    notes = []
    shortening = shortening or {}
    ref_s = shorten_arteries(ref_g, **shortening).labelmap
    rg, rs = sitk.GetArrayViewFromImage(ref_g), sitk.GetArrayViewFromImage(ref_s)
    for g, v in GROUPS.items():
        if not (rg == v).any():
            notes.append(f"reference has no {g}")
    seg_rows, score_rows = [], []
    ref_scores = score(ct, ref_s, ref_c, groups_full=ref_g).table.set_index("region")
    auto_g = auto_s = None
    if "automated" in methods and case.get("auto_groups") is not None:
        auto_g = sitk.Cast(_image(case["auto_groups"], "automated groups", cid), sitk.sitkUInt8)
        check_same_grid(ct, auto_g, "CT", "automated groups")
        auto_s = shorten_arteries(auto_g, **shortening).labelmap
        ag_ = sitk.GetArrayViewFromImage(auto_s)
        for g, v in list(GROUPS.items()) + [("combined", None)]:
            a = ag_ > 0 if v is None else ag_ == v
            b = rs > 0 if v is None else rs == v
            seg_rows.append(dict(case_id=cid, method="automated", structure="arteries (shortened)",
                                 region=g, **overlap(a, b)))
    calc_sources = {}
    arteries = ref_g if threshold_arteries == "reference" or auto_g is None else auto_g
    for m in methods:
        if m == "automated":
            if case.get("auto_calcium") is None:
                notes.append("no automated calcification given")
                continue
            c = _mask(_image(case["auto_calcium"], "automated calcification", cid))
            check_same_grid(ct, c, "CT", "automated calcification")
            calc_sources[m] = (c, auto_s if auto_s is not None else ref_s,
                               auto_g if auto_g is not None else ref_g)
        elif m == "idealised":
            calc_sources[m] = (thresholds.idealised(ct, arteries > 0, ref_c), ref_s, ref_g)
        elif m in thresholds.METHODS:
            calc_sources[m] = (thresholds.METHODS[m](ct, arteries > 0), ref_s, ref_g)
        else:
            raise ValueError(f"unknown method {m!r}")
    rc = sitk.GetArrayViewFromImage(ref_c) > 0
    for m, (c, short, full) in calc_sources.items():
        seg_rows.append(dict(case_id=cid, method=m, structure="calcification (unshortened)",
                             region="combined", **overlap(sitk.GetArrayViewFromImage(c) > 0, rc)))
        t = score(ct, short, c, groups_full=full).table.set_index("region")
        for region in REGIONS:
            row = {"case_id": cid, "method": m, "region": region}
            for s in SCORES:
                row[f"{s}_ref"] = float(ref_scores.loc[region, s])
                row[f"{s}_test"] = float(t.loc[region, s])
            row["risk_ref"] = ref_scores.loc[region, "risk_category"]
            row["risk_test"] = t.loc[region, "risk_category"]
            row["reference_present"] = region == "combined" or bool((rg == GROUPS[region]).any())
            score_rows.append(row)
    return seg_rows, score_rows, notes


def validate_cohort(cases, methods=DEFAULT_METHODS, shortening=None, threshold_arteries="reference",
                    progress=None):
    """Evaluate every case; failures are recorded per case. Returns a :class:`ValidationResult`."""
    seg, sc, errors = [], [], []
    ids = [str(c.get("case_id")) for c in cases]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        errors.append({"case_id": dup, "error": "duplicate case_id: later entries skipped"})
    seen = set()
    for i, case in enumerate(cases):
        cid = str(case.get("case_id"))
        if cid in seen:
            continue
        seen.add(cid)
        try:
            s1, s2, notes = evaluate_case(case, methods, shortening, threshold_arteries)
            seg += s1
            sc += s2
            errors += [{"case_id": cid, "error": f"note: {n}"} for n in notes]
        except Exception as exc:  # one bad case never stops the cohort
            errors.append({"case_id": cid, "error": f"{type(exc).__name__}: {exc}"})
        if progress:
            progress((i + 1) / len(cases), cid)
    return ValidationResult(pd.DataFrame(seg), pd.DataFrame(sc),
                            pd.DataFrame(errors, columns=["case_id", "error"]),
                            {"methods": list(methods), "shortening": shortening or {},
                             "threshold_arteries": threshold_arteries})


def summarise(scores):
    """Agreement per method, region and score (rows), from a per-case score table."""
    rows = []
    if scores.empty:
        return pd.DataFrame(rows)
    cats = ["0", "1-10", "11-100", "101-400", ">400"]
    for (m, region), d in scores.groupby(["method", "region"], sort=False):
        d = d[d.reference_present] if "reference_present" in d else d
        for s in SCORES:
            row = {"method": m, "region": region, "score": s,
                   **agr.agreement(d[f"{s}_test"].to_numpy(), d[f"{s}_ref"].to_numpy())}
            if s == "agatston" and len(d):  # agreement on risk categories
                order = cats if set(d.risk_ref) | set(d.risk_test) <= set(cats) else None
                row["kappa"] = agr.cohen_kappa(d.risk_test, d.risk_ref, order)
                row["kappa_linear"] = (agr.cohen_kappa(d.risk_test, d.risk_ref, order, "linear")
                                       if order else float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)


def compare_tables(test, reference, id_column="case_id", region_column="region"):
    """Agreement of two score tables (e.g. two tools) matched by case id and region.

    Returns ``(summary, problems)``: ids present in only one table are listed in
    ``problems`` and left out of the statistics.
    """
    a, b = test.copy(), reference.copy()
    for t in (a, b):
        if id_column not in t or region_column not in t:
            raise ValueError(f"score tables need columns {id_column!r} and {region_column!r}")
        t[id_column] = t[id_column].astype(str)
    ia, ib = set(a[id_column]), set(b[id_column])
    problems = [{"case_id": i, "error": "only in the test table"} for i in sorted(ia - ib)]
    problems += [{"case_id": i, "error": "only in the reference table"} for i in sorted(ib - ia)]
    m = a.merge(b, on=[id_column, region_column], suffixes=("_test", "_ref"))
    rows = []
    for region, d in m.groupby(region_column, sort=False):
        for s in SCORES:
            if f"{s}_test" in d and f"{s}_ref" in d:
                rows.append({"region": region, "score": s,
                             **agr.agreement(d[f"{s}_test"].to_numpy(float),
                                             d[f"{s}_ref"].to_numpy(float))})
    return pd.DataFrame(rows), pd.DataFrame(problems, columns=["case_id", "error"])
