"""What each score row means: the state of every artery group, and whether its scores are valid.

A group's **state** is one of

``measured``
    the masks hold the group and its scores are computed;
``not found``
    its anatomy lies in the field of view but the masks hold none of it (scores NaN);
``not in view``
    the field of view does not reach it (scores NaN);
``not labelled``
    the artery source does not label this group at all, e.g. TotalSegmentator's open
    task has no renal arteries (scores NaN);
``not valid``
    the masks hold it but fail the plausibility check (scores kept, not valid).

A missing group never reads as a healthy one: its scores are NaN, not 0, and the flag
``groups_not_found`` / ``groups_not_in_view`` names it.  The side rows (``renal_left``,
...) follow the same rule: a side whose group is measured but which holds no artery is not
found.  ``combined`` sums the groups whose masks are scored and says which (``covers``).

**In view** is decided from the aorta and the side arteries found, with the anatomy's
order along the aorta (the celiac trunk and SMA above the renal arteries, those 80-120 mm
above the bifurcation; see :func:`in_view`).

**Valid**: a row's scores are valid unless a flag that invalidates them is raised
(:data:`INVALIDATES`): the plausibility check (for the aorta every group, since the stumps
are measured from it; for a side group that group), no contrast where a network or the
adaptive threshold made the masks, NaN voxels in the input, slices over 5 mm, a calcium
network that does not recognise the arteries, calcium that does not stay put
(``calcium_not_reproducible``), no arteries.
"""

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .checks import flag

GROUPS = {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}
MEASURED, NOT_FOUND, NOT_IN_VIEW, NOT_LABELLED, NOT_VALID = (
    "measured", "not found", "not in view", "not labelled", "not valid")
NAN_STATES = (NOT_FOUND, NOT_IN_VIEW, NOT_LABELLED)
#: flags that make every row's scores not valid (``no_contrast`` only where a network or
#: the adaptive threshold made the masks; see :func:`invalid_reasons`)
INVALIDATES = ("no_arteries", "no_contrast", "nan_voxels", "thick_slices",
               "calcium_network_unsure", "calcium_not_reproducible")
#: anatomy along the aorta (mm; measured on real CT and drawn alike in the phantoms): the
#: renal arteries leave 8-25 mm below the SMA, the SMA 10-18 mm below the celiac trunk,
#: the bifurcation 80-120 mm below the renal arteries
RENAL_BELOW_SMA_MM = 25.0
SMA_ABOVE_RENAL_MM = 15.0
RENAL_ABOVE_BIFURCATION_MM = 120.0
SMA_ABOVE_BIFURCATION_MM = 140.0
#: a side group's origin: its voxels within this distance of the aorta
ORIGIN_MM = 5.0
#: a side group holding less than this (mm3) in the unshortened masks is specks, not an
#: artery (the plausibility check's ``side_min_volume_mm3``): not found, its scores NaN
#: (ts_dicom_series: 8 mm3 of "iliac" in the upper abdomen, all of it calcium, burden 1.0)
SPECK_MM3 = 50.0


def _z_extent(img):
    """(lowest, highest) LPS z (mm) of the voxel centres of ``img``."""
    size = np.array(img.GetSize()) - 1
    z = [img.TransformIndexToPhysicalPoint([int(v) for v in np.multiply(c, size)])[2]
         for c in np.ndindex(2, 2, 2)]
    return min(z), max(z)


