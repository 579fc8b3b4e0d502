"""Real-anatomy training patches for the artery-groups network (SynthSeg-style).

The phantoms teach a bright tube in a cylinder body; real CT has liver, spleen, kidneys and
veins as bright as a portal-venous aorta and vertebrae and oral contrast as bright as an
arterial one.  Here the anatomy comes from real label maps in ``../shared/data`` (never
committed):

- ``ts_abdomen_ct``: TotalSegmentator's whole-anatomy map of a real abdomen-pelvis CT (60
  structures), with the CT itself for real texture (fat, unlabelled soft tissue, bowel gas,
  a hip implant);
- ``label_maps/amos_0013`` and ``label_maps/niivue_torso``: organ maps (AMOS ids) without
  body or bone; the body, spine, psoas and back muscles are drawn around them from the
  aorta's position.

None of them labels the celiac trunk, SMA or renal arteries, and the AMOS maps have no
iliac arteries: these are drawn per variant as curved tubes from the aorta to where they go
(renal arteries to the kidneys' hila, the celiac trunk splitting towards liver and spleen,
the SMA in front of the aorta downwards, the iliacs into the pelvis), with random levels,
calibres and courses.  So are the veins beside them, as bright as arteries in the
portal-venous phase (renal veins into the IVC, the left one across the aorta; the superior
mesenteric vein right of the SMA up to the confluence; splenic and portal veins where the
map has none).  Plaques are put on the aorta and iliac walls.  Half of the AMOS variants
also get a procedural chest above them (``synth_body``): no map reaches above the
diaphragm.

Each patch is drawn through a random affine + elastic deformation, painted for a random
phase (arterial: lumen 250-600 HU; portal-venous: 120-220 HU with veins, liver, spleen and
kidneys enhanced alike; 10 % unenhanced) either over the real CT's texture or with random
per-structure intensities and textures, then blurred, biased and noised.  Left and right are
never flipped: the aorta's side is anatomy.  The scans held out for measuring
(``ts_dicom_series``, ``ircad01_abdomen``, ``stent_cta``) are not read here.
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from synth_body import add_chest, finish_chest, procedural_body
from synth_geometry import (  # noqa: F401  (the classes are used from here by synth_paint)
    AIR, AORTA, ARTX, BONE, BOWEL, CALC, CARTILAGE, CORD, CORTEX, FAT, FLUID, GROUP_OF, HEART,
    ILIAC, IVC, LIVER, LUNG, MARROW, MEDULLA, MES, MUSCLE, PANCREAS, PORTAL, RENAL, SOFT, SPACING,
    SPLEEN, STOMACH, VEIN, axis, curve, stamp)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TS = {1: SPLEEN, 4: FLUID, 5: LIVER, 6: STOMACH, 7: PANCREAS, 8: SOFT, 9: SOFT, 15: SOFT,
      18: BOWEL, 19: BOWEL, 20: BOWEL, 21: FLUID, 22: SOFT, 23: FLUID, 24: FLUID, 51: HEART,
      52: AORTA, 63: IVC, 64: PORTAL, 65: ILIAC, 66: ILIAC, 67: IVC, 68: IVC, 79: CORD,
      117: CARTILAGE}
TS.update({i: LUNG for i in range(10, 15)})
TS.update({i: BONE for i in list(range(25, 51)) + list(range(69, 79)) + list(range(92, 117))})
TS.update({i: MUSCLE for i in range(80, 90)})
TS_KIDNEYS = (3, 2)  # left, right
AMOS = {1: SPLEEN, 4: FLUID, 5: SOFT, 6: LIVER, 7: STOMACH, 8: AORTA, 9: IVC, 10: PANCREAS,
        11: SOFT, 12: SOFT, 13: BOWEL, 14: FLUID, 15: SOFT}
AMOS_KIDNEYS = (3, 2)


class Anatomy:
    """One body on the 1.5 mm LPS grid: ``cls`` (structure class per voxel), ``grp``
    (artery group 0-4), ``hu`` (the real CT, or None)."""

    def __init__(self, name, cls, grp, hu):
        self.name, self.cls, self.grp, self.hu = name, cls, grp, hu
        self.artery_idx = {g: np.argwhere(grp == g) for g in range(1, 5)}
        self.calcium_idx = np.argwhere(cls == CALC)
        self.body_idx = np.argwhere(cls[::4, ::4, ::4] != AIR) * 4
        if hu is not None:
            self.real_mean = {c: float(np.median(hu[cls == c])) for c in np.unique(cls)}


def _lps(path, interp):
    img = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    size = [int(round(n * s / SPACING)) for n, s in zip(img.GetSize(), img.GetSpacing())]
    out = sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), [SPACING] * 3,
                        img.GetDirection(), -1024 if interp == sitk.sitkLinear else 0)
    return sitk.GetArrayFromImage(out)  # z (S+), y (P+), x (L+)


def _kidneys(lab, ids):
    """Cortex and medulla classes of the kidney labels; their masks (left, right)."""
    masks = [lab == i for i in ids]
    both = masks[0] | masks[1]
    inner = ndimage.binary_erosion(both, iterations=3)
    return both & ~inner, inner, masks


def load_ts():
    """The TotalSegmentator anatomy with its real CT."""
    d = DATA / "ts_abdomen_ct"
    hu = _lps(d / "ct.nii.gz", sitk.sitkLinear).astype(np.float32)
    lab = _lps(d / "totalsegmentator_total.nii.gz", sitk.sitkNearestNeighbor)
    cls = np.full(lab.shape, SOFT, np.int8)
    cls[hu < -300] = AIR
    cls[(hu >= -300) & (hu < -40)] = FAT
    for k, v in TS.items():
        cls[lab == k] = v
    bone = cls == BONE
    cls[bone & (hu < 250)] = MARROW
    cortex, medulla, kid = _kidneys(lab, TS_KIDNEYS)
    cls[cortex], cls[medulla] = CORTEX, MEDULLA
    return "ts_abdomen_ct", cls, hu, kid


def load_amos(path):
    lab = _lps(path, sitk.sitkNearestNeighbor)
    cls = np.full(lab.shape, AIR, np.int8)
    for k, v in AMOS.items():
        cls[lab == k] = v
    cortex, medulla, kid = _kidneys(lab, AMOS_KIDNEYS)
    cls[cortex], cls[medulla] = CORTEX, MEDULLA
    return Path(path).name.split(".")[0], cls, None, kid


# --- arteries the label maps lack ------------------------------------------------------

def _hilum(mask, o):
    """The kidney voxel (mm) nearest to ``o`` within 15 mm of the kidney's middle level."""
    pts = np.argwhere(mask) * SPACING
    if len(pts) < 50:
        return None
    slab = pts[np.abs(pts[:, 0] - pts[:, 0].mean()) < 15]
    return slab[np.argmin(np.linalg.norm(slab - o, axis=1))], slab


