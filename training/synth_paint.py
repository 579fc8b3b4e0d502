"""Training patches from the real-anatomy variants of ``synth_anatomy``: a random
deformation of the anatomy, painted as a CT of a random phase.

``anatomy_patch(anat, patch, spacing_mm, norm, rng)`` returns ``(image, target)`` on the
model grid, the image normalised as the network sees it; the target is the artery groups
(artery-groups network) or, with ``target="arteries"``, artery (1) and calcification (2)
(arteries-calcium network).  Not installed into Slicer.
"""

import numpy as np
from scipy import ndimage
from synth_anatomy import (
    AIR, AORTA, ARTX, BONE, BOWEL, CALC, CARTILAGE, CORD, CORTEX, FAT, FLUID, HEART, ILIAC, IVC, LIVER,
    LUNG, MARROW, MEDULLA, MES, MUSCLE, PANCREAS, PORTAL, RENAL, SOFT, SPACING, SPLEEN, STOMACH,
    VEIN,
)

ARTERIES = (AORTA, ILIAC, MES, RENAL)
NCLS = ARTX + 1
ENHANCING = (LIVER, SPLEEN, CORTEX, MEDULLA, PANCREAS, IVC, PORTAL, HEART)


def phase_table(rng):
    """(phase, lumen HU, HU per structure class) of one synthetic scan."""
    u = rng.uniform
    phase = rng.choice(["arterial", "portal-venous", "unenhanced"], p=[0.45, 0.45, 0.10])
    t = np.zeros(NCLS, np.float32)
    t[AIR], t[LUNG], t[FAT] = -1000, u(-880, -800), u(-125, -75)
    t[SOFT], t[MUSCLE], t[BONE], t[MARROW] = u(15, 50), u(40, 65), u(350, 1000), u(140, 320)
    t[CORD], t[CARTILAGE], t[FLUID] = u(20, 40), u(80, 180), u(-5, 20)
    t[BOWEL], t[STOMACH] = u(15, 50), u(15, 50)
    if phase == "arterial":
        lumen = u(250, 600)
        t[LIVER], t[SPLEEN], t[CORTEX], t[MEDULLA] = u(55, 95), u(90, 190), u(140, 300), u(60, 120)
        t[PANCREAS], t[IVC], t[PORTAL], t[HEART] = u(90, 150), u(40, 130), u(90, 180), lumen * u(0.6, 1)
    elif phase == "portal-venous":
        lumen = u(120, 220)
        cortex = u(120, 220)
        t[LIVER], t[SPLEEN], t[CORTEX], t[MEDULLA] = u(85, 145), u(95, 155), cortex, cortex * u(0.8, 1)
        t[PANCREAS], t[IVC], t[PORTAL], t[HEART] = (u(75, 125), lumen * u(0.75, 1.1),
                                                     lumen * u(0.8, 1.15), lumen * u(0.8, 1))
    else:
        lumen = u(30, 60)
        t[LIVER], t[SPLEEN], t[CORTEX], t[MEDULLA] = u(45, 70), u(38, 55), u(25, 40), u(25, 40)
        t[PANCREAS], t[IVC], t[PORTAL], t[HEART] = u(30, 50), u(30, 55), u(30, 55), u(30, 55)
    t[list(ARTERIES)] = lumen
    t[ARTX] = lumen  # arteries of no group (supra-aortic)
    # drawn veins: renal veins fill early, the mesenteric-portal veins with the portal phase
    t[VEIN] = t[PORTAL] * u(0.85, 1.15) if phase != "arterial" else u(90, 250)
    t[CALC] = max(u(300, 1300), lumen + u(100, 600))
    return str(phase), float(lumen), t


def _smooth_field(shape, rng, sigma):
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return f / (f.std() + 1e-6)


def _rotation(rng):
    a = np.deg2rad([rng.uniform(-12, 12), rng.uniform(-6, 6), rng.uniform(-6, 6)])
    c, s = np.cos(a), np.sin(a)
    rz = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])  # about the S axis (in-plane)
    ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rx = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    return rz @ ry @ rx


