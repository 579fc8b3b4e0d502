"""Is this artery-group mask anatomy? A check run before scoring, whatever made the mask.

``check_arteries(ct, groups)`` measures the artery groups (1 aorta, 2 iliac, 3 mesenteric,
4 renal) against what real anatomy has and returns a :class:`Plausibility`: every check
with its measured value and, for a failed one, a sentence in words.  Its ``flag`` is the
QC flag ``arteries_implausible`` (or None); the scores are still computed, marked
``scores_valid: false``, because a reader may overrule the check.

All geometry is measured in patient coordinates (the image reoriented to LPS, so the
check holds for any voxel order) on the mask's own grid; the spine and the bone around the
aorta come from the CT on a 2 mm copy.  The checks, their limits (``LIMITS``) and, in
brackets, the range measured over the masks that must pass (see below):

aorta
    present; one dominant 26-connected piece (the largest >= 80 % of the label; [1.00]);
    median equivalent diameter of its axial sections 8-90 mm [16.3-27.0] (real abdominal
    aortas 15-25 mm, aneurysms rarely above 90 mm) and sections roughly round (median
    minor/major axis >= 0.45 [0.91-0.99]); long enough for the field of view (height >=
    min(30 % of the field of view, 80 mm); [40 mm of a 40 mm field of view; 153-204 mm]);
    running head to feet (height >= 1.5 median diameters [1.48 in a 40 mm field of view,
    which is the whole field, else 4.5-11.1], or the whole field of view, and the centre
    moving <= 1.5 mm sideways per mm of height [0.03-0.30]); within 45 mm of the spine's
    midline [1.6-17.7] and >= 15 mm in front of the spine's bone centre [30.9-65.5]; not
    lying on the spine (more than 45 % of 16 in-slice directions meeting bone within 20 mm
    while within 25 mm of the spine's midline; [0.06-0.31]; an aorta laid on the vertebrae
    of ts_abdomen_ct: 0.56); lumen even along it (10th-90th percentile of 10 mm slab
    medians <= 150 HU [1-28]).
side groups (those of at least 50 mm3: a few 2 mm voxels are noise, not anatomy)
    near the aorta (>= half of the group's voxels in pieces within 5 mm of it [1.00]);
    iliac arteries below the aorta's middle and below the renal and mesenteric arteries;
    renal arteries running sideways (median >= 8 mm from the aorta's centre [30-39]);
    celiac trunk and SMA in front of the aorta's centre (median >= 5 mm [30-39]);
    volumes <= 150,000 mm3 iliac [max 37,300], 40,000 mesenteric [15,800], 15,000 renal
    [9,900] (real: iliacs 8-12 mm wide; renal arteries 5-6 mm wide, a few cm long).

The bracketed ranges are over the truth of 16 training-distribution phantoms (seeds
300000-300015, abdomen and vessel fields of view, lumen 20-650 HU, 0.625-3 mm slices)
and the reference and TotalSegmentator labels of ``ts_abdomen_ct`` (non-contrast, 3 mm)
and ``ts_dicom_series`` (portal-venous, a 40 mm field of view) in ``../shared/data``,
and the team's reference aorta of ``ircad01_abdomen`` (``docs/references/``; redrawn in
2026-11-24, which widened three ranges, no limit);
``training/calibrate_plausibility.py`` measures them.  Masks that must fail (a blob in a
kidney, a 15 mm fragment of a real aorta, an aorta moved onto the spine or 60 mm to the
side, iliacs above the renals) are in ``Testing/test_plausibility.py``.
"""

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import crop_box
from .checks import flag