def in_view(groups):
    """For each group: True (in the field of view), False (not) or None (cannot tell),
    and the reason in words.

    ``groups`` is the unshortened label map (1 aorta, 2 iliac, 3 mesenteric, 4 renal).  A
    group that is present is in view.  The iliac arteries are in view when the aorta ends
    inside the field of view (its bifurcation is seen), not when the aorta runs out of its
    lower edge.  The renal arteries are in view when the field of view reaches
    :data:`RENAL_BELOW_SMA_MM` below the lowest origin of the mesenteric arteries found,
    or, without them, :data:`RENAL_ABOVE_BIFURCATION_MM` above a bifurcation in view; the
    mesenteric arteries when it reaches :data:`SMA_ABOVE_RENAL_MM` above the highest renal
    origin, or :data:`SMA_ABOVE_BIFURCATION_MM` above the bifurcation.
    """
    from scipy import ndimage

    from ..imagecheck import to_lps

    img = to_lps(groups)
    g = sitk.GetArrayViewFromImage(img)
    sp = np.array(img.GetSpacing())
    z0, dz = img.GetOrigin()[2], img.GetDirection()[8] * sp[2]
    lo, hi = _z_extent(img)
    present = {name: bool((g == v).any()) for name, v in GROUPS.items()}
    out = {name: (True, "found") for name, ok in present.items() if ok}
    aorta = g == 1
    if not present["aorta"]:
        for name in GROUPS:
            out.setdefault(name, (None, "no aorta to place it by"))
        return out
    ks = np.flatnonzero(aorta.any(axis=(1, 2)))
    zs = z0 + ks * dz
    a_lo = float(zs.min())
    bifurcation = a_lo if a_lo > lo + 1.5 * abs(dz) else None
    near = ndimage.distance_transform_edt(~aorta, sampling=sp[::-1]) <= ORIGIN_MM

    def origin_z(v, pick):
        k = np.flatnonzero(((g == v) & near).any(axis=(1, 2)))
        if not k.size:
            k = np.flatnonzero((g == v).any(axis=(1, 2)))
        return float(pick(z0 + k * dz))

    if "iliac" not in out:
        out["iliac"] = (True, "the aorta ends inside the field of view") if bifurcation is not None \
            else (False, "the aorta runs out of the lower edge of the field of view")
    if "renal" not in out:
        if present["mesenteric"]:
            need = origin_z(3, np.min) - RENAL_BELOW_SMA_MM
            out["renal"] = (lo <= need, f"the field of view {'reaches' if lo <= need else 'ends'} "
                            f"{abs(origin_z(3, np.min) - lo):.0f} mm below the SMA's origin")
        elif bifurcation is not None:
            need = bifurcation + RENAL_ABOVE_BIFURCATION_MM
            out["renal"] = (hi >= need, f"the field of view reaches {hi - bifurcation:.0f} mm "
                            "above the aortic bifurcation")
        else:
            out["renal"] = (None, "no mesenteric artery or bifurcation to place it by")
    if "mesenteric" not in out:
        if present["renal"]:
            need = origin_z(4, np.max) + SMA_ABOVE_RENAL_MM
            out["mesenteric"] = (hi >= need, f"the field of view reaches {hi - origin_z(4, np.max):.0f} "
                                 "mm above the highest renal origin")
        elif bifurcation is not None:
            need = bifurcation + SMA_ABOVE_BIFURCATION_MM
            out["mesenteric"] = (hi >= need, f"the field of view reaches {hi - bifurcation:.0f} mm "
                                 "above the aortic bifurcation")
        else:
            out["mesenteric"] = (None, "no renal artery or bifurcation to place it by")
    return out


def group_states(groups, missing=(), plausibility=None):
    """``{group: (state, reason)}`` of the unshortened ``groups`` (see the module docstring).

    ``missing``: groups the artery source does not label; ``plausibility``: the
    :class:`..qc.plausibility.Plausibility` of the groups (its failed checks make the
    groups they name not valid; a failed aorta check makes every group not valid)."""
    view = in_view(groups)
    g = sitk.GetArrayViewFromImage(groups)
    vv = float(np.prod(groups.GetSpacing()))
    volume = {name: float(np.count_nonzero(g == v)) * vv for name, v in GROUPS.items()}
    failed = [c.name for c in plausibility.failed] if plausibility is not None else []
    aorta_bad = any(n.startswith("aorta") for n in failed)
    states = {}
    for name in GROUPS:
        seen, why = view[name]
        bad = [n for n in failed if n.startswith(name)]
        if name in missing:
            states[name] = (NOT_LABELLED, "the artery source does not label it")
        elif why != "found":
            states[name] = (NOT_IN_VIEW, why) if seen is False else \
                (NOT_FOUND, f"in view: {why}") if seen else \
                (NOT_FOUND, f"whether in view cannot be told: {why}")
        elif name != "aorta" and volume[name] < SPECK_MM3:
            states[name] = (NOT_FOUND, f"only {volume[name]:.0f} mm3 in the masks: specks, not "
                                       "an artery")
        elif aorta_bad or bad:
            states[name] = (NOT_VALID, "failed " + ", ".join(bad or [n for n in failed
                                                               if n.startswith("aorta")]))
        else:
            states[name] = (MEASURED, "")
    return states


