"""Calcification scores per artery group, per side and combined (../shared/METHOD.md §1, §3-5).

>>> from CalciumScoringLib.phantoms.generator import make_phantom
>>> import SimpleITK as sitk
>>> ph = make_phantom(0, spacing=(1.0, 1.0, 1.0), fov="vessels")
>>> res = score(ph.ct, ph.groups, ph.arteries == 2)
>>> list(res.table.region[:3])
['aorta', 'iliac', 'iliac_left']

Definitions:

- ``groups`` is the (shortened) artery-group label map, ``calcium`` the original,
  unshortened calcification mask; calcification counts where it lies inside the
  shortened arteries (the published convention).  Calcification elsewhere is
  never silently dropped: rows ``outside_shortened`` (inside ``groups_full`` but
  trimmed by the shortening) and ``outside_arteries`` (in no artery: bone,
  other vessels, segmentation errors) report it.
- burden = calcified volume / artery volume, both inside the group (0-1).
- clusters are connected components of the calcification inside the arteries
  (6-connectivity by default, 26 as an option); a cluster that crosses a group
  boundary is attributed to the group (and side) holding most of its voxels, and
  its whole size counts there.  ``cluster_mean_mm3`` is 0 when there is none.
- left/right: iliac and renal voxels left (LPS +x) or right of the aorta's
  centre at their height (at the bifurcation for the iliacs).
- Agatston, volume and mass scores: :mod:`CalciumScoringLib.scoring.agatston`; lesions are
  attributed to groups like clusters.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from .. import __version__
from ..imagecheck import as_mask, check_same_grid, crop_box, label_values
from . import agatston as ag

GROUPS = {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}
SIDED = ("iliac", "renal")
REGIONS = ["aorta", "iliac", "iliac_left", "iliac_right", "mesenteric", "renal", "renal_left",
           "renal_right", "combined", "outside_shortened", "outside_arteries"]
COLUMNS = ["region", "group", "side", "artery_volume_mm3", "calcium_volume_mm3", "burden",
           "cluster_count", "cluster_mean_mm3", "lesion_count", "agatston", "risk_category",
           "volume_score_mm3", "mass_score_mg"]
DEFAULTS = dict(connectivity=6, agatston_threshold_hu=130.0, agatston_min_area_mm2=1.0,
                agatston_connectivity=8, agatston_normalize=True, slice_thickness_mm=None,
                mass_calibration=0.001, risk_scheme="5-tier", contrast="auto")


@dataclass
class ScoreResult:
    """``table`` (one row per region), ``parameters``, ``warnings`` and ``version``."""

    table: pd.DataFrame
    parameters: dict
    warnings: list = field(default_factory=list)
    version: str = __version__

    def to_dict(self):
        return {"version": self.version, "parameters": self.parameters,
                "warnings": self.warnings, "scores": self.table.to_dict(orient="records")}

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, default=float)
        if path:
            with open(path, "w") as f:
                f.write(text)
        return text

    def to_csv(self, path=None):
        return self.table.to_csv(path, index=False)


def _sides(groups_arr, image, box):
    """Per-voxel side code inside ``box``: +1 left, -1 right (0 elsewhere) for sided groups."""
    from ArteryShorteningLib.resampling import voxel_points
    from ArteryShorteningLib.stumps import aorta_axis

    side = np.zeros(groups_arr.shape, np.int8)
    sided = np.isin(groups_arr, [GROUPS[g] for g in SIDED])
    offset = [b.start for b in box]
    axis = aorta_axis(image, groups_arr == 1, step=1, offset=offset)
    if axis is None or not sided.any():
        return side
    z, ax_x = axis
    where = np.nonzero(sided)
    q = voxel_points(image, tuple(a + o for a, o in zip(where, offset)))
    i = np.clip(np.searchsorted(z, q[:, 2]), 0, len(z) - 1)
    side[where] = np.where(q[:, 0] >= ax_x[i], 1, -1)
    return side


def _majority(labels, values, n, nvals):
    """For each label 1..n the most frequent of ``values`` (0..nvals-1) among its voxels."""
    if n == 0:
        return np.zeros(0, int)
    counts = np.zeros((n + 1, nvals), np.int64)
    np.add.at(counts, (labels.ravel(), values.ravel()), 1)
    return counts[1:].argmax(1)


def score(ct, groups, calcium, groups_full=None, **params):
    """Score calcification per artery group, side and combined.

    Parameters
    ----------
    ct : SimpleITK.Image
        CT in HU.
    groups : SimpleITK.Image
        Shortened artery groups (1 aorta, 2 iliac, 3 mesenteric, 4 renal), CT grid.
    calcium : SimpleITK.Image
        Binary calcification mask (unshortened), CT grid.
    groups_full : SimpleITK.Image, optional
        Unshortened artery groups, to report calcium trimmed by the shortening.
    **params
        ``connectivity`` (6 or 26), ``agatston_threshold_hu`` (130),
        ``agatston_min_area_mm2`` (1), ``agatston_connectivity`` (8 or 4, in-plane),
        ``agatston_normalize`` (True: to 3 mm slices), ``slice_thickness_mm``,
        ``mass_calibration`` (mg/(mm³·HU), 0.001), ``risk_scheme`` ("5-tier" or
        "4-tier"), ``contrast`` ("auto", True, False).

    Returns
    -------
    ScoreResult
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown scoring parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = dict(DEFAULTS, **params)
    if p["connectivity"] not in (6, 26):
        raise ValueError("connectivity must be 6 or 26")
    check_same_grid(ct, groups, "CT", "artery groups")
    check_same_grid(ct, calcium, "CT", "calcification mask")
    if groups_full is not None:
        check_same_grid(ct, groups_full, "CT", "unshortened artery groups")
    g_all = sitk.GetArrayViewFromImage(groups)
    bad = set() if g_all.min() >= 0 and g_all.max() <= 4 else \
        set(label_values(g_all).tolist()) - {0, 1, 2, 3, 4}
    if bad:
        raise ValueError(f"artery groups have labels {sorted(bad)} outside 1 aorta, 2 iliac, "
                         "3 mesenteric, 4 renal; relabel them first")
    calc_all = as_mask(calcium, "calcification mask")
    full_all = None if groups_full is None else sitk.GetArrayViewFromImage(groups_full)
    spacing = ct.GetSpacing()
    vv = float(np.prod(spacing))
    warnings = []

    box = crop_box(g_all > 0)
    g = np.asarray(g_all[box]) if box else np.zeros((0, 0, 0), np.uint8)
    calc = calc_all[box] & (g > 0) if box else np.zeros((0, 0, 0), bool)
    ct_arr = sitk.GetArrayViewFromImage(ct)[box] if box else np.zeros((0, 0, 0))
    side = _sides(g, ct, box) if box else np.zeros(g.shape, np.int8)
    region_code = g.astype(np.int16) * 3 + (side + 1)  # group*3 + side(0 right,1 none,2 left)

    # clusters (3D) and Agatston lesions (per slice), attributed by majority
    st = ndimage.generate_binary_structure(3, 1 if p["connectivity"] == 6 else 3)
    cl, ncl = ndimage.label(calc, st)
    cl_size = np.bincount(cl.ravel(), minlength=ncl + 1)[1:] * vv
    cl_code = _majority(cl, region_code, ncl, 15)
    lab, les = ag.lesions(ct_arr, calc, spacing, p["agatston_threshold_hu"],
                          p["agatston_min_area_mm2"], p["agatston_connectivity"])
    les_code = _majority(lab, region_code, len(les["area_mm2"]), 15)

    gvox = np.bincount(region_code.ravel(), minlength=15)
    cvox = np.bincount(region_code[calc], minlength=15)
    rows = []

    def row(region, group, side_name, codes):
        sel_c = np.isin(cl_code, codes)
        sel_l = np.isin(les_code, codes)
        art = float(gvox[codes].sum() * vv)
        cal = float(cvox[codes].sum() * vv)
        agat, vol, mass = ag.scores(les, spacing, p["agatston_normalize"], p["mass_calibration"], sel_l)
        rows.append({"region": region, "group": group, "side": side_name,
                     "artery_volume_mm3": art, "calcium_volume_mm3": cal,
                     "burden": cal / art if art > 0 else 0.0,
                     "cluster_count": int(sel_c.sum()),
                     "cluster_mean_mm3": float(cl_size[sel_c].mean()) if sel_c.any() else 0.0,
                     "lesion_count": int(sel_l.sum()), "agatston": agat,
                     "risk_category": ag.risk_category(agat, p["risk_scheme"]),
                     "volume_score_mm3": vol, "mass_score_mg": mass})

    for name, v in GROUPS.items():
        row(name, name, "both" if name in SIDED else "midline", [3 * v, 3 * v + 1, 3 * v + 2])
        if name in SIDED:
            row(f"{name}_left", name, "left", [3 * v + 2])
            row(f"{name}_right", name, "right", [3 * v])
    row("combined", "all", "both", list(range(3, 15)))
    _outside_rows(rows, calc_all, g_all, full_all, vv, p)

    table = pd.DataFrame(rows, columns=COLUMNS)
    _warn(warnings, ct_arr, g, calc, calc_all, spacing, p, table)
    params_out = dict(p, spacing_mm=list(spacing))
    return ScoreResult(table, params_out, warnings)