def deformed(anat, patch, spacing_mm, rng, fg_prob=0.65, calcium_prob=0.0, group_weights=None):
    """(class, group, real HU or None) arrays of one randomly deformed patch; centred on a
    plaque with ``calcium_prob``, else on an artery with ``fg_prob`` (its group drawn with
    ``group_weights``, one weight per group 1-4; equal when None)."""
    groups = [g for g, idx in anat.artery_idx.items() if len(idx)]
    if calcium_prob and rng.random() < calcium_prob and len(anat.calcium_idx):
        centre = anat.calcium_idx[rng.integers(len(anat.calcium_idx))] * SPACING
    elif rng.random() < fg_prob and groups:
        w = np.array([1.0 if group_weights is None else group_weights[g - 1] for g in groups])
        w = w if w.sum() > 0 else np.ones(len(groups))  # none of the asked groups drawn here
        idx = anat.artery_idx[int(rng.choice(groups, p=w / w.sum()))]
        centre = idx[rng.integers(len(idx))] * SPACING
    else:
        centre = anat.body_idx[rng.integers(len(anat.body_idx))] * SPACING
    size = np.asarray(patch, float) * np.asarray(spacing_mm[::-1])
    centre = centre + rng.uniform(-0.25, 0.25, 3) * size
    grid = np.stack(np.meshgrid(*[(np.arange(n) - n / 2 + 0.5) * s
                                  for n, s in zip(patch, spacing_mm[::-1])], indexing="ij"))
    a = _rotation(rng) @ np.diag(rng.uniform(0.85, 1.15, 3))
    pts = np.tensordot(a, grid, 1)
    amp = rng.uniform(0, 5)
    if amp > 0.5:
        coarse = rng.normal(0, amp, (3, 5, 5, 5))
        pts += np.stack([ndimage.zoom(c, np.asarray(patch) / 5, order=3)[: patch[0], : patch[1], : patch[2]]
                         for c in coarse])
    idx = (pts + centre[:, None, None, None]) / SPACING
    cls = ndimage.map_coordinates(anat.cls, idx, order=0, mode="constant", cval=AIR)
    grp = ndimage.map_coordinates(anat.grp, idx, order=0, mode="constant", cval=0)
    hu = (None if anat.hu is None else
          ndimage.map_coordinates(anat.hu, idx, order=1, mode="constant", cval=-1024))
    return cls, grp, hu