def invalid_reasons(flags, groups_by_network=True):
    """The codes among ``flags`` that make every score not valid (see :data:`INVALIDATES`);
    ``no_contrast`` counts only when a network or the adaptive threshold made the masks."""
    codes = [f["code"] for f in flags]
    return [c for c in codes if c in INVALIDATES and (c != "no_contrast" or groups_by_network)]


def apply_states(table, states, reasons=()):
    """The score ``table`` with columns ``state``, ``scores_valid`` and ``covers``: NaN
    scores for groups (and sides) not found, not in view or not labelled; every row not
    valid when ``reasons`` (invalidating flag codes) is not empty.  A new table."""
    t = table.copy()
    num = [c for c in t.columns if c not in ("region", "group", "side")
           and pd.api.types.is_numeric_dtype(t[c])]
    t[num] = t[num].astype(float)
    state, valid, covers = [], [], []
    scored = [g for g, (s, _) in states.items() if s in (MEASURED, NOT_VALID)]
    for _, r in t.iterrows():
        g = r["group"]
        if g in states:
            s = states[g][0]
            if s in (MEASURED, NOT_VALID) and r["side"] in ("left", "right") \
                    and not r["artery_volume_mm3"] > 0:
                s = NOT_FOUND
            cov = g
        elif r["region"] == "combined":
            s = MEASURED if scored else NOT_FOUND
            s = NOT_VALID if any(states[g][0] == NOT_VALID for g in scored) else s
            cov = "+".join(scored)
        else:
            s, cov = MEASURED, r["region"]
        state.append(s)
        covers.append(cov)
        valid.append(s == MEASURED and not reasons)
    t["state"], t["scores_valid"], t["covers"] = state, valid, covers
    _leave_out_of_combined(t, [g for g, (s, _) in states.items() if s in NAN_STATES])
    gone = t["state"].isin(NAN_STATES)
    t.loc[gone, num] = np.nan
    if "risk_category" in t.columns:
        t["risk_category"] = t["risk_category"].astype(object)
        t.loc[gone, "risk_category"] = t.loc[gone, "state"]
    return t


#: combined-row columns that are sums of the group rows (clusters and lesions are each
#: attributed to one group, so the group rows partition the combined row)
ADDITIVE = ("artery_volume_mm3", "calcium_volume_mm3", "cluster_count", "lesion_count",
            "agatston", "volume_score_mm3", "mass_score_mg")


def _leave_out_of_combined(t, groups, risk_scheme="5-tier"):
    """Take the group rows of ``groups`` (specks of a group not found) out of ``combined``."""
    from ..scoring.agatston import risk_category

    rows = t[(t["region"].isin(groups)) & (t["side"].isin(["both", "midline"]))]
    rows = rows[rows["artery_volume_mm3"] > 0]
    if not len(rows) or "combined" not in set(t["region"]):
        return
    i = t.index[t["region"] == "combined"][0]
    count = t.at[i, "cluster_count"]
    mean_sum = t.at[i, "cluster_mean_mm3"] * count - (rows["cluster_mean_mm3"] * rows["cluster_count"]).sum()
    for c in ADDITIVE:
        if c in t.columns:
            t.at[i, c] = t.at[i, c] - rows[c].sum()
    art = t.at[i, "artery_volume_mm3"]
    t.at[i, "burden"] = t.at[i, "calcium_volume_mm3"] / art if art > 0 else 0.0
    n = t.at[i, "cluster_count"]
    t.at[i, "cluster_mean_mm3"] = mean_sum / n if n > 0 else 0.0
    if "risk_category" in t.columns:
        t.at[i, "risk_category"] = risk_category(t.at[i, "agatston"], risk_scheme)