CODE = "arteries_implausible"
GROUP_NAMES = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}
LIMITS = {
    "aorta_main_fraction": 0.80,
    "aorta_diameter_mm": (8.0, 90.0),
    "aorta_roundness": 0.45,
    "aorta_length_fov_fraction": 0.30,
    "aorta_length_mm": 80.0,
    "aorta_elongation": 1.5,
    "aorta_drift": 1.5,
    "spine_lateral_mm": 45.0,
    "spine_anterior_mm": 15.0,
    "bone_around_fraction": 0.45,
    "spine_midline_mm": 25.0,
    "lumen_spread_hu": 150.0,
    "side_min_volume_mm3": 50.0,
    "side_near_mm": 5.0,
    "side_near_fraction": 0.5,
    "renal_lateral_mm": 8.0,
    "mesenteric_anterior_mm": 5.0,
    "max_volume_mm3": {2: 150000.0, 3: 40000.0, 4: 15000.0},
}


@dataclass
class Check:
    """One check: ``name``, whether it ``passed``, the measured ``value`` and, for a
    failed one, a ``message`` in words."""
    name: str
    passed: bool
    value: float = float("nan")
    message: str = ""


@dataclass
class Plausibility:
    checks: list = field(default_factory=list)
    measurements: dict = field(default_factory=dict)

    @property
    def failed(self):
        return [c for c in self.checks if not c.passed]

    @property
    def ok(self):
        return not self.failed

    @property
    def flag(self):
        """The QC flag ``arteries_implausible`` naming every failed check, or None."""
        if self.ok:
            return None
        return flag(CODE, "the artery masks do not look like anatomy, so the scores may "
                    "describe something else: " + "; ".join(c.message for c in self.failed)
                    + ". Check the arteries (Segment Editor) before using the scores")

    def as_dict(self):
        return {"ok": self.ok, "failed": [c.name for c in self.failed],
                "checks": {c.name: {"passed": c.passed, "value": _num(c.value),
                                    **({"message": c.message} if c.message else {})}
                           for c in self.checks},
                "measurements": {k: _num(v) for k, v in self.measurements.items()}}