# a renal artery runs in front of the spine and the psoas, never through them
_BARRIER = (BONE, MARROW, CORD, MUSCLE)


def _routed(ends, mid, radius, room, rng, wiggle=0.0, tries=8):
    """A renal path ``curve([start, mid, end])`` whose middle control point is moved forwards
    (4 mm a try) until the tube keeps clear of the spine and muscle: ``room`` is the distance
    (mm) from them; points within 10 mm of either end are not checked (the aorta lies on the
    spine, the hilum beside the psoas).  The clearest try when none is clear.
    (2026-12-02: unrouted, 12 % of the drawn renal voxels lay in vertebral marrow and 9 % in
    muscle.)"""
    start, end = ends
    best = None
    for k in range(tries):
        path = curve([start, mid + np.array([0, -4.0 * k, 0]), end], rng, wiggle)
        inner = (np.linalg.norm(path - start, axis=1) > 10) & (np.linalg.norm(path - end, axis=1) > 10)
        idx = np.clip(np.round(path[inner] / SPACING).astype(int), 0, np.array(room.shape) - 1)
        hits = int((room[tuple(idx.T)] < radius).sum())
        if best is None or hits < best[0]:
            best = (hits, path)
        if hits == 0:
            break
    return best[1]


def _branches(cls, grp, kid, rng, renal_radius_mm=(2.0, 3.5)):
    """Renal (radius drawn from ``renal_radius_mm``), celiac, SMA (and iliacs where the map
    has none) drawn from the aorta; returns what the veins are placed by (SMA path, renal
    levels)."""
    zs, at = axis(cls)
    drawn = {"renal_z": [], "sma": None}
    if len(zs) < 10:
        return drawn
    top = zs[-1] * SPACING
    renal_z = drawn["renal_z"]
    room = ndimage.distance_transform_edt(~np.isin(cls, _BARRIER)) * SPACING
    for side, mask in zip((1, -1), kid):  # left (x+), right
        pts = np.argwhere(mask) * SPACING
        if len(pts) < 50:
            continue
        z0 = pts[:, 0].mean() + rng.uniform(-5, 20)
        if renal_z and rng.random() < 0.35:  # origins level, kidneys not: a long oblique artery
            z0 = renal_z[0] + rng.uniform(-6, 6)
        if z0 > top - 10:
            continue
        o, r = at(z0)
        h, slab = _hilum(mask, o)
        start = o + np.array([0, 0, side * r * 0.5])
        mid = (start + h) / 2 + np.array([rng.uniform(-10, 5), rng.uniform(0, 12), 0])
        radius = rng.uniform(*renal_radius_mm)
        path = _routed((start, h + (h - o) / np.linalg.norm(h - o) * 6), mid, radius, room, rng,
                       rng.uniform(0, 3))
        stamp(cls, grp, path, np.full(len(path), radius), RENAL)
        renal_z.append(z0)
        if rng.random() < 0.25:  # accessory renal artery to the lower pole
            o2, _ = at(z0 - rng.uniform(15, 35))
            low = slab[np.argmin(slab[:, 0])] if len(slab) else h
            radius = rng.uniform(1.5, 2.5)
            path = _routed((o2, low), (o2 + low) / 2 + np.array([0, 5, 0]), radius, room, rng)
            stamp(cls, grp, path, np.full(len(path), radius), RENAL)
    base = max(renal_z) if renal_z else zs[len(zs) // 2] * SPACING
    zc, zsma = base + rng.uniform(20, 40), 0.0
    zsma = zc - rng.uniform(8, 20)
    if zsma < top - 5:  # SMA: forwards, then down in front of the aorta
        o, r = at(zsma)
        fwd = rng.uniform(10, 20)
        length = rng.uniform(60, 120)
        p1 = o + np.array([-fwd * 0.4, -(r + fwd), 0])
        p2 = p1 + np.array([-length * 0.5, -rng.uniform(0, 10), rng.uniform(-12, 4)])
        p3 = p1 + np.array([-length, -rng.uniform(0, 15), rng.uniform(-20, 4)])
        path = curve([o, p1, p2, p3], rng, rng.uniform(0, 4))
        stamp(cls, grp, path, np.linspace(rng.uniform(3, 4.5), rng.uniform(1.8, 2.5), len(path)), MES)
        drawn["sma"] = path
    if zc < top - 5:  # celiac trunk, splitting to the liver (right) and the spleen (left)
        o, r = at(zc)
        end = o + np.array([rng.uniform(0, 8), -(r + rng.uniform(10, 25)), rng.uniform(-3, 3)])
        trunk = curve([o, (o + end) / 2, end], rng)
        rt = rng.uniform(2.5, 4)
        stamp(cls, grp, trunk, np.full(len(trunk), rt), MES)
        for target, sign in ((LIVER, -1), (SPLEEN, 1)):
            pts = np.argwhere(cls[::2, ::2, ::2] == target) * 2 * SPACING
            if len(pts):
                tgt = pts[np.argmin(np.linalg.norm(pts - end, axis=1))]
            else:
                tgt = end + np.array([0, 10, sign * 60])
            d = tgt - end
            stop = end + d * min(1.0, rng.uniform(30, 90) / max(np.linalg.norm(d), 1))
            mid = (end + stop) / 2 + np.array([rng.uniform(-5, 10), rng.uniform(-5, 10), 0])
            path = curve([end, mid, stop], rng, rng.uniform(0, 6) if target == SPLEEN else 0)
            stamp(cls, grp, path, np.full(len(path), rt * rng.uniform(0.6, 0.9)), MES)
    if not (cls == ILIAC).any():  # the common and external iliac arteries
        o, r = at(zs[0] * SPACING)
        for side in (1, -1):
            spread = np.deg2rad(rng.uniform(20, 35))
            l1, l2 = rng.uniform(40, 60), rng.uniform(50, 90)
            p1 = o + np.array([-l1 * np.cos(spread), rng.uniform(-5, 5), side * l1 * np.sin(spread)])
            p2 = p1 + np.array([-l2, -rng.uniform(10, 30), side * rng.uniform(10, 25)])
            path = curve([o, p1, (p1 + p2) / 2 + np.array([0, 5, 0]), p2], rng, rng.uniform(0, 4))
            stamp(cls, grp, path, np.linspace(rng.uniform(4, 6), rng.uniform(3, 4.5), len(path)), ILIAC)
    return drawn


def _veins(cls, grp, kid, drawn, rng):
    """The veins beside the branches, as bright as arteries in the portal-venous phase:
    renal veins from the hila to the IVC (the left one between the SMA and the aorta, 8 %
    behind the aorta), the superior mesenteric vein right of the SMA up to the confluence,
    and, where the map has no portal vein, the splenic and portal veins from there."""
    zs, at = axis(cls)
    if len(zs) < 10:
        return
    izs, ivc_at = axis(cls, IVC)

    def ivc(zmm):
        o, r = at(zmm)
        if len(izs) and abs(ivc_at(zmm)[0][0] - zmm) < 10:
            return ivc_at(zmm)[0]
        return o + np.array([0, 5, -r - 15])

    sma = drawn["sma"]
    z_sma = sma[0][0] if sma is not None else zs[len(zs) // 2] * SPACING + 20
    for side, mask in zip((1, -1), kid):
        lv = max(drawn["renal_z"]) if drawn["renal_z"] else z_sma - 15
        z = min(lv + rng.uniform(-3, 10), z_sma - 4) if side == 1 else lv + rng.uniform(-8, 6)
        o, r = at(z)
        found = _hilum(mask, o)
        if found is None:
            continue
        h, _ = found
        end = ivc(z)
        if side == 1:  # the left renal vein crosses the aorta, mostly in front of it
            behind = rng.random() < 0.08
            cross = o + np.array([0, (r + 5) * (1 if behind else -1), rng.uniform(-3, 3)])
            pts = [h, (h + cross) / 2 + np.array([0, -rng.uniform(0, 8), 0]), cross, end]
        else:
            pts = [h, (h + end) / 2 + np.array([rng.uniform(-4, 4), -rng.uniform(0, 6), 0]), end]
        path = curve(pts, rng, rng.uniform(0, 2))
        stamp(cls, grp, path, np.linspace(rng.uniform(4, 6), rng.uniform(3.5, 5), len(path)), VEIN)
    if sma is None:
        return
    conf = sma[min(len(sma) - 1, int(20 / 0.75))] + np.array(
        [rng.uniform(0, 10), -rng.uniform(6, 12), -rng.uniform(4, 12)])
    portal = np.argwhere(cls[::2, ::2, ::2] == PORTAL) * 2 * SPACING
    if len(portal):  # join the map's own portal vein
        near = portal[np.argmin(np.linalg.norm(portal - conf, axis=1))]
        if np.linalg.norm(near - conf) < 40:
            conf = near
    shift = np.array([0, -rng.uniform(0, 6), -rng.uniform(8, 15)])
    low = sma[int(len(sma) * rng.uniform(0.6, 1.0)) - 1] + shift
    mid = sma[len(sma) // 2] + shift
    path = curve([low, mid, conf], rng, rng.uniform(0, 3))
    stamp(cls, grp, path, np.linspace(rng.uniform(3, 4.5), rng.uniform(4.5, 6.5), len(path)), VEIN)
    if len(portal):
        return
    for target, aim, rad in ((SPLEEN, np.array([10, 10, 90]), (3, 5)),
                             (LIVER, np.array([35, 0, -45]), (5, 7.5))):
        pts = np.argwhere(cls[::2, ::2, ::2] == target) * 2 * SPACING
        goal = conf + aim
        tgt = pts[np.argmin(np.linalg.norm(pts - goal, axis=1))] if len(pts) else goal
        bend = (conf + tgt) / 2 + np.array([rng.uniform(-5, 5), rng.uniform(0, 10), 0])
        path = curve([conf, bend, tgt], rng, rng.uniform(0, 3))
        stamp(cls, grp, path, np.full(len(path), rng.uniform(*rad)), VEIN)


def _plaques(cls, grp, rng):
    wall = np.isin(cls, [AORTA, ILIAC]) & ~ndimage.binary_erosion(np.isin(cls, [AORTA, ILIAC]))
    idx = np.argwhere(wall)
    for i in idx[rng.choice(len(idx), min(int(rng.integers(0, 25)), len(idx)), replace=False)]:
        r = rng.uniform(1, 3) / SPACING
        sl = tuple(slice(max(int(a - r) - 1, 0), min(int(a + r) + 2, n)) for a, n in zip(i, cls.shape))
        g = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), -1)
        ball = ((g - i) ** 2).sum(-1) <= r * r
        ball &= grp[sl] > 0
        cls[sl][ball] = CALC


def variants(n_per_anatomy, seed=0, renal_radius_mm=(2.0, 3.5)):
    """``n_per_anatomy`` Anatomy variants (own branches and plaques) of each label map;
    renal artery radii drawn uniformly from ``renal_radius_mm`` (mm).  (The IRCAD expert
    label maps, with real artery trees, come from ``synth_ircad.anatomies``.)"""
    rng = np.random.default_rng(seed)
    out = []
    sources = [load_ts] + [lambda p=p: load_amos(p) for p in
                           sorted((DATA / "label_maps").glob("*.nii.gz"))]
    for load in sources:
        name, cls0, hu, kid = load()
        for _ in range(n_per_anatomy):
            if hu is None:  # AMOS: body drawn around the organs, half of them with a chest
                cls, chest = add_chest(cls0, rng) if rng.random() < 0.5 else (cls0, None)
                cls = procedural_body(cls, rng, chest)
                if chest:
                    finish_chest(cls, chest, rng)
            else:
                cls = cls0.copy()
            grp = np.zeros(cls.shape, np.int8)
            for c, g in GROUP_OF.items():
                grp[cls == c] = g
            drawn = _branches(cls, grp, kid, rng, renal_radius_mm)
            _veins(cls, grp, kid, drawn, rng)
            _plaques(cls, grp, rng)
            out.append(Anatomy(name, cls, grp, hu))
    return out


def available():
    return (DATA / "ts_abdomen_ct" / "totalsegmentator_total.nii.gz").is_file()