def state_flags(states, table=None):
    """Flags ``groups_not_found`` and ``groups_not_in_view`` naming the groups and why; with
    the score ``table`` (after :func:`apply_states`), the sides of a measured group that
    hold no artery are named too ("right renal")."""
    states = dict(states)
    if table is not None:
        for _, r in table.iterrows():
            if r["side"] in ("left", "right") and r["state"] == NOT_FOUND \
                    and states.get(r["group"], ("",))[0] in (MEASURED, NOT_VALID):
                states[f"{r['side']} {r['group']}"] = (NOT_FOUND, "the masks hold no artery on "
                                                                  "that side")
    out = []
    for code, s, text in (("groups_not_found", NOT_FOUND, "not found in the masks although "
                           "the field of view holds their anatomy (or where it cannot be told)"),
                          ("groups_not_in_view", NOT_IN_VIEW, "outside the field of view")):
        named = [f"{g} ({why})" for g, (st, why) in states.items() if st == s]
        if named:
            out.append(flag(code, f"{'; '.join(named)}: {text}; their scores are NaN, not 0, "
                            "and 'combined' leaves them out"
                            + ("; add them in Segment Editor and re-score if they are there"
                               if s == NOT_FOUND else "")))
    return out


def sides_not_measured(rows):
    """``{"right renal": state, ...}``: the sides (iliac, renal) not measured although their
    group is, from the score rows (``region``/``state`` dicts, as in ``scores.json``), so a
    one-line summary names a missing renal artery as it names a missing group.

    >>> sides_not_measured([{"region": "renal", "state": "measured"},
    ...                     {"region": "renal_left", "state": "measured"},
    ...                     {"region": "renal_right", "state": "not found"}])
    {'right renal': 'not found'}
    """
    state = {r.get("region"): r.get("state") for r in rows}
    return {f"{side} {g}": state[f"{g}_{side}"] for g in ("iliac", "renal") if state.get(g) == MEASURED
            for side in ("left", "right") if state.get(f"{g}_{side}") in NAN_STATES}


def summary(table):
    """``{region: state}`` of the group rows and ``combined``, for a one-line print."""
    rows = table[table.region.isin(list(GROUPS) + ["combined"])]
    return dict(zip(rows.region, rows.state))


def assess(ct, groups, calcium, calcium_source, table, branches, stump_length_mm, missing=(),
           source=None, flags=(), user_masks=False):
    """Every quality check of a scored case, as the CLI and the Slicer module give them.

    ``groups`` (unshortened) and ``calcium`` lie on ``ct``'s grid; ``table`` is the score
    table, ``branches`` the shortening report; ``missing`` the groups the artery source
    does not label (``source`` names it); ``flags`` the flags so far (the CT's own);
    ``user_masks``: both the groups and the calcium are the user's (then ``no_contrast``
    does not invalidate).  Returns ``(flags, states, reasons, table, plausibility)``: the
    flags in order, ``{group: (state, reason)}``, the invalidating flag codes, the table
    with ``state``, ``scores_valid`` and ``covers`` (:func:`apply_states`), and the
    :class:`..qc.plausibility.Plausibility`."""
    from . import checks as qc
    from .plausibility import check_arteries

    flags = list(flags)
    flags += qc.calcium_network_flags(calcium_source) + qc.metal_flags(calcium_source)
    flags += qc.calcium_noise_flags(calcium_source, ct.GetSpacing())
    flags += qc.check_result(ct, groups, calcium)  # contrast, metal, field of view
    short = qc.short_arteries_flag(branches, stump_length_mm)
    flags += [short] if short else []
    plausible = check_arteries(ct, groups, missing)
    if plausible.flag:
        flags.append(plausible.flag)
    if missing:
        flags.append(qc.groups_missing_flag(list(missing), source))
    states = group_states(groups, missing, plausible)
    reasons = invalid_reasons(flags, groups_by_network=not user_masks)
    table = apply_states(table, states, reasons)
    flags += state_flags(states, table)
    return flags, states, reasons, table, plausible


def all_valid(table):
    """True when at least one group is measured and every group row whose masks are scored
    (measured or not valid) and the combined row are valid: the case's ``scores_valid``."""
    rows = table[table.region.isin(list(GROUPS) + ["combined"])]
    scored = rows[rows.state.isin([MEASURED, NOT_VALID])]
    return bool((rows.state == MEASURED).any() and scored.scores_valid.all())