def _num(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else \
        round(float(v), 2) if isinstance(v, (float, np.floating)) else v


def _lps(img):
    """``img`` with axes pointing Left, Posterior, Superior (array axes z=S, y=P, x=L):
    ``(image, array, origin, spacing)``, origin and spacing in (x, y, z) mm."""
    img = sitk.DICOMOrient(img, "LPS")
    return img, sitk.GetArrayFromImage(img), np.array(img.GetOrigin()), np.array(img.GetSpacing())


def _largest(mask, structure=None):
    """The largest connected piece of ``mask`` and the fraction of ``mask`` it holds."""
    lab, n = ndimage.label(mask, structure=structure)
    if n <= 1:
        return mask.copy(), 1.0
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (np.argmax(sizes) + 1), float(sizes.max() / sizes.sum())


def _sections(mask, origin, spacing):
    """One row per axial slice holding ``mask``: z, area (mm2), centroid y, x (mm) and the
    minor/major axis ratio of the slice's largest 2D piece."""
    out = []
    sx, sy = spacing[0], spacing[1]
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        piece, _ = _largest(mask[k])
        yy, xx = np.nonzero(piece)
        y, x = origin[1] + yy * sy, origin[0] + xx * sx
        ratio = 1.0
        if yy.size >= 3:
            ev = np.linalg.eigvalsh(np.cov(np.vstack([x, y])) + np.eye(2) * sx * sy / 12)
            ratio = float(np.sqrt(max(ev[0], 1e-9) / max(ev[1], 1e-9)))
        out.append((origin[2] + k * spacing[2], yy.size * sx * sy, y.mean(), x.mean(), ratio))
    return np.array(out, float).reshape(-1, 5)


def _spine(ct2, arteries2, origin, spacing, bone_hu=200.0):
    """Per slice of the 2 mm copy: (z, y, x) mm of the spine's bone centre (vertebral body
    and posterior elements), rows without spine left out.  Bone: above ``bone_hu`` outside
    the artery labels dilated by 4 mm, in the body's central third from left to right and
    its posterior two thirds; the largest such piece of the slice."""
    bone = (ct2 > bone_hu) & ~ndimage.binary_dilation(arteries2, iterations=2)
    out = []
    for k in range(ct2.shape[0]):
        ys, xs = np.nonzero(ct2[k] > -300)
        if ys.size < 100:
            continue
        x0, x1 = np.percentile(xs, [2, 98])
        y0, y1 = np.percentile(ys, [2, 98])
        xc, w = (x0 + x1) / 2, x1 - x0
        band = np.zeros(ct2.shape[1:], bool)
        band[int(y0 + (y1 - y0) / 3):int(y1) + 1, int(xc - w / 6):int(xc + w / 6) + 1] = True
        piece, _ = _largest(bone[k] & band)
        if piece.sum() * spacing[0] * spacing[1] < 100:  # less than 1 cm2 of bone
            continue
        yy, xx = np.nonzero(piece)
        out.append((origin[2] + k * spacing[2], origin[1] + yy.mean() * spacing[1],
                    origin[0] + xx.mean() * spacing[0]))
    return np.array(out, float).reshape(-1, 3)


def _bone_around(ct2, aorta2, arteries2, bone_hu=200.0, start_mm=3.0, reach_mm=20.0, rays=16):
    """Median over the aorta's 2 mm slices of the fraction of ``rays`` directions (in the
    slice) that meet bone (> ``bone_hu``, outside every artery label) between ``start_mm``
    and ``reach_mm`` beyond the aorta's edge.  A real aorta has bone behind it only (the
    vertebral body); a mask laid on the spine is ringed by bone."""
    other = ndimage.binary_dilation(arteries2, iterations=1)
    bone = (ct2 > bone_hu) & ~other
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    steps = np.arange(start_mm, reach_mm + 1e-6, 1.0) / 2.0  # in 2 mm voxels
    out = []
    for k in np.flatnonzero(aorta2.any(axis=(1, 2))):
        yy, xx = np.nonzero(aorta2[k])
        cy, cx, r = yy.mean(), xx.mean(), np.sqrt(yy.size / np.pi)
        py = np.rint(cy + np.outer(np.sin(angles), r + steps)).astype(int)
        px = np.rint(cx + np.outer(np.cos(angles), r + steps)).astype(int)
        inside = (py >= 0) & (py < bone.shape[1]) & (px >= 0) & (px < bone.shape[2])
        hit = np.zeros(py.shape, bool)
        hit[inside] = bone[k][py[inside], px[inside]]
        out.append(hit.any(axis=1).mean())
    return float(np.median(out)) if out else float("nan")


def _at(z, table):
    """Column values of ``table`` (first column z) at the nearest z within 5 mm, or NaN."""
    out = np.full((len(z), table.shape[1] - 1), np.nan)
    if len(table):
        i = np.abs(table[:, :1].T - np.asarray(z)[:, None]).argmin(axis=1)
        near = np.abs(table[i, 0] - z) <= 5.0
        out[near] = table[i[near], 1:]
    return out


def _two_mm(img, interpolator, default):
    sp = [2.0, 2.0, 2.0]
    size = [max(int(round(n * s / 2.0)), 1) for n, s in zip(img.GetSize(), img.GetSpacing())]
    return sitk.Resample(img, size, sitk.Transform(), interpolator, img.GetOrigin(), sp,
                         img.GetDirection(), default, img.GetPixelID())


def _groups_two_mm(g_img, g, sp):
    """The groups on the 2 mm copy, where a side group holds every 2 mm cell it touches
    (not only the cells whose centre it covers): a thin branch that reaches the aorta at
    the CT's resolution still reaches it on the copy (nearest-neighbour sampling breaks a
    1 mm renal artery into pieces, and its pieces would seem not to reach the aorta)."""
    g2 = sitk.GetArrayFromImage(_two_mm(g_img, sitk.sitkNearestNeighbor, 0))
    k = [max(int(np.ceil(2.0 / s)), 1) for s in sp[::-1]]  # (z, y, x) voxels per 2 mm
    if k == [1, 1, 1]:
        return g2
    for v in (2, 3, 4):
        m = g == v
        box = crop_box(m, pad=max(k))
        if box is None:
            continue
        wide = np.zeros(m.shape, np.uint8)
        wide[box] = ndimage.binary_dilation(m[box], np.ones(k, bool))
        img = sitk.GetImageFromArray(wide)
        img.CopyInformation(g_img)
        cells = sitk.GetArrayFromImage(_two_mm(img, sitk.sitkNearestNeighbor, 0)) > 0
        g2[cells & (g2 == 0)] = v
    return g2


def measure(ct, groups):
    """The measurements the checks use (a dict of floats, mm / mm3 / HU); see the module."""
    g_img, g, origin, sp = _lps(sitk.Cast(groups, sitk.sitkUInt8))
    vox = float(np.prod(sp))
    m = {f"{name}_volume_mm3": float((g == v).sum() * vox) for v, name in GROUP_NAMES.items()}
    m["fov_length_mm"] = float(g.shape[0] * sp[2])
    boxes = ndimage.find_objects((g == 1).astype(np.uint8))
    if not boxes:
        return m
    box = boxes[0]  # the aorta's bounding box: the per-slice work stays there
    start = origin + np.array([box[2].start, box[1].start, box[0].start]) * sp
    main, m["aorta_main_fraction"] = _largest(g[box] == 1, np.ones((3, 3, 3)))
    sec = _sections(main, start, sp)
    m["aorta_diameter_mm"] = float(np.median(2 * np.sqrt(sec[:, 1] / np.pi)))
    m["aorta_roundness"] = float(np.median(sec[:, 4]))
    m["aorta_length_mm"] = float(sec[-1, 0] - sec[0, 0] + sp[2])
    m["aorta_fov_fraction"] = m["aorta_length_mm"] / m["fov_length_mm"]
    m["aorta_elongation"] = m["aorta_length_mm"] / max(m["aorta_diameter_mm"], 1e-6)
    if len(sec) >= 3:
        step = np.hypot(np.diff(sec[:, 2]), np.diff(sec[:, 3])) / np.diff(sec[:, 0])
        m["aorta_drift"] = float(np.median(step))
    else:
        m["aorta_drift"] = 0.0
    m["aorta_z_mm"] = (float(sec[0, 0]), float(sec[-1, 0]))
    # the CT: spine, bone around the aorta, lumen along it
    c_img, c, corigin, _ = _lps(ct)
    c2 = sitk.GetArrayFromImage(_two_mm(c_img, sitk.sitkLinear, -1024.0))
    g2 = _groups_two_mm(g_img, g, sp)
    core = ndimage.binary_erosion(main, iterations=1)
    core = core if core.sum() >= 20 else main
    cb = c[box]  # the CT over the aorta's box (same LPS grid as the groups)
    m["lumen_hu"] = float(np.median(cb[core]))
    spine = _spine(c2, g2 > 0, corigin, np.array([2.0, 2.0, 2.0]))
    at = _at(sec[:, 0], spine)
    ok = np.isfinite(at[:, 0])
    m["spine_slices_fraction"] = float(ok.mean())
    if ok.sum() >= max(2, 0.2 * len(sec)):
        m["spine_lateral_mm"] = float(np.median(np.abs(sec[ok, 3] - at[ok, 1])))
        m["spine_anterior_mm"] = float(np.median(at[ok, 0] - sec[ok, 2]))
    m["bone_around_fraction"] = _bone_around(c2, g2 == 1, g2 > 0)
    zk = np.flatnonzero(core.any(axis=(1, 2)))
    slab = max(1, int(round(10.0 / sp[2])))
    med = [float(np.median(cb[k0:k0 + slab][core[k0:k0 + slab]]))
           for k0 in range(zk[0], zk[-1] + 1, slab) if core[k0:k0 + slab].any()]
    m["lumen_spread_hu"] = float(np.subtract(*np.percentile(med, [90, 10]))) \
        if len(med) > 1 else 0.0
    m.update(_side_groups(g2, corigin, sec))
    return m


def _side_groups(g2, origin, sec):
    """Side-group measurements on the 2 mm copy, relative to the aorta's sections."""
    m = {}
    sp = np.array([2.0, 2.0, 2.0])
    aorta = g2 == 1
    near = ndimage.distance_transform_edt(~aorta, sampling=sp[::-1]) <= LIMITS["side_near_mm"] \
        if aorta.any() else np.zeros_like(aorta)
    for v in (2, 3, 4):
        name = GROUP_NAMES[v]
        mask = g2 == v
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, np.ones((3, 3, 3)))
        touching = np.unique(lab[near & mask])
        m[f"{name}_near_fraction"] = float(np.isin(lab, touching[touching > 0]).sum() / mask.sum())
        zz, yy, xx = np.nonzero(mask)
        z = origin[2] + zz * 2.0
        m[f"{name}_z_mm"] = float(np.median(z))
        centre = _at(z, sec[:, [0, 2, 3]])
        ok = np.isfinite(centre[:, 0])
        if ok.any():
            m[f"{name}_lateral_mm"] = float(np.median(np.abs(origin[0] + xx[ok] * 2.0 - centre[ok, 1])))
            m[f"{name}_anterior_mm"] = float(np.median(centre[ok, 0] - (origin[1] + yy[ok] * 2.0)))
    return m