def paint(cls, hu, anat, rng, spacing_mm, seen=None):
    """A CT of ``cls`` for a random phase: over the real texture ``hu`` (when given, 60 %)
    or from per-structure intensities with random texture (15 % of those fully random).
    ``seen`` (a dict), when given, receives ``"real_calcium"``: the artery voxels where the
    real CT's own calcium shows at least 100 HU above the painted lumen."""
    phase, lumen, t = phase_table(rng)
    art = np.isin(cls, ARTERIES)
    if seen is not None:
        seen["real_calcium"] = np.zeros(cls.shape, bool)
    if hu is not None and rng.random() < 0.6:
        img = hu.copy()
        for c in ENHANCING:
            m = cls == c
            if m.any() and c in anat.real_mean:
                img[m] += t[c] - anat.real_mean[c]
        calc_real = art & (hu > 250)
        grain = 12 * _smooth_field(cls.shape, rng, 1.0)
        img[art] = lumen + grain[art]
        vein = cls == VEIN  # drawn over fat and soft tissue: painted, not offset
        img[vein] = t[VEIN] + grain[vein]
        img[calc_real] = np.maximum(img[calc_real], hu[calc_real])
        if seen is not None:
            seen["real_calcium"] = calc_real & (hu > lumen + 100)
    else:
        if rng.random() < 0.15:  # SynthSeg: any structure any intensity, so shape and place count
            t = rng.uniform(-150, 700, NCLS).astype(np.float32)
            t[AIR], phase = -1000, "random"
        img = t[cls]
        tex = _smooth_field(cls.shape, rng, rng.uniform(0.5, 2.0))
        amp = rng.uniform(0, 25, NCLS).astype(np.float32)
        amp[ARTERIES, ] = rng.uniform(0, 10)
        img += amp[cls] * tex
        if rng.random() < 0.5:  # gas in bowel and stomach
            gut = np.isin(cls, [BOWEL, STOMACH]) & (_smooth_field(cls.shape, rng, 2.0) > 1.0)
            img[gut] = -1000
    if rng.random() < 0.1:  # a stent graft: metal struts on the aortic and iliac walls
        wall = np.isin(cls, (AORTA, ILIAC))
        wall &= ~ndimage.binary_erosion(wall)
        period = rng.uniform(2.5, 5.0)
        zz, yy, xx = np.indices(cls.shape) * np.asarray(spacing_mm[::-1])[:, None, None, None]
        mesh = np.abs(np.sin(zz / period + np.sin(xx / period)) + np.sin(yy / period)) > 1.2
        img[wall & mesh] = rng.uniform(1200, 3000)
    calc = cls == CALC
    img[calc] = t[CALC] + 80 * _smooth_field(cls.shape, rng, 0.7)[calc]
    if rng.random() < 0.3:  # oral contrast in parts of the bowel
        gut = np.isin(cls, [BOWEL, STOMACH]) & (_smooth_field(cls.shape, rng, 3.0) > 0.3) & (img > -300)
        img[gut] = rng.uniform(150, 600)
    sig = np.array([rng.uniform(0.3, 1.6), rng.uniform(0.3, 0.9), 0.0])
    sig[2] = sig[1]
    img = ndimage.gaussian_filter(img, sig)
    img += rng.uniform(0, 40) * _smooth_field(cls.shape, rng, 12.0)
    noise = rng.normal(0, rng.uniform(5, 30), cls.shape).astype(np.float32)
    img += ndimage.gaussian_filter(noise, 0.4) * 1.6
    return img.astype(np.float32), phase


def short_series(img, grp, patch, rng):
    """A series only ``n`` slices high (12-40 at the model grid), padded as the sliding
    window pads: the last slice repeated."""
    n = int(rng.integers(12, 41))
    a = int(rng.integers(0, patch[0] - n + 1))
    pad = ((0, patch[0] - n), (0, 0), (0, 0))
    return np.pad(img[a:a + n], pad, mode="edge"), np.pad(grp[a:a + n], pad, mode="edge")


def calcium_target(cls, grp, real_calcium):
    """Artery (1) and calcification (2) of a painted patch: every artery, grouped or not
    (``ARTX``), is artery; drawn plaques (always >= 100 HU above the lumen) and the real
    CT's own calcium where it shows above the lumen are calcification."""
    out = ((grp > 0) | (cls == ARTX)).astype(np.int8)
    out[(cls == CALC) | real_calcium] = 2
    return out


def anatomy_patch(anat, patch, spacing_mm, norm, rng, target="groups", group_weights=None):
    """(normalised image, labels int64) of one training patch: the artery groups, or
    with ``target="arteries"`` artery and calcification (half of the patches then centred
    on a plaque, as the phantom patches pick calcium as often as artery); ``group_weights``
    as in ``deformed``."""
    from CalciumScoringLib.segmentation.engine import normalise

    calcium = target == "arteries"
    cls, grp, hu = deformed(anat, patch, spacing_mm, rng, calcium_prob=0.5 if calcium else 0.0,
                             group_weights=group_weights)
    seen = {} if calcium else None
    img, _ = paint(cls, hu, anat, rng, spacing_mm, seen)
    lab = calcium_target(cls, grp, seen["real_calcium"]) if calcium else grp
    if rng.random() < 0.12:
        img, lab = short_series(img, lab, patch, rng)
    return normalise(img, norm), lab.astype(np.int64)
