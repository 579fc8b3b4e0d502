"""Real artery trees grouped by where each branch leaves the aorta (training tools).

:func:`group_expert` turns an expert artery mask without group labels (3D-IRCADb-01) into
the artery groups the networks learn (1 aorta, 2 iliac, 3 mesenteric, 4 renal): a rule
written down, used both to measure the stumps on the IRCAD CTs (``evaluate_stumps.py``)
and to paint the IRCAD label maps' real arteries into training patches
(``synth_ircad.py``).  See :func:`group_expert` for the rule.  Not installed into Slicer.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

GROUPS = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}


def _ball(radius_vox):
    r = np.ceil(radius_vox).astype(int)
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    return (zz / max(radius_vox[0], 1e-3)) ** 2 + (yy / radius_vox[1]) ** 2 + (xx / radius_vox[2]) ** 2 <= 1


def group_expert(artery, ct):
    """``(groups array, records, pieces)``: the expert artery mask ``artery`` (on ``ct``'s
    grid, any image giving the geometry) grouped, one record per branch (ostium LPS, group,
    name, its ``piece`` number) and the labelled branch pieces.

    1. the aorta is the mask's thick part: an opening with a 5 mm ball keeps the aorta's
       core (branches are narrower; pieces of at least 2,000 mm3, since a waist of the
       drawing may split it), taken back to the mask's voxels within 2 mm;
    2. every other piece touching the aorta is a branch; its *ostium* is its part within
       3 mm of the aorta, compared with the aorta's centre at that height (LPS): ostia in
       the lowest 15 mm of the aorta are iliac when the aorta ends inside the field of view
       (else cut by its edge: no group); ostia more than 5 mm behind the centre, and more
       behind than to the side, are lumbar arteries (no group); ostia in front are mesenteric, the highest the celiac trunk and
       the next the SMA (lower ones, and any more than 10 mm below the lowest renal
       ostium, the IMA or variants: no group); ostia to the side are renal (left or right
       by x), unless more than 5 mm above the SMA's (phrenic, adrenal: no group).
    """
    sp = np.array(ct.GetSpacing())[::-1]  # z, y, x mm
    m = sitk.GetArrayFromImage(artery) > 0
    ball = _ball(5.0 / sp)
    pad = [(b // 2, b // 2) for b in ball.shape]  # the aorta runs on beyond the field's edge
    core = ndimage.binary_opening(np.pad(m, pad, mode="edge"), ball)
    core = core[tuple(slice(a, a + n) for (a, _), n in zip(pad, m.shape))]
    lab, n = ndimage.label(core)
    if n == 0:
        raise ValueError("no aorta found in the expert mask")
    sizes = np.bincount(lab.ravel())[1:] * float(np.prod(sp))
    core = np.isin(lab, 1 + np.flatnonzero(sizes >= 2000.0))  # aorta pieces (a waist may split it)
    near = ndimage.distance_transform_edt(~core, sampling=sp)
    aorta = m & (near <= 2.0)
    groups = np.zeros(m.shape, np.uint8)
    groups[aorta] = 1
    rest = m & ~aorta
    pieces, k = ndimage.label(rest, np.ones((3, 3, 3)))
    dist = ndimage.distance_transform_edt(~aorta, sampling=sp)
    ks = np.flatnonzero(aorta.any(axis=(1, 2)))
    centre = {kk: np.argwhere(aorta[kk]).mean(0) for kk in ks}  # (y, x) per slice
    z_of = lambda kk: ct.TransformIndexToPhysicalPoint([0, 0, int(kk)])[2]  # noqa: E731
    bottom = min(ks, key=z_of)
    field_low = min(z_of(0), z_of(m.shape[0] - 1))
    ends_inside = z_of(bottom) > field_low + 5.0  # the bifurcation is in the field of view
    records = []
    for i in range(1, k + 1):
        piece = pieces == i
        ostium = piece & (dist <= 3.0)
        if not ostium.any() or piece.sum() * np.prod(sp) < 20:
            continue
        kz, yo, xo = np.argwhere(ostium).mean(0)
        kk = int(round(kz))
        kk = min(ks, key=lambda q: abs(q - kk))
        cy, cx = centre[kk]
        lps = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(xo), float(yo), float(kz)]))
        c_lps = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(cx), float(cy), float(kk)]))
        ant = c_lps[1] - lps[1]  # LPS y grows to the back
        lat = lps[0] - c_lps[0]  # LPS x grows to the left
        above_bottom = abs(z_of(kk) - z_of(bottom))
        if above_bottom <= 15.0:
            side = "iliac arteries (both, one piece)" if abs(lat) < 5.0 else \
                "left iliac" if lat > 0 else "right iliac"
            g, name = (2, side) if ends_inside else \
                (0, "cut by the field's lower edge")
        elif ant < -5.0 and abs(lat) < -ant:  # more behind than to the side
            g, name = 0, "lumbar"
        elif ant >= abs(lat):
            g, name = 3, "mesenteric"
        else:
            g, name = 4, "left renal" if lat > 0 else "right renal"
        if g:
            groups[piece] = g
        records.append({"piece": i, "group": GROUPS.get(g, "none"), "name": name,
                        "ostium_lps": [round(float(v), 1) for v in lps],
                        "anterior_mm": round(float(ant), 1), "lateral_mm": round(float(lat), 1),
                        "volume_mm3": round(float(piece.sum() * np.prod(sp)), 1)})
    def drop(r, name):
        r["group"], r["name"] = "none", name
        groups[pieces == r["piece"]] = 0

    renal_z = [r["ostium_lps"][2] for r in records if r["group"] == "renal"]
    for r in records:  # the IMA leaves the front of the aorta well below the renal arteries
        if r["group"] == "mesenteric" and renal_z and r["ostium_lps"][2] < min(renal_z) - 10.0:
            drop(r, "front branch below the renal arteries (IMA)")
    mes = sorted([r for r in records if r["group"] == "mesenteric"], key=lambda r: -r["ostium_lps"][2])
    for r, name in zip(mes, ("celiac trunk", "SMA")):
        r["name"] = name
    for r in mes[2:]:  # below the SMA, a front branch is a variant: no group
        drop(r, "other front branch")
    if mes:  # renal arteries leave below the SMA: a side branch above it (phrenic, adrenal)
        top = mes[min(1, len(mes) - 1)]["ostium_lps"][2] + 5.0  # the SMA's (or the trunk's)
        for r in records:
            if r["group"] == "renal" and r["ostium_lps"][2] > top:
                drop(r, "side branch above the SMA")
    return groups, records, pieces