def check_arteries(ct, groups, missing=()):
    """Run every plausibility check on the artery groups of ``ct`` (same grid).

    ``missing``: groups the artery source does not provide (e.g. TotalSegmentator's open
    task has no mesenteric or renal arteries); they are not checked.  Returns a
    :class:`Plausibility`.
    """
    from ..imagecheck import check_same_grid

    check_same_grid(ct, groups, "CT", "artery groups")
    m = measure(ct, groups)
    L = LIMITS
    checks = []

    def add(name, passed, value, message):
        checks.append(Check(name, bool(passed), value, "" if passed else message))

    if m["aorta_volume_mm3"] == 0:
        add("aorta_present", False, 0.0, "there is no 'aorta'")
        return Plausibility(checks, m)
    add("aorta_present", True, m["aorta_volume_mm3"], "")
    f = m["aorta_main_fraction"]
    add("aorta_one_piece", f >= L["aorta_main_fraction"], f,
        f"the 'aorta' is in pieces, the largest holding only {f:.0%} of it")
    d, (dlo, dhi) = m["aorta_diameter_mm"], L["aorta_diameter_mm"]
    add("aorta_diameter", dlo <= d <= dhi, d,
        f"the 'aorta' is {d:.0f} mm wide (real aortas: {dlo:.0f}-{dhi:.0f} mm)")
    r = m["aorta_roundness"]
    add("aorta_round", r >= L["aorta_roundness"], r,
        f"the 'aorta' is flat in cross-section (minor/major axis {r:.2f}; a vessel is round)")
    length, fov = m["aorta_length_mm"], m["fov_length_mm"]
    need = min(L["aorta_length_fov_fraction"] * fov, L["aorta_length_mm"])
    add("aorta_length", length >= need, length,
        f"the 'aorta' is {length:.0f} mm long in a {fov:.0f} mm field of view (at least "
        f"{need:.0f} mm expected)")
    e, drift = m["aorta_elongation"], m["aorta_drift"]
    tall = e >= L["aorta_elongation"] or length >= 0.9 * fov
    straight = drift <= L["aorta_drift"]
    why = ([] if tall else [f"it is {length:.0f} mm high for {d:.0f} mm wide"]) + \
        ([] if straight else [f"its centre moves {drift:.1f} mm sideways per mm of height"])
    add("aorta_cranio_caudal", tall and straight, e,
        "the 'aorta' does not run from head to feet (" + " and ".join(why) + ")")
    if "spine_lateral_mm" in m:
        lat, ant = m["spine_lateral_mm"], m["spine_anterior_mm"]
        add("aorta_beside_spine", lat <= L["spine_lateral_mm"], lat,
            f"the 'aorta' lies {lat:.0f} mm lateral of the spine (real: within "
            f"{L['spine_lateral_mm']:.0f} mm)")
        add("aorta_in_front_of_spine", ant >= L["spine_anterior_mm"], ant,
            f"the 'aorta' lies {'only ' + format(ant, '.0f') + ' mm in front of' if ant >= 0 else format(-ant, '.0f') + ' mm behind'} "
            f"the spine's centre (real: at least {L['spine_anterior_mm']:.0f} mm in front)")
    b = m.get("bone_around_fraction", float("nan"))
    if np.isfinite(b):
        lat = m.get("spine_lateral_mm", 0.0)
        on = b > L["bone_around_fraction"] and lat <= L["spine_midline_mm"]
        add("aorta_not_in_bone", not on, b,
            f"the 'aorta' lies on the spine ({b:.0%} of the directions around it meet bone "
            f"within 20 mm, {lat:.0f} mm from the spine's midline; a real aorta has bone "
            "behind it only)")
    if "lumen_spread_hu" in m:
        s = m["lumen_spread_hu"]
        add("aorta_lumen_consistent", s <= L["lumen_spread_hu"], s,
            f"the 'aorta' changes by {s:.0f} HU along its length (a lumen is even: at most "
            f"{L['lumen_spread_hu']:.0f} HU)")
    _check_sides(m, missing, add)
    return Plausibility(checks, m)