def _outside_rows(rows, calc_all, g_all, full_all, vv, p):
    cbox = crop_box(calc_all)
    if cbox is None:
        trimmed = elsewhere = np.zeros((0, 0, 0), bool)
    else:
        outside = calc_all[cbox] & (g_all[cbox] == 0)
        trimmed = outside & (full_all[cbox] > 0) if full_all is not None else \
            np.zeros_like(outside)
        elsewhere = outside & ~trimmed
    st = ndimage.generate_binary_structure(3, 1 if p["connectivity"] == 6 else 3)
    for region, m in (("outside_shortened", trimmed), ("outside_arteries", elsewhere)):
        n = ndimage.label(m, st)[1] if m.any() else 0
        vol = float(m.sum() * vv)
        rows.append({"region": region, "group": "none", "side": "none", "artery_volume_mm3": 0.0,
                     "calcium_volume_mm3": vol, "burden": 0.0, "cluster_count": int(n),
                     "cluster_mean_mm3": vol / n if n else 0.0, "lesion_count": 0, "agatston": 0.0,
                     "risk_category": ag.risk_category(0.0, p["risk_scheme"]),
                     "volume_score_mm3": 0.0, "mass_score_mg": 0.0})


def _warn(warnings, ct_arr, g, calc, calc_all, spacing, p, table):
    lumen = (g == 1) & ~calc
    contrast = p["contrast"]
    if contrast == "auto":
        contrast = bool(lumen.any() and np.median(ct_arr[lumen]) > 130)
    if contrast:
        warnings.append("contrast-enhanced CT: Agatston, volume and mass scores are defined for "
                        "non-contrast CT; here they are computed on the calcification mask and "
                        "are not comparable with non-contrast coronary scores")
    t = p["slice_thickness_mm"]
    if t is not None and abs(t - spacing[2]) > 1e-3:
        warnings.append(f"slice thickness {t} mm differs from slice spacing {spacing[2]:.3g} mm: "
                        "Agatston normalisation uses the spacing (each slice counted once)")
    if not g.any():
        warnings.append("artery groups are empty: all artery scores are 0")
    if not calc_all.any():
        warnings.append("calcification mask is empty: all calcium scores are 0")
    out = table.set_index("region").calcium_volume_mm3
    if out["outside_arteries"] > 0:
        warnings.append(f"{out['outside_arteries']:.1f} mm³ of calcification lies outside every "
                        "artery (reported in row outside_arteries, not scored)")
    if out["outside_shortened"] > 0:
        warnings.append(f"{out['outside_shortened']:.1f} mm³ of calcification lies in artery parts "
                        "removed by the shortening (row outside_shortened)")