def _check_sides(m, missing, add):
    L = LIMITS
    # a few model voxels of a side group are noise, not anatomy: they are not judged
    present = [v for v in (2, 3, 4) if m[f"{GROUP_NAMES[v]}_volume_mm3"] >= L["side_min_volume_mm3"]
               and GROUP_NAMES[v] not in missing and f"{GROUP_NAMES[v]}_near_fraction" in m]
    for v in present:
        name = GROUP_NAMES[v]
        f = m[f"{name}_near_fraction"]
        add(f"{name}_near_aorta", f >= L["side_near_fraction"], f,
            f"the '{name}' arteries do not reach the 'aorta' ({f:.0%} within "
            f"{L['side_near_mm']:.0f} mm)")
        vol, top = m[f"{name}_volume_mm3"], L["max_volume_mm3"][v]
        add(f"{name}_volume", vol <= top, vol,
            f"the '{name}' arteries hold {vol:,.0f} mm3 (real: at most {top:,.0f})")
    if 2 in present:
        z = m["iliac_z_mm"]
        lo, hi = m["aorta_z_mm"]
        above = [GROUP_NAMES[v] for v in (3, 4) if v in present and m[f"{GROUP_NAMES[v]}_z_mm"] <= z]
        ok = z < (lo + hi) / 2 and not above
        where = f"above the '{above[0]}' arteries" if above else "above the aorta's middle"
        add("iliac_below", ok, z, f"the 'iliac' arteries lie {where}")
    if 4 in present and "renal_lateral_mm" in m:
        lat = m["renal_lateral_mm"]
        add("renal_lateral", lat >= L["renal_lateral_mm"], lat,
            f"the 'renal' arteries do not run sideways toward the kidneys (median {lat:.0f} mm "
            "from the aorta's centre)")
    if 3 in present and "mesenteric_anterior_mm" in m:
        ant = m["mesenteric_anterior_mm"]
        add("mesenteric_anterior", ant >= L["mesenteric_anterior_mm"], ant,
            f"the 'mesenteric' arteries are not in front of the aorta (median {ant:.0f} mm)")


def review_line(plausibility, width=110):
    """The failed checks as a short text for a report title: "CHECK ARTERIES: ..." wrapped
    to ``width`` characters (at most three lines)."""
    import textwrap

    text = "CHECK ARTERIES (scores not valid until reviewed): " + "; ".join(
        c.message for c in plausibility.failed)
    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:3]) + (" ..." if len(lines) > 3 else "")