def attach_wall_calcium(groups, calcium, max_mm=2.0):
    """``groups`` (SimpleITK label map) grown by the calcification it just misses.

    Calcification lies in the arterial wall; an artery-group mask drawn on a coarser grid
    (the bundled groups network works at 2 mm) can end inside the wall and leave a
    plaque's outer part outside every artery, where it would not be scored.  Calcification
    voxels outside ``groups`` but within ``max_mm`` of it are given the label of the
    nearest group voxel.  Returns the new label map and the volume attached (mm³);
    ``groups`` itself is not modified.
    """
    g = sitk.GetArrayFromImage(groups)
    calc = (sitk.GetArrayViewFromImage(calcium) > 0) & (g == 0)
    sp = np.asarray(groups.GetSpacing(), float)[::-1]
    box = crop_box(calc, pad=[int(np.ceil(max_mm / v)) + 1 for v in sp])
    if box is None:
        return groups, 0.0
    sub = g[box]
    if not sub.any():
        return groups, 0.0
    dist, near = ndimage.distance_transform_edt(sub == 0, sampling=sp, return_indices=True)
    take = calc[box] & (dist <= max_mm)
    sub[take] = sub[tuple(i[take] for i in near)]
    out = sitk.GetImageFromArray(g)
    out.CopyInformation(groups)
    return out, float(take.sum() * np.prod(sp))


def attach_to_shortened(shortened, groups_full, calcium, max_mm=2.0):
    """:func:`attach_wall_calcium` for a shortened run: the calcium outside every artery
    (not in ``groups_full``) that lies next to the shortened arteries joins them, and the
    rest next to ``groups_full`` joins it (so it is reported as outside the shortened
    arteries, not outside every artery).  The shortening itself is not redone: it keeps
    measuring the stumps on the network's arteries.  Returns (shortened, groups_full, mm³
    attached to the shortened arteries)."""
    outside = sitk.And(calcium > 0, groups_full == 0)
    short, mm3 = attach_wall_calcium(shortened, outside, max_mm)
    full, _ = attach_wall_calcium(groups_full, outside, max_mm)
    return short, full, mm3


def mark_missing(table, groups):
    """Scores of ``groups`` the artery source does not provide (e.g. TotalSegmentator's
    open task has no renal arteries) set to NaN in place: missing, not zero arteries."""
    rows = table["group"].isin(list(groups))
    for c in table.columns:
        if c in ("region", "group", "side"):
            continue
        if pd.api.types.is_numeric_dtype(table[c]):
            table[c] = table[c].astype(float)
            table.loc[rows, c] = np.nan
        else:
            table.loc[rows, c] = "missing"
    return table
